"""Caffe's SGD and Nesterov update as a ``torch.optim.Optimizer``.

The order of one ``step()`` is Caffe's ApplyUpdate (src/caffe/solvers/sgd_solver.cpp,
nesterov_solver.cpp):

1. clip: when ``clip_gradients >= 0`` and the global L2 norm of the diffs of *every* parameter
   (``lr_mult`` 0 included: under ``force_backward`` they have diffs) exceeds it, scale every
   diff by clip / norm;
2. per parameter: scale by 1/iter_size; add ``weight_decay * decay_mult * w`` (L2) or
   ``* sign(w)`` (L1); v = momentum * v + lr * lr_mult * g; w -= v (Nesterov:
   w -= (1 + momentum) * v - momentum * v_old).

Arithmetic is Caffe's float solver: the hyper-parameters are rounded to fp32 before use.
Parameters are grouped by their ``lr_mult``/``decay_mult`` attributes (1/1 where absent), and
each group's update runs as a few in-place ``torch._foreach_*`` calls with no host sync. The
rate is ``group["lr"]``, set by `runtime.lr_policy.CaffeLR` or by the caller.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch

from .errors import AllconvError
from .proto import pb

__all__ = ["CaffeSGD", "SOLVER_TYPES", "REGULARIZATIONS"]

SOLVER_TYPES = ("SGD", "Nesterov")
REGULARIZATIONS = ("L1", "L2")
_f32 = np.float32


def _fp32(x: float) -> float:
    return float(_f32(x))


def _group_by_mults(params) -> list[dict]:
    """Torch-style params (tensors or group dicts) split into one group per (lr_mult,
    decay_mult); a parameter's own attributes win over its group's keys, which win over 1."""
    params = list(params)
    if not params:
        raise AllconvError("CaffeSGD got an empty parameter list")
    given = params if isinstance(params[0], dict) else [{"params": params}]
    groups: "OrderedDict[tuple, dict]" = OrderedDict()
    for index, group in enumerate(given):
        options = {k: v for k, v in group.items() if k != "params"}
        tensors = group["params"]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        for p in tensors:
            lr_mult = float(getattr(p, "lr_mult", options.get("lr_mult", 1.0)))
            decay_mult = float(getattr(p, "decay_mult", options.get("decay_mult", 1.0)))
            key = (index, lr_mult, decay_mult)
            if key not in groups:
                groups[key] = {**options, "params": [], "lr_mult": lr_mult,
                               "decay_mult": decay_mult}
            groups[key]["params"].append(p)
    return list(groups.values())


class CaffeSGD(torch.optim.Optimizer):
    """Momentum SGD with Caffe's update order, parameter multipliers and float arithmetic.

    ``momentum``, ``weight_decay``, ``regularization`` ("L2" or "L1") and ``nesterov`` may
    differ per group; ``clip_gradients`` (global norm; negative: off) and ``iter_size`` (the
    number of backward passes summed into one step) apply to the whole step. The momentum
    history is ``state[p]["momentum_buffer"]``, created at construction, so it can be saved
    before the first step; `solver_state` / `load_solver_state` convert it to and from a
    Caffe ``.solverstate``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 regularization: str = "L2", clip_gradients: float = -1.0, iter_size: int = 1,
                 nesterov: bool = False):
        if regularization not in REGULARIZATIONS:
            raise AllconvError(f"unknown regularization_type {regularization!r}; "
                               f"valid: {', '.join(REGULARIZATIONS)}")
        if int(iter_size) < 1:
            raise AllconvError(f"iter_size must be >= 1 (got {iter_size})")
        params = list(params)
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "regularization": regularization, "nesterov": bool(nesterov)}
        super().__init__(_group_by_mults(params), defaults)
        self.clip_gradients = float(clip_gradients)
        self.iter_size = int(iter_size)
        self._order = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        self._scratch: dict[torch.Tensor, torch.Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(
                    p, memory_format=torch.contiguous_format).detach()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_solver(cls, solver, net) -> "CaffeSGD":
        """From a SolverParameter, its text or a solver file, for ``net``'s learnable params
        (a `runtime.Net`, or any iterable of parameters)."""
        from .prototxt import read_solver

        param = solver if isinstance(solver, pb.SolverParameter) else read_solver(solver)
        kind = param.type
        if kind not in SOLVER_TYPES:
            raise AllconvError(f"solver type {kind!r} is not supported; supported types: "
                               f"{', '.join(SOLVER_TYPES)}")
        params = getattr(net, "learnable_params", net)
        return cls(params, lr=_fp32(param.base_lr), momentum=param.momentum,
                   weight_decay=param.weight_decay,
                   # Caffe reads regularization_type only when there is weight decay
                   regularization=param.regularization_type if param.weight_decay else "L2",
                   clip_gradients=param.clip_gradients, iter_size=param.iter_size,
                   nesterov=kind == "Nesterov")

    # ------------------------------------------------------------------ the update
    @torch.no_grad()
    def step(self, closure=None):
        """One Caffe ApplyUpdate on the accumulated ``.grad`` tensors (which it overwrites)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._clip()
        for group in self.param_groups:
            params = group["params"]
            history = [self.state[p]["momentum_buffer"] for p in params]
            if group["lr_mult"] == 0 and all(p.grad is None for p in params):
                self._frozen(group, params, history)  # no diff reaches them, as in Caffe
                continue
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in params]
            self._regularized(group, params, grads)
            rate = group["lr"]
            if isinstance(rate, torch.Tensor):
                local_rate = rate * _fp32(group["lr_mult"])
            else:
                local_rate = _fp32(_f32(rate) * _f32(group["lr_mult"]))
            torch._foreach_mul_(grads, local_rate)
            self._momentum(group, params, history, grads)
        return loss

    def _clip(self) -> None:
        clip = self.clip_gradients
        if clip < 0:
            return
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, torch.where(norm > clip, clip / norm, 1.0))

    def _regularized(self, group: dict, params, grads) -> None:
        """g = g / iter_size + weight_decay * decay_mult * (w or sign(w)), in place."""
        if self.iter_size != 1:
            torch._foreach_mul_(grads, _fp32(_f32(1) / _f32(self.iter_size)))
        decay = _fp32(_f32(group["weight_decay"]) * _f32(group["decay_mult"]))
        if decay:
            if group["regularization"] == "L1":
                torch._foreach_add_(grads, torch._foreach_sign(params), alpha=decay)
            else:
                torch._foreach_add_(grads, params, alpha=decay)

    def _momentum(self, group: dict, params, history, scaled_grads) -> None:
        """v = momentum * v + scaled_grads (None: no gradient term); w -= v (Nesterov: w -=
        (1 + momentum) * v - momentum * v_old, in nesterov_solver.cpp's order)."""
        momentum = _fp32(group["momentum"])
        if group["nesterov"]:
            old = self._scratch_for(params)
            torch._foreach_copy_(old, history)
            torch._foreach_mul_(old, -momentum)
        torch._foreach_mul_(history, momentum)
        if scaled_grads is not None:
            torch._foreach_add_(history, scaled_grads)
        if group["nesterov"]:
            torch._foreach_add_(old, history, alpha=_fp32(_f32(1) + _f32(momentum)))
            torch._foreach_sub_(params, old)
        else:
            torch._foreach_sub_(params, history)

    def _frozen(self, group: dict, params, history) -> None:
        # lr_mult 0 and no diff: the local rate is 0, so v = momentum * v; w -= v (a no-op
        # while v is zero, which it stays unless a history was loaded).
        if _fp32(group["momentum"]):
            self._momentum(group, params, history, None)

    def _scratch_for(self, params) -> list[torch.Tensor]:
        """Caffe's update_ blobs (Nesterov): kept between steps, not part of the state."""
        out = []
        for p in params:
            if p not in self._scratch:
                self._scratch[p] = torch.empty_like(self.state[p]["momentum_buffer"])
            out.append(self._scratch[p])
        return out

    # ------------------------------------------------------------------ .solverstate
    def history(self) -> list[torch.Tensor]:
        """The momentum buffers in the order the parameters were given (Caffe's
        learnable_params order when built from a Net)."""
        return [self.state[p]["momentum_buffer"] for p in self._order]

    def solver_state(self, iter: int, current_step: int, learned_net: str) -> "pb.SolverState":
        """A Caffe ``SolverState`` message holding the history, exactly (fp32)."""
        from .caffemodel import array_to_blob

        state = pb.SolverState()
        state.iter, state.current_step, state.learned_net = iter, current_step, learned_net
        for h in self.history():
            state.history.append(array_to_blob(h.detach().float().cpu().numpy()))
        return state

    def load_solver_state(self, state: "pb.SolverState", path: str = "solverstate") -> None:
        """Copy a ``SolverState``'s history into the momentum buffers; shapes must match
        (legacy 4-d blob shapes padded with leading 1s are accepted, as Caffe does)."""
        from .caffemodel import blob_to_array

        history = self.history()
        if len(state.history) != len(history):
            raise AllconvError(f"{path}: solverstate has {len(state.history)} history blobs "
                               f"but the net has {len(history)} learnable params")
        arrays = []
        for i, (blob, h) in enumerate(zip(state.history, history)):
            want = tuple(h.shape)
            try:
                a = blob_to_array(blob)
            except AllconvError as e:
                raise AllconvError(f"{path}: history blob {i}: {e}") from None
            legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
            padded = (1,) * (4 - len(want)) + want if len(want) <= 4 else want
            if not (a.shape == want or (legacy and a.shape == padded)):
                raise AllconvError(f"{path}: history blob {i} has shape {tuple(a.shape)} but "
                                   f"learnable param {i} has shape {want}")
            arrays.append(a.reshape(want))
        with torch.no_grad():
            for h, a in zip(history, arrays):
                h.copy_(torch.from_numpy(np.ascontiguousarray(a)).to(h.device, h.dtype))


def read_solver_state(path) -> "pb.SolverState":
    """A binary ``.solverstate``; one-line errors naming the path."""
    from .caffemodel import read_binary

    path = os.fspath(path)
    if path.endswith(".h5"):
        raise AllconvError(f"{path}: HDF5 solver states are not supported")
    if not os.path.isfile(path):
        raise AllconvError(f"{path}: solver state file not found")
    try:
        return read_binary(path, pb.SolverState)
    except AllconvError as e:
        if path in str(e):
            raise
        raise AllconvError(f"{path}: not a readable solverstate: {e}") from e
    except Exception as e:  # protobuf DecodeError and friends
        raise AllconvError(f"{path}: not a readable solverstate: {e}") from e
