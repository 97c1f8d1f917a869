"""Caffe layers as torch modules: the ``Layer`` base, the ``LAYERS`` registry and ``make_layer``.

A layer is built from its LayerParameter and its bottom shapes. ``setup`` is Caffe's
LayerSetUp (read the parameters, create the learnable blobs), ``reshape`` is Caffe's
Reshape (check the bottom shapes, return the top shapes), ``forward`` returns a tuple of
tops. Errors raised in ``setup`` and ``reshape`` are prefixed with the layer's name and type
(a ``forward`` that checks its values names the layer itself: it runs unwrapped, as it is
compiled).
"""
from __future__ import annotations

import builtins
import contextlib
import importlib
import pkgutil
import warnings

import torch
from torch import nn

from runtime.blob_shape import check_blob_shape
from runtime.errors import AllconvError, printable
from runtime.fillers import fill
from runtime.proto import pb
from runtime.registry import add_once, did_you_mean

LAYERS: dict[str, type] = {}


class NoFillerWarning(UserWarning):
    """A layer's weights have no filler, so they start at zero (silenced where weights from a
    file replace them)."""


def register(type_name: str):
    """Class decorator: make the layer class buildable for Caffe type ``type_name``; a type
    is registered once (a second class for it is an error, as in Caffe's LayerRegistry)."""
    def add(cls):
        add_once(LAYERS, type_name, cls, "layer type")
        cls.type_name = type_name
        return cls
    return add


def describe(param) -> str:
    """How errors name a layer: ``layer 'conv1' (Convolution)``."""
    return f"layer {param.name!r} ({printable(param.type)})"


@contextlib.contextmanager
def layer_errors(param):
    """Prefix AllconvErrors raised inside with the layer's name and type."""
    try:
        yield
    except AllconvError as err:
        raise AllconvError(f"{describe(param)}: {err}") from None


def layer_type_list() -> list[str]:
    """The registered layer types, sorted (pycaffe's ``caffe.layer_type_list()``)."""
    return sorted(LAYERS)


def layer_class(param) -> type:
    """The registered class for ``param.type``."""
    cls = LAYERS.get(param.type)
    if cls is None:
        spelled = [name for name in LAYERS if name.lower() == param.type.lower()]
        hint = (f"; Caffe's types are case-sensitive: {spelled[0]}?" if spelled
                else did_you_mean(param.type, LAYERS))
        raise AllconvError(f"{describe(param)}: unknown layer type{hint} "
                           f"(supported: {', '.join(sorted(LAYERS))})")
    return cls


def make_layer(param, bottom_shapes, phase: int, generator: torch.Generator, **options):
    """Build the layer for ``param``; ``options`` go to layers that take them (Data: feed)."""
    cls = layer_class(param)
    with layer_errors(param):
        return cls(param, bottom_shapes, phase, generator, **options)


def _check_count(what: str, got: int, allowed: tuple[int, int | None]) -> None:
    low, high = allowed
    if got < low or (high is not None and got > high):
        want = f"{low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
        raise AllconvError(f"needs {want} {what} blob(s), got {got}")


class LayerBlobs(nn.ParameterList):
    """A layer's learnable blobs, as Caffe's ``layer->blobs()``: each in the layer's own shape.
    A blob shared in PERMISSIVE mode with an owner of another shape (same count) is a view of
    the owner's Parameter, so its data and diff are the owner's, as Caffe's ShareData and
    ShareDiff make them. ``owner(i)`` is the Parameter itself (what the solver updates)."""

    def __init__(self):
        super().__init__()
        self._shapes: dict[int, torch.Size] = {}

    def __getitem__(self, index):
        if isinstance(index, builtins.slice):     # (the package's slice is Slice's module)
            return [self[i] for i in range(*index.indices(len(self)))]
        key = int(self._get_abs_string_index(index))
        blob, shape = super().__getitem__(key), self._shapes.get(key)
        return blob if shape is None else blob.view(shape)

    def owner(self, index: int) -> nn.Parameter:
        return super().__getitem__(index)

    def owners(self) -> list[nn.Parameter]:
        return [self.owner(i) for i in range(len(self))]

    def share(self, index: int, owner: nn.Parameter) -> None:
        """Use ``owner``'s data and diff for blob ``index``, keeping the blob's own shape."""
        key, shape = int(self._get_abs_string_index(index)), self[index].shape
        self[key] = owner
        self._shapes.pop(key, None)
        if shape != owner.shape:
            self._shapes[key] = shape


class Layer(nn.Module):
    """Base of all layers. Subclasses override ``setup``, ``reshape`` and ``forward``.

    ``options`` are passed to ``setup``; only layers with ``accepts_feed`` take any.
    """

    num_bottoms: tuple[int, int | None] = (1, 1)
    num_tops: tuple[int, int | None] = (1, 1)
    is_loss = False        # Caffe LossLayer: top 0 gets loss_weight 1 by default
    accepts_feed = False   # Data-like source layers take feed/sample_shape options
    # the blobs whose diff each backward writes over, not adds to (Caffe's code writes it)
    overwritten_diffs: tuple[int, ...] = ()
    # Caffe's AllowForceBackward false: the bottoms force_backward leaves alone (labels, cont)
    kept_from_force_backward: tuple[int, ...] = ()
    # Caffe's Backward aborts when asked for these bottoms' diff: index (from the end if
    # negative) -> what they hold; without has_backward, whenever it runs (NOT_IMPLEMENTED)
    no_backward_to: dict[int, str] = {}
    has_backward = True
    # the bottoms whose diff Caffe's Backward writes, and every param diff it computes,
    # whenever the layer runs backward, whatever lr_mult says (Recurrent's unrolled net)
    diffs_whenever_run: tuple[int, ...] | None = None
    # its forward gives the same again and changes nothing (a backward over part of the net
    # runs it anew): not where it draws (Dropout in TRAIN), keeps state or writes files
    repeatable_forward = True
    # its tops are views of its bottom (Split's, Flatten's, Reshape's), as Caffe's share the
    # bottom's memory: a part of the net run below them leaves them viewing the new values
    tops_view_bottom = False
    # Caffe's bottom_need_backward_, the flags its Backward gets (set by the net's plan)
    bottom_need_backward: tuple[bool, ...] = ()
    # the tops' sizes follow the bottoms' values (Filter's), not only their shapes
    tops_sized_by_data = False
    # its forward runs Caffe's Reshape itself (a Python layer's code), so the net does not
    reshapes_in_forward = False
    # its backward does what its code says, not only what its tops' diffs make (a Python
    # layer's), so it runs wherever Caffe's does: with zero top diffs where no loss reaches it
    backward_runs_unreached = False
    # Caffe's top shares the bottom's diff memory (Reshape's ShareDiff at every reshape), so
    # a diff a layer above writes into the top is the bottom's too; ``diff_shared_by_backward``:
    # only once the layer's Backward has run (Flatten's ShareDiff is there)
    top_diff_is_bottom_diff = False
    diff_shared_by_backward = False
    # its backward passes a signal down the same way for every input (a linear map; ReLU's
    # deconvnet rule reads only the signal), so a reconstruction through it needs no image;
    # a property where the parameters decide
    backward_ignores_input = False
    # whether its Forward writes a top that set-up left empty: Caffe allocated no memory for it
    # and aborts there (blob.cpp: Check failed: data_); a forward's later reshape keeps memory
    empty_top_aborts = False
    # for ONNX export (runtime.export.batch_flow): the axis holding the batch of each bottom
    # and of each top, where it is not the first bottom's (the recurrent layers' T x N x ...);
    # the bottom whose values index the batch of bottom 0 (BatchReindex's); the range of the
    # values a layer reads as indices (Embed's input_dim)
    batch_axes: tuple[list[int], list[int]] | None = None
    batch_index_bottom: int | None = None
    index_range: int | None = None
    # bottom 1's batch axis for bottom 0's (Scale's and Bias's operand), as a method
    operand_batch_axis = None

    def __init__(self, param, bottom_shapes, phase: int, generator: torch.Generator, **options):
        super().__init__()
        self.param, self.name, self.phase = param, param.name, phase
        self.bottoms, self.tops = tuple(param.bottom), tuple(param.top)
        _check_count("bottom", len(param.bottom), self.num_bottoms)
        _check_count("top", len(param.top), self.num_tops)
        self.blobs = LayerBlobs()
        bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.setup(bottom_shapes, generator, **options)
        if len(param.param) > len(self.blobs):
            raise AllconvError(f"{len(param.param)} `param` entries but the layer has "
                               f"{len(self.blobs)} learnable blob(s)")
        self.top_shapes = self.reshape_tops(bottom_shapes)
        if self.empty_top_aborts:
            for name, shape in zip(self.tops, self.top_shapes):
                if 0 in shape:
                    raise AllconvError(f"top {name!r} is empty, shape {shape}; Caffe aborts "
                                       "when the layer writes it (blob.cpp: Check failed: data_)")
        self.loss_weights = self._loss_weights()

    @property
    def type(self) -> str:
        """The Caffe type, as pycaffe's ``layer.type`` (in place of nn.Module's ``type(dtype)``
        cast, which nothing here calls)."""
        return self.type_name

    def setup(self, bottom_shapes, generator) -> None:
        """Caffe's LayerSetUp: read parameters, create learnable blobs."""

    def share_bottom_memory(self) -> None:
        """Its top shares its bottom's data and diff, as Caffe's Reshape's does (a Concat of
        one bottom's, a Slice of one top's): views it, hands a diff written there down, and
        writes the bottom's diff whatever propagate_down says."""
        self.tops_view_bottom = self.top_diff_is_bottom_diff = True
        self.diffs_whenever_run = (0,)

    def reshape(self, bottom_shapes) -> list[tuple[int, ...]]:
        """Caffe's Reshape: check bottom shapes, return top shapes (default: like bottom 0)."""
        return [bottom_shapes[0]] * len(self.tops)

    def reshape_tops(self, bottom_shapes) -> list[tuple[int, ...]]:
        """``reshape``, each top shape checked as Caffe's Blob::Reshape checks it."""
        return [check_blob_shape(shape, f"top {name!r}")
                for name, shape in zip(self.tops, self.reshape(bottom_shapes))]

    def _loss_weights(self) -> list[float]:
        given = list(self.param.loss_weight)
        if given:
            if len(given) != len(self.tops):
                raise AllconvError(f"{len(given)} loss_weight value(s) for "
                                   f"{len(self.tops)} top(s): give none or one per top")
            return given
        if self.is_loss and len(self.tops) > 1:    # LossLayer adds one loss_weight, then checks
            raise AllconvError(f"{len(self.tops)} tops and no loss_weight: a loss layer weights "
                               "top 0 by 1 and then needs one loss_weight per top, as Caffe "
                               "(e.g. loss_weight: 1 loss_weight: 0)")
        weights = [0.0] * len(self.tops)
        if self.is_loss:
            weights[0] = 1.0
        return weights

    def to_proto(self) -> pb.LayerParameter:
        """The layer's definition as Caffe's Layer::ToProto writes it beside its blobs: its
        LayerParameter as set up (the net's phase where it named none, as Net::Init sets it;
        a loss layer's loss_weight 1 where none was given, as LossLayer adds it), no blobs."""
        param = pb.LayerParameter()
        param.CopyFrom(self.param)
        param.ClearField("blobs")
        if not param.HasField("phase"):
            param.phase = self.phase
        if self.is_loss and not len(param.loss_weight):
            param.loss_weight.append(1.0)
        return param

    def add_blob(self, shape, filler, generator) -> None:
        """Append a learnable blob of ``shape`` filled by ``filler`` (None: zeros, as a Blob's
        new memory), tagged with its ParamSpec."""
        index = len(self.blobs)
        data = torch.zeros(check_blob_shape(shape, f"learnable blob {index}"))
        if filler is not None:
            data = fill(data, filler, generator)
        blob = nn.Parameter(data)
        spec = self.param_spec(index)
        blob.lr_mult, blob.decay_mult = spec.lr_mult, spec.decay_mult
        self.blobs.append(blob)

    def param_spec(self, index: int) -> pb.ParamSpec:
        """The prototxt's ParamSpec of blob ``index``, or Caffe's default one (lr_mult and
        decay_mult 1) where it gives none."""
        specs = self.param.param
        return specs[index] if index < len(specs) else pb.ParamSpec()

    def warn_without_weight_filler(self, layer_param) -> None:
        """Weights ``layer_param`` gives no filler start at 0, as in Caffe: said once per
        layer, unless the prototxt gives the layer's blobs."""
        if not layer_param.HasField("weight_filler") and not len(self.param.blobs):
            warnings.warn(f"{describe(self.param)} has no weight_filler: its weights start at "
                          "zero (Caffe's default constant filler)", NoFillerWarning, stacklevel=3)

    def add_weights(self, shape, layer_param, generator) -> None:
        """Weights of ``shape`` and, with ``bias_term``, a bias of ``num_output`` values
        (Convolution and InnerProduct parameters)."""
        self.warn_without_weight_filler(layer_param)
        self.add_blob(shape, layer_param.weight_filler, generator)
        if layer_param.bias_term:
            self.add_blob((layer_param.num_output,), layer_param.bias_filler, generator)

    def scratch_diff(self, bottoms, top_diff, learns, bottom_diffs):
        """What Caffe's Forward or Backward leaves in bottom 0's diff where it propagates
        nothing there (a buffer it computes in), given the bottoms' values, top 0's diff (None
        where Backward did not run), per learnable blob whether this layer computes its diff,
        and per bottom whether it gets one; None: Caffe leaves that diff alone."""
        return None

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def data_sized(layers) -> tuple[list[bool], set[str]]:
    """Per layer, whether a bottom's size follows the data (a Filter's top, whose rows the
    data selects: ``tops_sized_by_data``, or what a layer computes from one); and every such
    blob."""
    sized, below = set(), []
    for layer in layers:
        follows = any(b in sized for b in layer.bottoms)
        below.append(follows)
        if follows or layer.tops_sized_by_data:
            sized.update(layer.tops)
    return below, sized
