"""Packed runs (issue 20): K runs of one net trained as one Caffe net.

A pack keeps each member's computation apart inside Caffe's own terms. Every Convolution gets
``num_output × K`` and ``group × K``, so member k's output channels [k·O, (k+1)·O) read only its
input channels; member k's images fill input channels [k·C, (k+1)·C) of each packed input.
ReLU, Dropout, MAX/AVE pooling, WITHIN_CHANNEL LRN, Eltwise and Split act per channel (or per
position of same-layout blobs) and stay as they are. Each member has its own label input
(``label_m<k>``), its own block of the class scores (a Slice of the scores along the channel
axis into ``<scores>_m<k>``) and its own SoftmaxWithLoss and Accuracy (``loss_m<k>``, ...) with
the solo layer's loss_weight: the total loss is the members' sum, and the gradient of member
k's parameters is its own loss's alone. Layers that would mix the members are refused.

Every learnable blob of a pack (Convolution's weights (K·O, C/g, kh, kw) and bias (K·O,)) holds
its members along axis 0: member k's rows are [k·n, (k+1)·n) with n = rows / K. The same holds
for state shaped like the parameters (momentum history). Dropout keeps each member's solo seed
(`Dropout.set_member_seeds`), so its masks are the solo run's, bit for bit, in eager mode.

    param = pack_net(solo_param, K)        # solo_param: a net whose data come from Input layers
    net = packed_net(solo_param, TRAIN, seeds)                 # weights, seeds from solo nets
    net.loss(**pack_inputs(net, [{"data": x_k, "label": y_k} for each member k]))
    write_weights(path, member_weights(net, k, K), net.name)   # member k's .caffemodel
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import torch

from runtime.caffemodel import write_weights
from runtime.errors import AllconvError
from runtime.filter_net import filter_net
from runtime.layers import describe
from runtime.layers.shapes import canonical_axis
from runtime.members import member_block
from runtime.net import Net
from runtime.proto import pb
from runtime.prototxt import read_net

__all__ = ["member_name", "pack_net", "packed_net", "PackedNet", "pack_weights", "pack_seeds",
           "member_weights", "pack_inputs", "Member"]

# Layers that act on each channel alone (or, Eltwise and Split, on blobs of the same layout).
PER_CHANNEL = ("Dropout", "Eltwise", "LRN", "Pooling", "ReLU", "Split")
# Layers that read one member's scores and labels: one copy per member.
PER_MEMBER = ("Accuracy", "SoftmaxWithLoss")
_WHY_MIXING = {
    "Concat": "joining blobs would interleave the members' channel blocks",
    "Data": "a Data layer reads one data stream; turn it into an Input layer of its "
            "shape first",
    "InnerProduct": "it connects every input channel to every output, which would mix the "
                    "members",
    "Softmax": "a softmax over the channels would mix the members",
}


def member_name(name: str, k: int) -> str:
    """What the pack calls member ``k``'s copy of ``name`` (a label input, a loss layer, its
    top, a block of the scores): ``<name>_m<k>``."""
    return f"{name}_m{k}"


def _refuse(layer, why: str) -> AllconvError:
    return AllconvError(f"cannot pack {describe(layer)}: {why}")


def _blob_shapes(param) -> dict[str, tuple[int, ...]]:
    """Every blob's shape in the net of ``param.state``, from the runtime's layers on the meta
    device (no weights)."""
    state = param.state
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = Net(param, state.phase, level=state.level, stages=tuple(state.stage), seed=0)
    return {name: blob.shape for name, blob in net.blobs.items()}


def _check_type(layer) -> None:
    """Refuse, naming the layer, what acts across channels (or is not known not to)."""
    if layer.type == "LRN" and layer.lrn_param.norm_region != pb.LRNParameter.WITHIN_CHANNEL:
        raise _refuse(layer, "ACROSS_CHANNELS normalization would mix neighbouring members' "
                             "channels (WITHIN_CHANNEL packs)")
    if layer.type not in ("Input", "Convolution") + PER_CHANNEL + PER_MEMBER:
        raise _refuse(layer, _WHY_MIXING.get(layer.type, (
            f"packing maps only Convolution, {', '.join(PER_CHANNEL + PER_MEMBER)} and Input "
            "layers, which keep the members apart")))


def _check_axis(layer, axis: int, shape, what: str) -> None:
    if canonical_axis(axis, len(shape)) != 1:
        raise _refuse(layer, f"its {what} axis must be the channel axis (1), where the members "
                             "are stacked")


def _score_axis(layer) -> int:
    return (layer.softmax_param.axis if layer.type == "SoftmaxWithLoss"
            else layer.accuracy_param.axis)


def _slice_layer(scores: str, members: int):
    """Caffe's Slice of ``scores`` along the channel axis into K equal blocks."""
    layer = pb.LayerParameter(name=f"{scores}_members", type="Slice", bottom=[scores],
                              top=[member_name(scores, k) for k in range(members)])
    layer.slice_param.axis = 1
    return layer


def _member_layers(layer, members: int):
    """One copy of a loss or accuracy layer per member, on its scores block and labels."""
    for k in range(members):
        copy = pb.LayerParameter()
        copy.CopyFrom(layer)
        copy.name = member_name(layer.name, k)
        copy.bottom[:] = [member_name(b, k) for b in layer.bottom]
        copy.top[:] = [member_name(t, k) for t in layer.top]
        yield copy


def _names(layers) -> list[str]:
    return [n for l in layers for n in (l.name, *l.top)]


def pack_net(net_param, members: int) -> "pb.NetParameter":
    """The NetParameter of the pack of ``members`` copies of ``net_param`` (a NetParameter,
    path or text whose data comes from Input layers: Data layers turned into Input layers of
    their tops' shapes),
    for the state it holds (its phase: Caffe's FilterNet is applied first).

    Input tops read as labels (bottom 1 of SoftmaxWithLoss or Accuracy) become one input per
    member, ``label_m<k>``; every other Input top is K times as wide on axis 1. Each loss or
    accuracy layer is copied per member (``loss_m<k>``, top ``loss_m<k>``, bottoms
    ``<scores>_m<k>`` and ``<label>_m<k>``) behind one Slice of its scores
    (``<scores>_members``). Raises `AllconvError`, naming the layer, for a layer that would mix
    members (InnerProduct, Concat, ACROSS_CHANNELS LRN, Softmax, any layer not known to keep
    them apart) and for a name the pack needs that the net already uses."""
    if members < 1:
        raise AllconvError(f"a pack needs at least one member, got {members}")
    param = filter_net(read_net(net_param))
    for layer in param.layer:
        _check_type(layer)
    packer = _Packer(param, members)
    for layer in param.layer:
        packer.add(layer)
    clash = sorted(set(packer.made) & (set(_names(param.layer)) | set(packer.shapes)))
    if clash:
        raise AllconvError(f"cannot pack: the name {clash[0]!r}, which the pack gives a "
                           "member's copy, is taken in the net")
    out = pb.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    out.layer.extend(packer.layers)
    return out


class _Packer:
    """pack_net's walk over a net's layers, in order: the pack's layers, and which blobs are
    packed (K members wide on axis 1), per member (labels) or sliced into the members'
    blocks."""

    def __init__(self, param, members: int):
        self.members, self.shapes = members, _blob_shapes(param)
        self.labels = {l.bottom[1] for l in param.layer
                       if l.type in PER_MEMBER and len(l.bottom) == 2}
        self.packed, self.per_member, self.sliced = set(), set(), set()
        self.layers, self.made = [], []     # the pack's layers; the names it makes (new ones)

    def add(self, layer) -> None:
        if layer.type == "Input":
            self._input(layer)
        elif layer.type in PER_MEMBER:
            self._per_member(layer)
        else:
            self._stacked(layer)

    def _input(self, layer) -> None:
        """The Input layer with each label top repeated per member and each other top's
        channel axis (1) K times as wide; one explicit shape per top."""
        out = pb.LayerParameter()
        out.CopyFrom(layer)
        del out.top[:]
        out.input_param.ClearField("shape")
        for top in layer.top:
            shape = list(self.shapes[top])
            if top in self.labels:
                names = [member_name(top, k) for k in range(self.members)]
                out.top.extend(names)
                for _ in names:
                    out.input_param.shape.add().dim.extend(shape)
                self.per_member.add(top)
                self.made += names
                continue
            if len(shape) < 2:
                raise _refuse(layer, f"top {top!r} of shape {tuple(shape)} has no channel axis "
                                     "to stack the members on, and no loss or accuracy reads it "
                                     "as labels")
            shape[1] *= self.members
            out.top.append(top)
            out.input_param.shape.add().dim.extend(shape)
            self.packed.add(top)
        self.layers.append(out)

    def _per_member(self, layer) -> None:
        """A loss or accuracy layer: one copy per member, behind one Slice of its scores."""
        scores, label = layer.bottom[:2] if len(layer.bottom) == 2 else (None, None)
        if scores not in self.packed or label not in self.per_member:
            raise _refuse(layer, "its bottoms must be the packed scores and a label Input top")
        _check_axis(layer, _score_axis(layer), self.shapes[scores], "class")
        copies = [_slice_layer(scores, self.members)] if scores not in self.sliced else []
        copies += _member_layers(layer, self.members)
        self.layers += copies
        self.made += _names(copies)
        self.sliced.add(scores)

    def _stacked(self, layer) -> None:
        """A layer that keeps the members apart, on packed bottoms: a grouped convolution K
        times as wide, else the layer as it is."""
        if layer.type == "Convolution":
            _check_axis(layer, layer.convolution_param.axis, self.shapes[layer.bottom[0]],
                        "convolution")
        outside = [b for b in layer.bottom if b not in self.packed]
        if outside:
            raise _refuse(layer, f"bottom {outside[0]!r} is not a packed blob (labels are per "
                                 "member; only loss and accuracy layers may read them)")
        rewritten = self.sliced.intersection(layer.top)
        if rewritten:
            raise _refuse(layer, f"it rewrites {sorted(rewritten)[0]!r} after the scores were "
                                 "sliced into the members' blocks")
        copy = pb.LayerParameter()
        copy.CopyFrom(layer)
        if layer.type == "Convolution":
            copy.convolution_param.num_output *= self.members
            copy.convolution_param.group *= self.members
        self.layers.append(copy)
        self.packed.update(layer.top)


def _packed_and_solo_layers(packed: Net, solos: Sequence[Net]):
    """(packed layer, [each solo net's layer of that name]) for the packed layers that have
    blobs or seeds; a solo net missing one is an error."""
    by_name = [dict(zip(solo.layer_names, solo.layers)) for solo in solos]
    for layer in packed.layers:
        if not (len(layer.blobs) or hasattr(layer, "set_member_seeds")):
            continue
        missing = [k for k, layers in enumerate(by_name) if layer.name not in layers]
        if missing:
            raise AllconvError(f"member {missing[0]}'s net has no layer {layer.name!r}")
        yield layer, [layers[layer.name] for layers in by_name]


def pack_weights(packed: Net, solos: Sequence[Net]) -> None:
    """Copy member k's learnable blobs from ``solos[k]``, layer by name, into ``packed``."""
    for layer, sources in _packed_and_solo_layers(packed, solos):
        for i, blob in enumerate(layer.blobs):
            parts = [source.blobs[i].detach() if i < len(source.blobs) else None
                     for source in sources]
            for k, part in enumerate(parts):
                if part is None or part.shape != member_block(blob, k, len(solos)).shape:
                    raise AllconvError(f"layer {layer.name!r} blob {i}: member {k}'s blob "
                                       f"{None if part is None else tuple(part.shape)} is not "
                                       f"a block of the pack's {tuple(blob.shape)}")
            with torch.no_grad():
                blob.copy_(torch.cat(parts, 0))


def pack_seeds(packed: Net, solos: Sequence[Net]) -> None:
    """Give every packed Dropout the seeds of ``solos``' layers of its name (member k's masks
    are then ``solos[k]``'s)."""
    for layer, sources in _packed_and_solo_layers(packed, solos):
        if hasattr(layer, "set_member_seeds"):
            if any(len(source.seeds) != 1 for source in sources):
                raise AllconvError(f"layer {layer.name!r}: a member's net is itself a pack")
            layer.set_member_seeds([source.seeds[0] for source in sources])


class PackedNet(Net):
    """A pack's `Net`, as `packed_net` builds it: it keeps its members' solo layer
    definitions (``solo_layers``), which `member_weights` writes their .caffemodels with."""

    def __init__(self, param, phase: int, seed: int, solo_layers: list):
        super().__init__(param, phase, seed=seed)
        self.solo_layers = solo_layers


def member_weights(packed: PackedNet, k: int, members: int) -> list[tuple]:
    """Member ``k``'s layers as ``runtime.caffemodel.write_weights`` takes them: the solo
    net's definitions (``packed.solo_layers``), each with member k's blocks of the pack's
    blobs of its name, so its .caffemodel is a solo run's."""
    if not isinstance(packed, PackedNet):
        raise AllconvError("member_weights needs the net packed_net builds (it keeps the solo "
                           "layers' definitions)")
    blobs = {layer.name: layer.blobs for layer in packed.layers}
    return [(definition, [member_block(b.detach(), k, members).cpu().numpy()
                          for b in blobs.get(definition.name, ())])
            for definition in packed.solo_layers]


class Member:
    """Member ``k`` of a packed net and its optimizer (`runtime.optim`, built with one rate
    per member) in the shape `runtime.snapshot` writes and restores, so that its files are
    those of a solo run: ``save`` / ``copy_from`` its .caffemodel (its learnable layers),
    ``solver_state`` / ``load_solver_state`` its momentum history."""

    def __init__(self, net: Net, optimizer, k: int, members: int):
        if not 0 <= k < members:
            raise AllconvError(f"no member {k} of {members}")
        self.net, self.optimizer, self.k, self.members = net, optimizer, k, members

    def save(self, path) -> None:
        write_weights(path, member_weights(self.net, self.k, self.members), self.net.name)

    def copy_from(self, path, *, require_all: bool = True) -> None:
        """Member k's blocks from a solo net's .caffemodel, as `Net.copy_from` reads it:
        every learnable layer must find its own (``require_all`` is always true here)."""
        self.net.copy_from(path, require_all=True, into=lambda layer: [
            member_block(blob, self.k, self.members) for blob in layer.blobs])

    def solver_state(self, iter: int, current_step: int, learned_net: str):
        return self.optimizer.solver_state(iter, current_step, learned_net, member=self.k)

    def load_solver_state(self, state, path: str = "solverstate") -> None:
        self.optimizer.load_solver_state(state, path, member=self.k)


def packed_net(net_param, phase: int, seeds: Sequence[int]) -> PackedNet:
    """The pack of ``len(seeds)`` members of ``net_param`` (see `pack_net`) as a `Net` of
    ``phase``, member k's weights and Dropout seeds those of ``Net(net_param, phase,
    seed=seeds[k])`` (the pack's own fillers are overwritten)."""
    param = read_net(net_param)
    param.state.phase = phase
    solos = [Net(param, phase, seed=seed) for seed in seeds]
    net = PackedNet(pack_net(param, len(seeds)), phase, seeds[0],
                    [layer.to_proto() for layer in solos[0].layers])
    pack_weights(net, solos)
    pack_seeds(net, solos)
    return net


def pack_inputs(packed: Net, member_inputs: Sequence[Mapping[str, torch.Tensor]]) -> dict:
    """The pack's inputs from each member's solo inputs (``{"data": x_k, "label": y_k}``):
    a label goes to its member's input (``label_m<k>``); other inputs are joined on axis 1
    (member k's channels [k·C, (k+1)·C))."""
    members, inputs = len(member_inputs), {}
    if not members:
        raise AllconvError("no member's inputs: give one mapping per member of the pack")
    names = [set(given) for given in member_inputs]
    if (odd := next((k for k, given in enumerate(names) if given != names[0]), None)):
        raise AllconvError(f"member {odd}'s inputs are {sorted(names[odd])}, member 0's "
                           f"{sorted(names[0])}: give every member the same inputs")
    for name in member_inputs[0]:
        values = [given[name] for given in member_inputs]
        if member_name(name, 0) in packed.inputs:
            if (member_name(name, members - 1) not in packed.inputs
                    or member_name(name, members) in packed.inputs):
                raise AllconvError(f"inputs of {members} members for a pack of another size")
            inputs.update((member_name(name, k), v) for k, v in enumerate(values))
        elif name in packed.inputs:
            inputs[name] = torch.cat(values, 1)
        else:
            raise AllconvError(f"the pack has no input for {name!r} (inputs: {packed.inputs})")
    return inputs
