"""Python (python_layer.hpp): a layer whose code is a user's class, ``python_param.layer`` in
the module ``python_param.module``, imported from ``sys.path`` (which PYTHONPATH extends) as
Caffe imports it; ``import caffe`` in the module, and in its code as it runs, finds
``runtime.python_layer_api``.

As in Caffe: ``param_str`` and ``phase`` are set before ``setup``; ``reshape`` runs at set-up,
at ``net.reshape()`` and before each ``forward``; ``backward`` gets the tops' diffs and
``propagate_down`` and writes the bottoms' diffs. The blobs ``setup`` adds with
``self.blobs.add_blob`` start at zero and learn (``param`` specs, solvers, .caffemodel files);
their ``data`` is the weights' memory and, in ``backward``, their ``diff`` the gradient the
solver reads, which the layer's code adds to or writes over. Bottoms and tops are float32
numpy memory of the layer's own, kept up to its capacity as Caffe's blobs are; on a GPU the
weights and their gradients are copied to the host for each call and back after it.
"""
from __future__ import annotations

import contextlib
import importlib
import operator
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime import python_layer_api as api
from runtime.blob_shape import check_blob_shape, reshaped
from runtime.errors import AllconvError
from runtime.layers import Layer, layer_errors, register

_CAFFE = api.module()
_RUNTIME = str(Path(__file__).resolve().parents[1])     # allconv's own frames, not the code's


def _where(err: BaseException) -> str:
    """`` (file:line)`` of the innermost frame of the layer's code that ``err`` passed (a
    SyntaxError's own place), past allconv's own frames (the stand-in's checks)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}:{err.lineno})"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not str(Path(f.filename).resolve()).startswith(_RUNTIME)]
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


_SWAP = threading.RLock()       # one thread's code at a time holds sys.modules["caffe"]


@contextlib.contextmanager
def _caffe_stand_in():
    """``import caffe`` finds the stand-in in this block (the module's import, each call of
    its code); what ``sys.modules`` held is put back after."""
    with _SWAP:
        kept = sys.modules.get("caffe")
        sys.modules["caffe"] = _CAFFE
        try:
            yield
        finally:
            if kept is None:
                sys.modules.pop("caffe", None)
            else:
                sys.modules["caffe"] = kept


def _said(err: BaseException) -> str:
    """What ``err`` says, in one line, as Python prints it (pycaffe's words where its
    ``str`` fails; ``sys.exit``'s code)."""
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code!r})"
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 - a user's exception whose __str__ fails
        text = "<exception str() failed>"
    return f"raised {type(err).__name__}: {text}".replace("\n", " ")


def _import_module(name: str):
    """The module ``name``, imported with the stand-in as ``caffe``."""
    if name.startswith(".") or "/" in name or "\\" in name:
        raise AllconvError(f"python_param.module {name!r} is a relative name or a path: Caffe "
                           "imports a module by its full name (pkg.module), from PYTHONPATH")
    try:
        with _caffe_stand_in():
            return importlib.import_module(name)
    except KeyboardInterrupt:
        raise
    except ModuleNotFoundError as err:
        if err.name == name or name.startswith(f"{err.name}."):
            raise AllconvError(f"python_param.module {name!r}: no such module on sys.path (as "
                               "Caffe does, it is imported from PYTHONPATH: add its folder "
                               "there)") from None
        raise AllconvError(f"python_param.module {name!r}: importing it {_said(err)}"
                           f"{_where(err)}") from err
    except BaseException as err:  # noqa: BLE001 - the module's code: sys.exit, its own
        raise AllconvError(f"python_param.module {name!r}: importing it {_said(err)}"
                           f"{_where(err)}") from err


def _origin(module) -> str:
    """Where ``module`` comes from: its file, a namespace package's folders."""
    if module is _CAFFE:
        return "allconv's stand-in for pycaffe's caffe"
    found = getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
    return str(found or "built in")


def layer_class(module_name: str, class_name: str) -> type:
    """The class ``class_name`` of module ``module_name``, a subclass of ``caffe.Layer``."""
    if not module_name:
        raise AllconvError("python_param.module is not set: it names the module that holds "
                           "the layer's class")
    if not class_name:
        raise AllconvError("python_param.layer is not set: it names the layer's class in "
                           "python_param.module")
    module = _import_module(module_name)
    try:
        cls = getattr(module, class_name, None)
    except Exception as err:  # noqa: BLE001 - the module's own __getattr__
        raise AllconvError(f"python_param.layer {class_name!r}: looking it up in module "
                           f"{module_name!r} {_said(err)}{_where(err)}") from err
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, api.Layer) and v is not api.Layer)
        raise AllconvError(f"python_param.layer {class_name!r}: module {module_name!r} "
                           f"({_origin(module)}) has no such name (its layer classes: "
                           f"{', '.join(found) or 'none'})")
    if not isinstance(cls, type):
        raise AllconvError(f"python_param.layer {class_name!r}: {module_name}.{class_name} is "
                           f"a {type(cls).__name__}, not a class")
    if not issubclass(cls, api.Layer):
        raise AllconvError(
            f"python_param.layer {class_name!r} in module {module_name!r} is not a subclass "
            "of the caffe.Layer that allconv hands the module; if it derives from pycaffe's "
            "own, the module was imported before this net with pycaffe's caffe: let the net "
            "import it")
    return cls


class _Learnable(api.BlobBase):
    """Learnable blob ``index`` as the layer's code sees it: ``data`` is the weights' memory,
    ``diff`` the gradient's (``net.params``' diff; zeros where there was none yet), which the
    solver reads."""

    def __init__(self, layer: "Python", index: int):
        self._layer, self._index = layer, index

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._layer.blobs[self._index].shape)

    @property
    def data(self) -> np.ndarray:
        return self._layer.host(self._layer.blobs[self._index].detach())

    @property
    def diff(self) -> np.ndarray:
        owner = self._layer.blobs.owner(self._index)
        if owner.grad is None:
            owner.grad = torch.zeros_like(owner)
        return self._layer.host(owner.grad.view(self.shape))

    def reshape(self, *shape, **kwargs) -> None:
        if kwargs:
            raise TypeError("Blob.reshape takes no kwargs")
        self._layer.reshape_learnable(self._index, [operator.index(d) for d in shape])


class _Call(torch.autograd.Function):
    """One forward of the layer's code on the bottoms (then ``params``, which only make the
    backward run where a blob learns); its backward runs the code's ``backward``."""

    @staticmethod
    def forward(ctx, layer: "Python", count: int, *tensors):
        ctx.layer, ctx.count = layer, count
        return layer.run_forward(tensors[:count])

    @staticmethod
    def backward(ctx, *top_diffs):
        layer, count = ctx.layer, ctx.count
        needs = ctx.needs_input_grad[2:]
        bottom_diffs = layer.run_backward(top_diffs, needs[:count])
        return (None, None, *bottom_diffs, *[None] * (len(needs) - count))


@register("Python")
class Python(Layer):
    num_bottoms = (0, None)
    num_tops = (0, None)
    tops_sized_by_data = True       # whatever its code's reshape says, each forward
    reshapes_in_forward = True
    backward_runs_unreached = True
    repeatable_forward = False      # its code may keep state (a data layer's place)

    def setup(self, bottom_shapes, generator):
        p = self.param.python_param
        cls = layer_class(p.module, p.layer)
        self.qualname = f"{p.module}.{p.layer}"
        self._host_copies: list[tuple[torch.Tensor, np.ndarray]] = []
        self._calling = False
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        # Caffe's code may write any bottom's diff, propagate_down or not, and the Split or
        # layer below reads it: the net takes every one whenever the layer runs backward
        self.diffs_whenever_run = tuple(range(len(self.bottoms)))
        self.bottom_blobs = [api.Memory(name) for name in self.bottoms]
        for blob, shape in zip(self.bottom_blobs, bottom_shapes):
            blob.reshape(*shape)
        self.top_blobs = [self.bottom_blobs[j] if j < len(self.bottoms) and
                          self.bottoms[j] == name else api.Memory(name)
                          for j, name in enumerate(self.tops)]
        self.python = self._call(cls, (self.param,), "the constructor")
        self._call(self._hand_over, (p.param_str,), "setting param_str, phase and blobs")
        self._adding = True
        try:
            self._run_code("setup", self.bottom_blobs, self.top_blobs)
        finally:
            self._adding = False

    def _hand_over(self, param_str: str) -> None:
        """What Caffe's LayerSetUp sets on the layer before its setup (and pycaffe's
        ``blobs``)."""
        self.python.param_str, self.python.phase = param_str, int(self.phase)
        self.python._caffe_blobs = api.BlobVec(self)

    # ------------------------------------------------ what python_layer_api's BlobVec asks

    def add_learnable(self, shape) -> None:
        if not self._adding:
            raise AllconvError("add_blob is for setup: Caffe's net takes a layer's learnable "
                               "blobs once, after its setup")
        self.add_blob(shape, None, None)      # zeros, as a new Blob's memory

    def learnable_count(self) -> int:
        return len(self.blobs)

    def learnable(self, index: int) -> _Learnable:
        return _Learnable(self, index)

    def reshape_learnable(self, index: int, shape) -> None:
        """Blob ``index`` reshaped as Caffe's Blob::Reshape (its values kept up to its
        capacity), while ``setup`` runs: after it, the net has taken the blobs."""
        if not self._adding:
            raise AllconvError("a learnable blob is reshaped in setup: after it, Caffe's net "
                               "has taken the layer's blobs")
        old = self.blobs.owner(index)
        blob = nn.Parameter(reshaped(old.data, check_blob_shape(
            shape, f"reshape of learnable blob {index}")))
        blob.lr_mult, blob.decay_mult = old.lr_mult, old.decay_mult
        self.blobs[index] = blob

    def host(self, tensor: torch.Tensor) -> np.ndarray:
        """``tensor``'s memory as numpy: itself on the CPU, else ``host_copy``."""
        return tensor.numpy() if tensor.device.type == "cpu" else self.host_copy(tensor)

    def host_copy(self, tensor: torch.Tensor) -> np.ndarray:
        """A host copy of a device tensor, written back after the call of the layer's code
        that took it (outside one, read-only)."""
        copy = tensor.detach().cpu().numpy().copy()
        if self._calling:
            self._host_copies.append((tensor, copy))
        else:
            copy.flags.writeable = False
        return copy

    # ------------------------------------------------------------------ running its code

    def _call(self, method, args, what: str):
        """``method(*args)`` with the stand-in as ``caffe``; an exception in it becomes one
        line naming the layer, the class's method and where in the code it was raised."""
        self._calling = True
        try:
            with _caffe_stand_in():
                return method(*args)
        except KeyboardInterrupt:
            raise
        except AllconvError as err:
            raise AllconvError(f"{self.qualname} {what}: {err}{_where(err)}") from err
        except BaseException as err:  # noqa: BLE001 - the code's: sys.exit, its own
            raise AllconvError(f"{self.qualname} {what} {_said(err)}{_where(err)}") from err
        finally:
            self._calling = False
            for tensor, copy in self._host_copies:
                tensor.copy_(torch.from_numpy(copy))
            self._host_copies = []

    def _run_code(self, name: str, *args) -> None:
        """The class's method ``name`` on ``args`` through ``_call``; a class that defines
        none is one line (Caffe's setup and reshape would call themselves without end, the
        others raise AttributeError)."""
        try:
            method = getattr(self.python, name, None)
        except Exception as err:  # noqa: BLE001 - the class's own __getattr__ or property
            raise AllconvError(f"{self.qualname} {name}: looking it up {_said(err)}"
                               f"{_where(err)}") from err
        if not callable(method):
            signature = "top, propagate_down, bottom" if name == "backward" else "bottom, top"
            raise AllconvError(f"{self.qualname} defines no {name}(self, {signature})")
        self._call(method, args, name)

    def reshape(self, bottom_shapes):
        for blob, shape in zip(self.bottom_blobs, bottom_shapes):
            if blob.shape != tuple(shape):
                blob.reshape(*shape)
        self._run_code("reshape", self.bottom_blobs, self.top_blobs)
        missing = [blob.name for blob in self.top_blobs if blob.shape is None]
        if missing:
            raise AllconvError(f"{self.qualname} reshape gave top {missing[0]!r} no shape "
                               "(top[i].reshape(...))")
        return [blob.shape for blob in self.top_blobs]

    def forward(self, *bottoms):
        params = [self.blobs[i] for i in range(len(self.blobs))]
        return _Call.apply(self, len(bottoms), *bottoms, *params)

    def run_forward(self, bottoms) -> tuple[torch.Tensor, ...]:
        """Caffe's Forward: the bottoms' values into their memory, then the code's reshape
        and forward; the tops' memory as tensors (with no tops, an empty anchor, so that its
        backward runs where Caffe's does: under force_backward)."""
        with layer_errors(self.param):
            for blob, value in zip(self.bottom_blobs, bottoms):
                if blob.shape != tuple(value.shape):
                    blob.reshape(*value.shape)
                blob.data[...] = value.detach().float().cpu().numpy()
            self._bottom_shapes = [tuple(b.shape) for b in bottoms]
            self.top_shapes = self.reshape(self._bottom_shapes)
            self._run_code("forward", self.bottom_blobs, self.top_blobs)
        device = self._anchor.device
        return tuple(torch.from_numpy(blob.data.copy()).to(device)
                     for blob in self.top_blobs) or (torch.zeros(0, device=device),)

    def run_backward(self, top_diffs, wanted) -> list:
        """Caffe's Backward: the tops' diffs into their memory, then the code's backward, told
        Caffe's propagate_down (the net's ``bottom_need_backward``); the diffs it left in the
        bottoms the net takes (``wanted``: every one, ``diffs_whenever_run``)."""
        for blob, diff in zip(self.top_blobs, top_diffs):
            blob.diff[...] = 0 if diff is None else diff.detach().float().cpu().numpy()
        down = list(self.bottom_need_backward) or [bool(w) for w in wanted]
        with layer_errors(self.param):
            self._run_code("backward", self.top_blobs, down, self.bottom_blobs)
            for blob, shape in zip(self.bottom_blobs, self._bottom_shapes):
                if blob.shape != shape:
                    raise AllconvError(f"{self.qualname} backward reshaped bottom "
                                       f"{blob.name!r} to {blob.shape}: its diff must keep "
                                       f"the forward's shape {shape}")
        device = self._anchor.device
        return [torch.from_numpy(blob.diff.copy()).to(device) if taken else None
                for blob, taken in zip(self.bottom_blobs, wanted)]
