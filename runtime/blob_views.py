"""pycaffe's views of a net's memory: ``Blob`` (``net.blobs[name]``: data, diff, shape) and
``ParamView`` (``net.params[layer][i]``), with the diffs held where no gradient is yet
(``HeldParamDiffs``); the ``Net`` owns the values they show. Values given for a blob are read
and checked here (``as_numbers``, ``fills``, ``as_blob``)."""
from __future__ import annotations

import math

import numpy as np
import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError


class _Shaped:
    """``count`` and pycaffe's legacy ``num``/``channels``/``height``/``width`` of a view with
    a ``shape``, named by ``_what`` in the error of a shape of more than 4 axes."""

    _what: str

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def _legacy(self, axis: int) -> int:
        """Caffe's LegacyShape: the axis of a blob of at most 4 axes, 1 past its last."""
        return legacy_shape(self.shape, self._what)[axis]

    num = property(lambda self: self._legacy(0), doc="pycaffe's legacy axis 0")
    channels = property(lambda self: self._legacy(1), doc="pycaffe's legacy axis 1")
    height = property(lambda self: self._legacy(2), doc="pycaffe's legacy axis 2")
    width = property(lambda self: self._legacy(3), doc="pycaffe's legacy axis 3")


class Blob(_Shaped):
    """pycaffe-style view of a named blob: ``data``, ``diff``, ``shape``, ``count``.

    ``data`` is the latest value (the last writer's output in an in-place chain). An
    output's ``diff`` is memory of its own, as Caffe's: what is written there, where backward
    starts, then what each backward leaves (``Net._held_diff``). Another blob's ``diff`` is
    what Caffe's memory holds after backward: the gradient w.r.t. the earliest value of the
    chain that has one (the bottom diff of the first in-place layer that propagates down; the
    first producer's output when all do), or for a Reshape's or Flatten's top its bottom's,
    whose memory it shares; without one, a loss top's loss weight (set at set-up), a Reshape
    bottom's top diff, a layer's scratch diff (``Layer.scratch_diff``), else zeros. ``data``
    shares storage with the net's current value of the blob; the next forward makes new
    values (take ``data`` again, where pycaffe's array follows the net).
    """

    def __init__(self, net, name: str):
        self._net, self.name = net, name
        self._what = f"blob {name!r}"

    @property
    def data(self) -> torch.Tensor:
        return self._net._blob_data(self.name)

    @property
    def diff(self) -> torch.Tensor:
        if self.name in self._net.outputs:      # only the user and backward write its memory
            return self._net._held_diff(self.name)
        grad = self._net._shared_memory_grad(self.name)
        if grad is None and self.name in self._net._top_loss_weights:   # set at Caffe's set-up
            return self._net._held_diff(self.name)
        if grad is None and self.name in self._net._diff_shared_with:   # a Reshape's bottom
            return Blob(self._net, self._net._diff_shared_with[self.name]).diff.reshape(
                self.data.shape)
        if grad is None:
            grad = self._net._scratch_diff(self.name)
        return grad if grad is not None else self._net._held_diff(self.name)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._net._shapes[self.name]

    def reshape(self, *shape) -> None:
        """Resize an input blob (then call ``net.reshape()``), like pycaffe."""
        self._net._reshape_input(self.name, shape)

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape})"


class ParamView(_Shaped):
    """pycaffe-style view of a layer's learnable blob ``index``, in the layer's own shape:
    writes to ``data`` change the weights."""

    def __init__(self, blobs, index: int, held: "HeldParamDiffs", layer: str):
        self._param, self._shape, self._held = blobs.owner(index), blobs[index].shape, held
        self._what = f"{layer}'s parameter {index}"

    @property
    def data(self) -> torch.Tensor:
        return self._param.data.view(self._shape)

    @property
    def diff(self) -> torch.Tensor:
        """The accumulated gradient; before any (after ``clear_param_diffs``), zeros that a
        write fills and the next backward adds onto, as into Caffe's diff memory."""
        if self._param.grad is not None:
            return self._param.grad.view(self._shape)
        return self._held.of(self._param).view(self._shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._shape)

    def reshape(self, *shape) -> None:
        """pycaffe's Blob.reshape, to the shape it has: a layer reads its parameters in its
        own shape, which Caffe's layer code does not re-read after a reshape of the blob, so
        another shape is refused (give the net a layer of that shape instead)."""
        if tuple(int(d) for d in shape) != self.shape:
            raise AllconvError(f"{self._what} keeps its layer's shape {self.shape}; a reshape "
                               f"to {tuple(shape)} is refused: change the layer's definition")


class HeldParamDiffs:
    """The diffs of a net's parameters read while they had no gradient (none yet, or after
    ``clear_param_diffs``): zeros that keep what is written into them, one per parameter
    whichever layer's view (a shared one's too) reads it, on the parameter's device."""

    def __init__(self):
        self._held: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def of(self, param: torch.Tensor) -> torch.Tensor:
        _, held = self._held.get(id(param), (None, None))
        if held is None or held.device != param.device or held.dtype != param.dtype:
            held = (torch.zeros_like(param.detach()) if held is None
                    else held.to(param.device, param.dtype))
            self._held[id(param)] = (param, held)
        return held

    def hand_over(self) -> None:
        """Before a backward: each held diff of a parameter that learns becomes the gradient
        the backward adds onto, as Caffe's Backward adds into the diff memory (a frozen one's
        stays held, as its memory does)."""
        for key, (param, held) in list(self._held.items()):
            if param.requires_grad:
                if param.grad is None:
                    param.grad = held.to(param.device, param.dtype)
                del self._held[key]

    def clear(self) -> None:
        self._held.clear()


def fills(shape, blob_shape) -> bool:
    """Whether an input of ``shape`` fills a blob of ``blob_shape`` as pycaffe's assignment
    does: its batch, the rest broadcast (one channel to all, say)."""
    try:
        broadcast = torch.broadcast_shapes(shape, blob_shape)
    except RuntimeError:
        return False
    return tuple(shape[:1]) == tuple(blob_shape[:1]) and broadcast == tuple(blob_shape)


def as_numbers(value, what: str, device=None) -> torch.Tensor:
    """``value`` (an array, a tensor, nested lists) as float32 values, or one line saying why
    not (torch's own error names no input)."""
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        value = value.copy()        # (a broadcast view, say: torch warns of such an array)
    try:
        return torch.as_tensor(value, dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise AllconvError(f"{what}: not an array of numbers ({type(value).__name__})") from None


def as_blob(value, what: str, shape) -> torch.Tensor:
    """``value`` as float32 values of a blob of ``shape``, or one line saying why not."""
    tensor = as_numbers(value, what)
    if tuple(tensor.shape) != tuple(shape):
        raise AllconvError(f"{what}: shape {tuple(tensor.shape)}, the blob is {tuple(shape)}")
    return tensor
