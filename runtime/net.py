"""``Net``: a Caffe NetParameter as a torch module with pycaffe's interface (net.cpp)."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call

from runtime import mode
from runtime.blob_views import Blob, HeldParamDiffs, ParamView, as_blob, as_numbers, fills
from runtime.diff_memory import DiffMemory
from runtime.errors import AllconvError
from runtime.filter_net import filter_net
from runtime.insert_splits import insert_splits
from runtime.layers import (NoFillerWarning, data_sized, describe, layer_class, layer_errors,
                            make_layer)
from runtime.net_batches import BatchedPasses
from runtime.net_weights import NetWeights
from runtime.proto import pb
from runtime.prototxt import read_net

log = logging.getLogger("allconv.net")


class ZeroLoss(torch.autograd.Function):
    """A loss of 0 whose gradient is 0 for ``top``: it makes autograd run the backward of the
    layer that wrote ``top`` where no loss reaches it, as Caffe runs every layer that needs
    backward (``Layer.backward_runs_unreached``)."""

    @staticmethod
    def forward(ctx, top):
        ctx.shape = top.shape
        return top.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return grad.new_zeros(ctx.shape)


class DiffPassesDown(torch.autograd.Function):
    """``top`` as it is, whose gradient also goes unchanged to ``bottom``: an in-place layer
    that does not propagate down leaves its top's diff in the memory its bottom shares."""

    @staticmethod
    def forward(ctx, top, bottom):
        return top.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


AUTOMATIC = "(automatic)"


def with_automatic_tops(layer_param):
    """Caffe's AutoTopBlobs: a loss layer given fewer tops than it needs gets anonymous ones,
    named "(automatic)": no layer can read them and they are no output, but the loss counts."""
    cls = layer_class(layer_param)
    missing = cls.num_tops[0] - len(layer_param.top) if cls.is_loss else 0
    if missing <= 0:
        return layer_param
    out = pb.LayerParameter()
    out.CopyFrom(layer_param)
    out.top.extend([AUTOMATIC] * missing)
    return out


class Net(NetWeights, DiffMemory, BatchedPasses, nn.Module):
    """A Caffe net for one phase, built from a prototxt path, its text, or a NetParameter.

    The Caffe phase (TRAIN=0 / TEST=1) is fixed at construction, as in Caffe:
    ``net.train()`` / ``net.eval()`` do not change it (so Dropout follows the phase).
    ``seed`` seeds the generator for fillers and dropout; None takes the next of the sequence
    ``set_random_seed`` began, else draws a random seed. It is made on the CPU, or where
    ``set_mode_gpu`` or ``set_mode_cpu`` said (runtime/mode.py).
    ``feeds``: a feed, or ``{data layer name: feed}``, for Data layers; ``input_shapes``:
    ``{top name: sample shape}`` for Data layers whose feed has no ``sample_shape``.
    The arguments are pycaffe's, ``Net(network_file, phase, level=0, stages=None,
    weights=None)``, and its older order ``Net(network_file, weights, phase)`` is taken too.
    Its weight files are `NetWeights`', the plan of Caffe's diffs `DiffMemory`'s, and
    pycaffe's passes over long inputs `BatchedPasses`'.
    """

    def __init__(self, network_file, phase: int, level: int | None = None, stages=None,
                 weights=None, *, input_shapes=None, seed: int | None = None, feeds=None):
        super().__init__()
        if isinstance(phase, (str, os.PathLike)) and level is not None:
            if stages is not None or weights is not None:   # (network_file, weights, phase)
                raise AllconvError("Net(network_file, weights, phase) takes nothing more, as "
                                   "pycaffe's; give Net(network_file, phase, level, stages, "
                                   "weights=...)")
            phase, weights, level = level, phase, None
        level = 0 if level is None else level
        phase, level = (int(v) if isinstance(v, bool) else v for v in (phase, level))  # pycaffe's
        if phase not in (pb.TRAIN, pb.TEST):
            raise AllconvError(f"phase must be TRAIN (0) or TEST (1), got {phase!r}")
        if not isinstance(level, int):
            raise AllconvError(f"level must be an int, got {level!r} (pycaffe's order: "
                               "Net(network_file, phase, level=0, stages=None, weights=None))")
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise AllconvError(f"weights must be a file name, got {weights!r}")
        param = read_net(network_file)
        param.state.phase, param.state.level = phase, level
        param.state.stage.extend(stages or ())
        self.name, self.phase = param.name, phase
        self.force_backward = param.force_backward
        self.debug_info = param.debug_info     # a Solver sets it per step, as Caffe's
        self.retain_blob_diffs = True
        self.generator = torch.Generator()
        seed = mode.next_seed() if seed is None else seed
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self.layers = nn.ModuleList()
        self.layer_names, self.inputs = [], []
        self._shapes, self._values, self._versions, self._loss = OrderedDict(), {}, {}, None
        self._loss_diffs, self._loss_tops = {}, {}     # see _loss_term
        self._held_diffs = {}                           # see _held_diff
        self._input_slots, self._propagate_down = {}, []
        available = set()
        with warnings.catch_warnings():
            if weights is not None:     # they replace the fillers (copy_from names any missed)
                warnings.simplefilter("ignore", NoFillerWarning)
            for layer_param in insert_splits(filter_net(param)).layer:
                self._add_layer(layer_param, available, feeds, input_shapes or {})
        self.outputs = sorted(available)  # Caffe keeps its leftover blobs in a std::set
        self.top_names = OrderedDict((l.name, list(l.tops)) for l in self.layers)
        self.bottom_names = OrderedDict((l.name, list(l.bottoms)) for l in self.layers)
        self._top_loss_weights = {t: w for l in self.layers
                                  for t, w in zip(l.tops, l.loss_weights) if w}
        self._copy_prototxt_blobs()
        self._share_params()
        self._index_params()
        self._param_propagate_down()
        self._plan_diffs()
        self._plan_reshapes()
        self.blobs = OrderedDict((name, Blob(self, name)) for name in self._shapes)
        self.layer_dict = OrderedDict(zip(self.layer_names, self.layers))   # pycaffe's
        if weights is not None:
            self.copy_from(weights)
        if (device := mode.chosen_device()) not in (None, "cpu"):
            self.to(device)

    # ------------------------------------------------------------------ construction

    def _add_layer(self, layer_param, available, feeds, input_shapes) -> None:
        """Connect bottoms/tops like Net::AppendBottom/AppendTop, then build the layer."""
        available.difference_update(layer_param.bottom)  # insert_splits checked they exist
        named = len(layer_param.top)
        layer_param = with_automatic_tops(layer_param)
        for i, name in enumerate(layer_param.top[:named]):
            in_place = i < len(layer_param.bottom) and layer_param.bottom[i] == name
            if name in layer_param.top[:i]:
                raise AllconvError(f"{describe(layer_param)}: top blob {name!r} is named twice "
                                   "(Caffe: produced by multiple sources)")
            if name in self._shapes and not in_place:
                raise AllconvError(f"{describe(layer_param)}: top blob {name!r} is already "
                                   "produced by an earlier layer (only top i == bottom i may "
                                   "reuse a name, in place)")
            available.add(name)
        if len(layer_param.propagate_down) not in (0, len(layer_param.bottom)):
            raise AllconvError(f"{describe(layer_param)}: propagate_down needs one value per "
                               "bottom, or none")
        options = {}
        if layer_class(layer_param).accepts_feed:
            options["feed"] = feeds.get(layer_param.name) if isinstance(feeds, dict) else feeds
            options["sample_shape"] = (input_shapes.get(layer_param.top[0])
                                       if layer_param.top else None)
        phase = layer_param.phase if layer_param.HasField("phase") else self.phase
        bottom_shapes = [self._shapes[b] for b in layer_param.bottom]
        refuse_empty(layer_param, bottom_shapes)
        layer = make_layer(layer_param, bottom_shapes, phase, self.generator, **options)
        self.layers.append(layer)
        # force_backward turns every bottom's backward back on (net.cpp, after propagate_down;
        # a layer detaches what Caffe's AllowForceBackward keeps out: labels, cont)
        self._propagate_down.append((True,) * len(layer_param.bottom) if self.force_backward
                                    else tuple(layer_param.propagate_down)
                                    or (True,) * len(layer_param.bottom))
        self.layer_names.append(layer.name)
        for name, shape in zip(layer_param.top, layer.top_shapes):
            self._shapes[name] = tuple(shape)
        if layer_param.type == "Input":
            self.inputs += list(layer_param.top)
            self._input_slots.update((name, (layer, i)) for i, name in enumerate(layer_param.top))

    def _plan_reshapes(self) -> None:
        """Caffe reshapes every layer in each forward, so a layer below a top the data sizes
        (a Filter's, a Python layer's, a data layer's per batch) reshapes to its bottoms' sizes
        then (Reduction MEAN's count, Slice's parts): ``_reshaped_in_forward``, per layer;
        ``_reshaped_for``, the bottom shapes it last reshaped to (the same again: nothing to
        redo)."""
        self._reshaped_in_forward = [below and not layer.reshapes_in_forward for below, layer
                                     in zip(data_sized(self.layers)[0], self.layers)]
        self._reshaped_for = [None] * len(self.layers)

    def _share_params(self) -> None:
        """Caffe's ParamSpec ``name``: later blobs with a name reuse the first one's, of the
        same shape (``share_mode: STRICT``, the default) or of the same count (PERMISSIVE:
        the sharer keeps its own shape over the owner's data)."""
        owners, explicit = {}, {}
        for layer in self.layers:
            for i, spec in enumerate(layer.param.param):
                if not spec.name:
                    continue
                if spec.name not in owners:
                    owners[spec.name] = layer.blobs.owner(i)
                    explicit[spec.name] = {f for f in ("lr_mult", "decay_mult") if spec.HasField(f)}
                    continue
                owner, mine = owners[spec.name], layer.blobs[i]
                if spec.share_mode == pb.ParamSpec.PERMISSIVE:
                    if owner.numel() != mine.numel():
                        raise AllconvError(f"{describe(layer.param)}: cannot share param "
                                           f"{spec.name!r} (share_mode PERMISSIVE): count "
                                           f"{mine.numel()} {tuple(mine.shape)} vs the owner's "
                                           f"{owner.numel()} {tuple(owner.shape)}")
                elif owner.shape != mine.shape:
                    raise AllconvError(f"{describe(layer.param)}: cannot share param "
                                       f"{spec.name!r}: shape {tuple(mine.shape)} vs the "
                                       f"owner's {tuple(owner.shape)} (share_mode PERMISSIVE "
                                       "shares an equal count)")
                for field in ("lr_mult", "decay_mult"):
                    if not spec.HasField(field):
                        continue
                    value = getattr(spec, field)
                    if field in explicit[spec.name] and value != getattr(owner, field):
                        raise AllconvError(f"{describe(layer.param)}: shared param "
                                           f"{spec.name!r} has mismatched {field}")
                    setattr(owner, field, value)
                    explicit[spec.name].add(field)
                layer.blobs.share(i, owner)

    def _param_propagate_down(self) -> None:
        """Caffe's param_propagate_down: a layer computes a learnable blob's diff when its own
        ParamSpec's lr_mult is non-zero (not the effective one of a shared blob), or under
        force_backward. A blob gets a diff when some layer computes one. Per layer:
        ``_param_needs``, whether it computes any, and ``_frozen_uses``, the indices of blobs
        with a diff that it reads detached (it adds nothing to the diff). `_plan_diffs` then
        gives every param diff to a layer whose Backward writes them all when it runs."""
        def propagates(layer, i: int) -> bool:
            return self.force_backward or layer.param_spec(i).lr_mult != 0
        needed = {id(b) for l in self.layers for i, b in enumerate(l.blobs.owners())
                  if propagates(l, i)}
        for p in self.learnable_params:
            p.requires_grad_(id(p) in needed)
        self._param_needs = [any(propagates(l, i) for i in range(len(l.blobs)))
                             for l in self.layers]
        self._frozen_uses = [tuple(i for i, b in enumerate(l.blobs.owners())
                                   if id(b) in needed and not propagates(l, i))
                             for l in self.layers]

    def _index_params(self) -> None:
        """``learnable_params`` (a shared blob once) and pycaffe's ``params`` from the layers."""
        self.learnable_params = list({id(p): p for l in self.layers
                                      for p in l.blobs.owners()}.values())
        self._held_param_diffs = HeldParamDiffs()
        self.params = OrderedDict((l.name, [ParamView(l.blobs, i, self._held_param_diffs,
                                                      l.name) for i in range(len(l.blobs))])
                                  for l in self.layers if len(l.blobs))

    # ------------------------------------------------------------------ blobs

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def _blob_data(self, name: str) -> torch.Tensor:
        if name in self._input_slots:
            layer, index = self._input_slots[name]
            return layer.buffers_in_order()[index]
        if name not in self._values:
            self._values[name] = torch.zeros(self._shapes[name], device=self.device)
        return self._values[name].detach()

    def _reshape_input(self, name: str, shape) -> None:
        if name not in self._input_slots:
            raise AllconvError(f"blob {name!r} is not a net input (inputs: {self.inputs})")
        layer, index = self._input_slots[name]
        layer.set_shape(index, shape)
        self._shapes[name] = tuple(int(d) for d in shape)

    def reshape(self) -> None:
        """Re-infer every blob shape from the input shapes (Caffe's Net::Reshape). An input
        keeps its values as Caffe's blob memory does (see ``Input.set_shape``); another blob
        whose shape this changes holds zeros until the next forward computes it."""
        before = dict(self._shapes)
        self._reshaped_for = [None] * len(self.layers)
        for layer in self.layers:
            with layer_errors(layer.param):
                layer.top_shapes = layer.reshape_tops([self._shapes[b] for b in layer.bottoms])
            self._shapes.update(zip(layer.tops, map(tuple, layer.top_shapes)))
        for name, shape in self._shapes.items():
            if before.get(name) != shape:
                self._values.pop(name, None)
                self._versions.pop(name, None)

    @contextlib.contextmanager
    def unchanged(self):
        """A block that may reshape and run the net (the ONNX export's shape probe and its
        check): on exit every blob's shape and value, the inputs, the loss, the held diffs and
        the layers' buffers (a recurrent layer's carried state) are as they were."""
        kept = (self._shapes.copy(), self._values.copy(), self._versions.copy(), self._loss,
                self._loss_diffs.copy(), self._loss_tops.copy(), self._held_diffs.copy())
        buffers = [(layer, {name: (buffer, buffer.clone())     # an input is written in place
                            for name, buffer in layer.named_buffers(recurse=False)},
                     layer.top_shapes) for layer in self.layers]
        try:
            yield self
        finally:
            for layer, named, _ in buffers:
                for name, (buffer, values) in named.items():
                    setattr(layer, name, buffer.copy_(values))
            self.reshape()      # what layers keep of their inputs' shapes (Slice's parts)
            for layer, _, top_shapes in buffers:
                layer.top_shapes = top_shapes      # a Filter's, of the last forward
            (self._shapes, self._values, self._versions, self._loss, self._loss_diffs,
             self._loss_tops, self._held_diffs) = kept

    def set_feed(self, feed, layer: str | None = None) -> None:
        """Give Data layers (all, or the one named ``layer``) a new feed."""
        targets = [l for l in self.layers if l.accepts_feed and layer in (None, l.name)]
        if not targets:
            raise AllconvError(f"no Data layer {layer!r} in this net" if layer else
                               "this net has no Data layer")
        for target in targets:
            target.feed = feed
            target.tops_sized_by_data = bool(getattr(feed, "sizes_vary", False))
            if getattr(feed, "sample_shape", None) is not None:
                target.sample_shape = tuple(int(d) for d in feed.sample_shape)
        self._plan_reshapes()
        self.reshape()

    def set_input_arrays(self, data, labels) -> None:
        """pycaffe's ``set_input_arrays``: the arrays the first layer, a MemoryData layer,
        serves (float32, data (N, C, H, W), labels (N,); see MemoryData.set_input_arrays)."""
        first = self.layers[0] if len(self.layers) else None
        if first is None or first.type_name != "MemoryData":
            raise AllconvError("set_input_arrays may only be called if the first layer is a "
                               "MemoryData layer")
        first.set_input_arrays(data, labels)

    # ------------------------------------------------------------------ running

    def _check_inputs(self, inputs, whole) -> None:
        """Inputs must be tops of source layers; for a source with ``whole(layer)`` true,
        all of its tops or none."""
        sources = [l for l in self.layers if not l.bottoms]
        unknown = set(inputs) - {t for l in sources for t in l.tops}
        if unknown:
            raise AllconvError(f"unknown input blob(s) {sorted(unknown)} (inputs: "
                               f"{self.inputs}, data tops: {self._data_tops()})")
        for layer in filter(whole, sources):
            given = [t in inputs for t in layer.tops]
            if any(given) and not all(given):
                raise AllconvError(f"{describe(layer.param)}: give all of its tops "
                                   f"{list(layer.tops)} or none")

    def _check_blob_names(self, names) -> list[str]:
        """``names`` (None, or a list of blob names, as pycaffe's ``blobs``/``diffs``) as a
        list, each a blob's."""
        if names is None:
            return []
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise AllconvError(f"give blob names as a list, such as ['{next(iter(self.blobs))}'],"
                               f" not {type(names).__name__} {names!r:.40}")
        unknown = [name for name in names if not isinstance(name, str) or name not in self.blobs]
        if unknown:
            raise AllconvError(f"no blob {unknown[0]!r:.40} in the net (blobs: "
                               f"{', '.join(self.blobs)})")
        return list(names)

    def _data_tops(self) -> list[str]:
        return [t for l in self.layers if l.accepts_feed for t in l.tops]

    def _run(self, overrides: dict, store: bool, first: int = 0, last: int | None = None,
             seeded: set | None = None):
        """One pass over layers ``first`` to ``last`` (all by default; a part reads the blobs
        below it as they are; ``seeded``, for a backward over the part: the layers whose
        Backward Caffe runs keep the graph, as a backward from any top needs, and the weighted
        tops it names add no loss term: the backward starts from their diffs' memory, which
        holds the loss weight unless written); returns (blob values, with ``store`` each
        blob's values in the order written (an in-place chain's), weighted loss)."""
        if not self.layers:         # Caffe's ForwardFromTo checks end < layers_.size()
            raise AllconvError("the net has no layers to run")
        last = len(self.layers) - 1 if last is None else last
        values, versions, total = {}, {}, None
        if first:
            values = {name: self._blob_data(name) for name in self._shapes}
        # with no autograd (an evaluation) no bottom needs a diff: the loop then holds no
        # requires_grad_(), which older Dynamo (torch 2.11) cannot trace and breaks the graph on
        fresh_diffs = self._fresh_diffs if torch.is_grad_enabled() else [()] * len(self.layers)
        for i, (layer, fresh) in enumerate(zip(self.layers, fresh_diffs)):
            if not first <= i <= last:
                continue
            if not layer.bottoms and layer.tops and layer.tops[0] in overrides:
                tops, terms = tuple(overrides[t] for t in layer.tops), []
            else:
                tops, terms = self._forward_layer(i, fresh, values, versions if store else None,
                                                  seeded)
            for j, (name, top, weight) in enumerate(zip(layer.tops, tops, layer.loss_weights)):
                values[name] = top
                if store:
                    versions.setdefault(name, []).append(top)
                    if self.retain_blob_diffs and top.requires_grad and not top.is_leaf:
                        top.retain_grad()
                if weight and not (seeded and name in seeded):
                    # (the compiled training loss, which stores nothing, keeps the weight)
                    reads_diff = (i, j) in self._diff_read and (
                        store or not torch.is_grad_enabled())
                    terms.append(self._loss_term(i, j, top) if reads_diff
                                 else weight * (top.detach() if (i, j) in self._forward_only
                                                else top).sum())
            for term in terms:
                total = term if total is None else total + term
        if total is None:
            total = torch.zeros((), device=self.device)
        return values, versions, total

    def _forward_layer(self, i: int, fresh: tuple, values: dict, versions: dict | None,
                       seeded: set | None) -> tuple[tuple, list]:
        """Layer ``i``'s tops from ``values``, and the zero loss terms that make autograd run
        a Backward that Caffe runs though no loss reaches it. ``fresh``: the bottoms whose diff
        starts here (a leaf that asks for its grad; with ``versions``, a version of its own)."""
        layer, keep, frozen = self.layers[i], self._keeps[i], self._frozen_uses[i]
        for j in fresh:
            name = layer.bottoms[j]
            if keep[j] and not values[name].requires_grad and values[name].is_floating_point():
                values[name] = values[name].detach().requires_grad_()
                if versions is not None:    # (a part's bottom from below it)
                    versions.setdefault(name, [None])[-1] = values[name]
        bottoms = [values[b] if k else values[b].detach() for b, k in zip(layer.bottoms, keep)]
        if self._reshaped_in_forward[i]:
            self._reshape_in_forward(i, [tuple(b.shape) for b in bottoms])
        tops = (functional_call(layer, {f"blobs.{k}": layer.blobs[k].detach() for k in frozen},
                                tuple(bottoms))
                if frozen else layer(*bottoms))
        if self._cut[i] or seeded is not None and not self._layer_need[i]:
            tops = tuple(t.detach() for t in tops)  # no Backward: nothing reaches params, bottoms
        terms = []
        if layer.backward_runs_unreached and self._layer_need[i] and torch.is_grad_enabled():
            terms = [ZeroLoss.apply(top) for top in tops if top.requires_grad]
        for j in self._passed_diffs[i]:
            below = values[layer.bottoms[j]]
            if below.requires_grad:
                tops = tops[:j] + (DiffPassesDown.apply(tops[j], below),) + tops[j + 1:]
        return tops, terms

    def _reshape_in_forward(self, i: int, shapes: list) -> None:
        """Layer ``i``'s Reshape in a forward, to its bottoms' ``shapes``, unless it last
        reshaped to the same (a Filter's own tops follow its forward: it always reshapes)."""
        layer = self.layers[i]
        if shapes != self._reshaped_for[i]:
            with layer_errors(layer.param):
                layer.top_shapes = layer.reshape_tops(shapes)
            if not layer.tops_sized_by_data:
                self._reshaped_for[i] = shapes

    def _loss_term(self, i: int, j: int, top: torch.Tensor) -> torch.Tensor:
        """The loss of weighted top j of layer i whose diff a later layer's backward
        overwrites: Caffe's dot(top, top diff), its diff the loss weight until the first
        backward, then what that backward left (a flat buffer with the blob's capacity: a
        top grown past it starts from zeros). ``backward`` keeps each diff."""
        flat, n = top.detach().reshape(-1), top.numel()
        diff = self._loss_diffs.get((i, j))
        if diff is None:
            diff = self._loss_diffs[i, j] = torch.full_like(flat, self.layers[i].loss_weights[j])
        elif diff.numel() < n:
            diff = self._loss_diffs[i, j] = torch.zeros_like(flat)
        if top.requires_grad:
            top.retain_grad()
            self._loss_tops[i, j] = top
        return torch.dot(flat, diff[:n])

    def forward(self, blobs=None, **inputs) -> dict:
        """Run the net; returns ``{output blob: tensor}``, and the blobs ``blobs`` names too,
        sharing the blobs' data as pycaffe's arrays do (``backward`` takes the gradients).

        Inputs named by Input-layer tops are copied into the persistent input buffers;
        tops of another layer without bottoms (a Data layer's, DummyData's: all of them)
        replace what it would deliver. pycaffe's ``start=`` and
        ``end=`` (layer names, where no input is named so) run those layers and the ones
        between (Caffe's ForwardFromTo: the blobs below ``start`` are read as they are; none
        where ``start`` comes after ``end``) and return ``end``'s tops (without ``end``, the
        outputs), without autograd: a backward follows a whole forward only.
        """
        first, last, end = self._pass_range(inputs, "forward", (0, len(self.layers) - 1))
        if "blobs" in self._input_slots and blobs is not None and not isinstance(blobs, list):
            inputs["blobs"], blobs = blobs, None       # an Input top named "blobs"
        blobs = self._check_blob_names(blobs)
        # a layer's tops other than Input buffers replace its whole forward
        self._check_inputs(inputs, lambda layer: not set(layer.tops) <= self._input_slots.keys())
        inputs = {name: as_numbers(value, f"forward({name}=...)", self.device)
                  for name, value in inputs.items()}
        overrides = {n: v for n, v in inputs.items() if n not in self._input_slots}
        for name in set(inputs) - set(overrides):
            value, target = inputs[name], self._blob_data(name)
            if not fills(value.shape, target.shape):
                raise AllconvError(f"input {name!r} has shape {tuple(value.shape)}, the blob "
                                   f"is {tuple(target.shape)}: call net.blobs[{name!r}]"
                                   ".reshape(...) and net.reshape() first")
            with torch.no_grad():
                target.copy_(value)
        if (first, last) == (0, len(self.layers) - 1):
            values, versions, self._loss = self._run(overrides, store=True)
            self._keep_diffs(versions)
            self._values, self._versions = values, versions
        elif first <= last:     # (start after end: Caffe's ForwardFromTo runs nothing)
            with torch.no_grad():
                values, versions, _ = self._run(overrides, True, first, last)
                self._keep_diffs(versions)
                self._values.update(values)
                self._versions.update(versions)
                self._view_again(set(values), last + 1)
            self._loss = None
        outputs = self.outputs if end is None else self.layers[end].tops
        # Caffe reshapes each layer in every forward: a top whose size follows the data
        # (Filter's) keeps the shape of its last value, as pycaffe's blob does.
        self._shapes.update((name, tuple(v.shape)) for name, v in self._values.items())
        return {name: self._last_value(name) for name in dict.fromkeys([*outputs, *blobs])}

    def _last_value(self, name: str) -> torch.Tensor:
        """What the last pass left in blob ``name``: its data, but for an Input top that a layer
        ran in place on, that layer's value (Caffe's one memory holds it; the Input's buffer
        keeps what was fed, README: deviations)."""
        value = self._values.get(name)
        if name in self._input_slots and value is not None:
            return value.detach()
        return self.blobs[name].data

    def _pass_range(self, named: dict, method: str, default: tuple[int, int],
                    ) -> tuple[int, int, int | None]:
        """The layers pycaffe's ``start=``/``end=`` in ``named`` (taken out of it; a blob of
        that name is an input or output instead) name for ``method``: (start, end, the
        ``end`` layer or None), each ``default``'s where not given."""
        (begin, finish), end = default, None
        for key in ("start", "end"):
            if key in named and key not in self.blobs:
                layer = named.pop(key)
                if layer not in self.layer_dict:
                    raise AllconvError(f"{method}({key}={layer!r}): no such layer (layers: "
                                       f"{', '.join(self.layer_names)})")
                index = self.layer_names.index(layer)
                if key == "start":
                    begin = index
                else:
                    finish = end = index
        return begin, finish, end

    def _view_again(self, changed: set, first: int) -> None:
        """After a part of the net ran, the tops of the Split, Flatten and Reshape layers (and
        of a one-bottom Concat or one-top Slice) from ``first`` on that view a ``changed`` blob
        view its new values, as Caffe's share their bottom's memory (they kept viewing the old
        values, which a later ``start=`` read)."""
        for layer in self.layers[first:]:
            if layer.tops_view_bottom and changed & set(layer.bottoms):
                tops = layer(*[self._values[b] for b in layer.bottoms])
                self._values.update(zip(layer.tops, tops))
                changed |= set(layer.tops)

    def backward(self, diffs=None, **top_diffs) -> dict:
        """Backpropagate the weighted loss of the last forward from the outputs' diffs (a
        loss's weight until written: ``net.blobs[out].diff[...] = g``, or ``top_diffs``,
        output blob = diff, which writes them first, as pycaffe's); parameter gradients
        accumulate in ``.grad`` (clear them with ``clear_param_diffs``), but for a blob whose
        diff Caffe's layer writes over in each backward (Parameter's, shared with its top;
        Scale's eltwise factor). Returns ``{blob: diff}`` of the inputs and the blobs
        ``diffs`` names, as pycaffe's."""
        last, first, end = self._pass_range(top_diffs, "backward", (len(self.layers) - 1, 0))
        diffs = self._check_blob_names(diffs)
        unknown = sorted(set(top_diffs) - set(self.outputs))
        if unknown:
            raise AllconvError(f"backward({unknown[0]}=...): not an output blob (outputs: "
                               f"{', '.join(self.outputs)})")
        for name, diff in top_diffs.items():
            self.blobs[name].diff[...] = as_blob(diff, f"backward({name}=...)",
                                                  self._shapes[name])
        if (first, last) != (0, len(self.layers) - 1):
            self._backward_from_to(first, last)
        elif self._loss is None:
            raise AllconvError("backward() needs a forward() over the whole net first (one "
                               "backward per forward; forward(start=/end=) keeps no gradients)")
        else:
            self._backward()
        below = self.inputs if end is None else self.layers[end].bottoms
        return {name: self.blobs[name].diff for name in dict.fromkeys([*below, *diffs])}

    def _backward_from_to(self, first: int, last: int) -> None:
        """pycaffe's ``backward(start=, end=)``, Caffe's BackwardFromTo: layers ``last`` down
        to ``first`` back-propagate from the diffs in the memory of ``last``'s tops (and
        their loss weights), as the last forward left their bottoms. Their forward runs
        again to rebuild the graph, so a layer whose forward draws or keeps state (Dropout
        or BatchNorm in TRAIN, a recurrent or Python layer, HDF5Output) is refused."""
        self.check_backward()
        for layer in self.layers[first:last + 1]:
            if not layer.repeatable_forward:
                raise AllconvError(f"backward(start=/end=) over {describe(layer.param)}: a "
                                   "backward over part of the net runs its forward again, "
                                   "and this layer's would draw or change its state anew")
        seeds = self._part_seeds(first, last)
        sources = {t: self._blob_data(t) for layer in self.layers[first:last + 1]
                   if not layer.bottoms for t in layer.tops}
        self._held_param_diffs.hand_over()
        values, versions, total = self._run(sources, True, first, last, seeded=set(seeds))
        pairs = [p for p in (self._diff_entry(t, g, values) for t, g in seeds.items()) if p]
        if total.requires_grad:
            pairs.append((total, torch.ones_like(total)))
        if pairs:
            torch.autograd.backward(*map(list, zip(*pairs)))
        self._loss_tops = {}
        self._values.update(values)
        self._versions.update(versions)

    def _backward(self) -> None:
        """``backward``'s pass: the outputs' written diffs join the loss's gradient where
        Caffe's Backward runs their layer (it contributes to a loss, or force_backward), and
        the diff memories of the outputs keep what the pass wrote."""
        self.check_backward()
        loss, self._loss = self._loss, None
        self._held_param_diffs.hand_over()
        for blob in (l.blobs.owner(i) for l in self.layers for i in l.overwritten_diffs):
            blob.grad = None    # as the layers' shapes now say (Scale's depends on the batch)
        for name in [n for n in self._held_diffs if n in self.outputs]:   # diff memories
            weight = self._top_loss_weights.get(name, 0.0)
            diff = self._held_diff(name)        # at the blob's shape now (a reshape's)
            seed = self._diff_entry(name, diff, self._values)
            if seed is not None and bool((diff != weight).any()):
                top, diff = seed
                loss = loss + (top * (diff - weight)).sum()     # the loss holds weight * top
        if loss.requires_grad:
            loss.backward()
        for key, top in self._loss_tops.items():    # the diffs the next forward's loss reads
            diff = torch.zeros_like(top) if top.grad is None else top.grad
            self._loss_diffs[key][:top.numel()] = diff.detach().reshape(-1)
        self._loss_tops = {}
        for name, held in self._held_diffs.items():  # what the pass left in an output's memory
            grad = self._kept_grad(name) if name in self.outputs else None
            if grad is not None and tuple(grad.shape) == tuple(held.shape):
                held.copy_(grad)
        if self.debug_info:
            self._log_param_norms()

    def _log_param_norms(self) -> None:
        """debug_info's line after each backward, as Caffe's Net::Backward logs it (at ERROR):
        the learnable blobs' L1 and L2 norms of data and diff, in float."""
        sums = torch.zeros(4, dtype=torch.float32)
        with torch.no_grad():
            for p in self.learnable_params:
                data = p.detach().float().cpu()
                diff = torch.zeros_like(data) if p.grad is None else p.grad.float().cpu()
                sums += torch.stack([data.abs().sum(), diff.abs().sum(),
                                     (data * data).sum(), (diff * diff).sum()])
        l1_data, l1_diff, l2_data, l2_diff = (sums[:2].tolist() + sums[2:].sqrt().tolist())
        log.error("    [Backward] All net params (data, diff): L1 norm = (%s, %s); L2 norm = "
                  "(%s, %s)", *(f"{v:.6g}" for v in (l1_data, l1_diff, l2_data, l2_diff)))

    def layer_need_backward(self) -> list[bool]:
        """Caffe's Net::layer_need_backward: whether each layer's Backward runs in a backward
        pass (a diff reaches it, or a blob of it learns, or force_backward)."""
        return list(self._layer_need)

    def check_backward(self) -> None:
        """Raise what Caffe's Net::Backward aborts on, if it would on this net: a layer
        without a backward that runs one, or a bottom whose diff its layer refuses."""
        if self._backward_refused:
            raise AllconvError(self._backward_refused)

    def forward_backward(self, **inputs) -> float:
        """forward + backward; returns the total weighted loss."""
        self.forward(**inputs)
        loss = float(self._loss.detach())
        self._backward()
        return loss

    @property
    def last_loss(self) -> float:
        """The weighted loss of the last `forward` (what Caffe's Net::Forward returns)."""
        return 0.0 if self._loss is None else float(self._loss.detach())

    def loss_weight(self, blob: str) -> float:
        """The loss weight of a top blob (Caffe's blob_loss_weights; 0 for a non-loss top)."""
        return self._top_loss_weights.get(blob, 0.0)

    @property
    def _layer_names(self) -> list[str]:
        """pycaffe's name of ``layer_names`` (``zip(net._layer_names, net.layers)``)."""
        return self.layer_names

    @property
    def _blob_names(self) -> list[str]:
        """pycaffe's: every blob's name, in the net's order."""
        return list(self.blobs)

    @property
    def _inputs(self) -> list[int]:
        """pycaffe's: the inputs' indices in ``blobs`` (``inputs`` names them)."""
        return [list(self.blobs).index(name) for name in self.inputs]

    @property
    def _outputs(self) -> list[int]:
        """pycaffe's: the outputs' indices in ``blobs``, in ``outputs``' order (by name)."""
        return [list(self.blobs).index(name) for name in self.outputs]

    @property
    def blob_loss_weights(self) -> OrderedDict:
        """pycaffe's: every blob's loss weight, in blob order (0 for a non-loss blob)."""
        return OrderedDict((name, self.loss_weight(name)) for name in self.blobs)

    def loss(self, **inputs) -> torch.Tensor:
        """The weighted loss scalar, storing no blobs (for compiled training steps).
        All inputs are used as given (Input buffers are not touched)."""
        self._check_inputs(inputs, lambda layer: True)
        return self._run(inputs, store=False)[2]

    def blob_values(self, **inputs) -> dict:
        """Every blob's latest value, with the autograd graph, storing nothing (for gradients
        w.r.t. any blob, as visualisation takes them). Inputs are used as given, as in loss()."""
        self._check_inputs(inputs, lambda layer: True)
        return self._run(inputs, store=False)[0]

    def clear_param_diffs(self) -> None:
        """Drop the accumulated parameter gradients (Caffe's ClearParamDiffs)."""
        for p in self.learnable_params:
            p.grad = None
        self._held_param_diffs.clear()

    # ------------------------------------------------------------------ layers

    def layers_below(self, blobs) -> list:
        """The layers that the blobs ``blobs`` depend on, in the net's order."""
        wanted, below = set(blobs), []
        for layer in reversed(self.layers):
            if wanted & set(layer.tops):
                below.append(layer)
                wanted.update(layer.bottoms)
        return below[::-1]


def refuse_empty(layer_param, bottom_shapes) -> None:
    """Refuse a layer whose bottom is built empty: Caffe allocates no memory for such a blob and
    aborts when a layer reads it. (A blob that a forward shrinks to nothing, a Filter's top,
    keeps its memory there, and the layers after it run.)"""
    for name, shape in zip(layer_param.bottom, bottom_shapes):
        if 0 in shape:
            raise AllconvError(f"{describe(layer_param)}: bottom {name!r} is empty, shape "
                               f"{tuple(shape)}; Caffe aborts when a layer reads an empty blob "
                               "(blob.cpp: Check failed: data_)")


def net_for_weights(prototxt, phase: int) -> Net:
    """A net whose weights are copied in next, built without the warnings of the fillers
    that the weights replace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoFillerWarning)
        return Net(prototxt, phase, seed=0)


def trained_net(prototxt, weights, phase: int = pb.TEST) -> Net:
    """The net with every learnable layer's blobs from ``weights`` (each layer must find its
    own there; None for a net without learnable layers)."""
    net = net_for_weights(prototxt, phase)
    if weights is not None:
        net.copy_from(weights, require_all=True)
    elif net.learnable_params:
        learned = ", ".join(dict.fromkeys(l.name for l in net.layers if len(l.blobs)))
        raise AllconvError(f"layer(s) {learned} learn: give their weights (--weights "
                           "W.caffemodel)")
    return net
