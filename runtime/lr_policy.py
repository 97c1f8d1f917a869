"""Caffe's learning-rate policies (SGDSolver::GetLearningRate in src/caffe/solvers/sgd_solver.cpp).

`learning_rate(solver_param, iter, current_step) -> (rate, current_step)` returns the rate for the
update that follows `iter` completed updates, and the new multistep position (Caffe keeps that
position in the solver and saves it in `.solverstate` as `current_step`).

Arithmetic follows Caffe's float solver: SolverParameter floats are fp32; `step`, `multistep` and
`exp` raise gamma to an integer power in double (C++11 `pow(float, int)`); `inv`, `poly` and
`sigmoid` are computed in fp32. The returned rate is a Python float holding an fp32 value.

`CaffeLR` is the same function as a torch lr scheduler, for a loop around `runtime.CaffeSGD`:
a scheduler is what such a loop already steps once per update, and it carries multistep's
position in its ``state_dict`` (a stateless function could not: multistep moves at most one
step per call). The Solver keeps calling the function, because the rate is also logged.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import AllconvError
from .registry import add_once

__all__ = ["POLICIES", "CaffeLR", "learning_rate"]

_f32 = np.float32


def _check(cond: bool, policy: str, what: str) -> None:
    if not cond:
        raise AllconvError(f"lr_policy {policy!r}: {what}")


def _int_power(p, k: int) -> float:
    # base_lr * pow(gamma, k): float base_lr times a double power, rounded to fp32 on assignment
    # (an overflow is inf, as in C++).
    with np.errstate(all="ignore"):
        return float(_f32(np.float64(_f32(p.base_lr)) * np.power(np.float64(_f32(p.gamma)), k)))


def _fixed(p, it: int, step: int) -> tuple[float, int]:
    return float(_f32(p.base_lr)), step


def _step(p, it: int, step: int) -> tuple[float, int]:
    _check(p.stepsize > 0, "step", f"stepsize must be > 0 (got {p.stepsize})")
    _check(p.gamma >= 0, "step", f"gamma must be >= 0 (got {p.gamma})")
    step = it // p.stepsize
    return _int_power(p, step), step


def _exp(p, it: int, step: int) -> tuple[float, int]:
    _check(p.gamma >= 0, "exp", f"gamma must be >= 0 (got {p.gamma})")
    return _int_power(p, it), step


def _inv(p, it: int, step: int) -> tuple[float, int]:
    _check(p.gamma >= 0, "inv", f"gamma must be >= 0 (got {p.gamma})")
    with np.errstate(all="ignore"):
        base = _f32(1) + _f32(p.gamma) * _f32(it)
        rate = _f32(p.base_lr) * np.power(base, -_f32(p.power))
    return float(rate), step


def _multistep(p, it: int, step: int) -> tuple[float, int]:
    # At most one step per call: Caffe's `if`, not a `while`.
    if step < len(p.stepvalue) and it >= p.stepvalue[step]:
        step += 1
    _check(p.gamma >= 0, "multistep", f"gamma must be >= 0 (got {p.gamma})")
    return _int_power(p, step), step


def _poly(p, it: int, step: int) -> tuple[float, int]:
    _check(p.max_iter > 0, "poly", f"max_iter must be > 0 (got {p.max_iter})")
    with np.errstate(all="ignore"):
        frac = _f32(1) - _f32(it) / _f32(p.max_iter)
        rate = _f32(p.base_lr) * np.power(frac, _f32(p.power))
    return float(rate), step


def _sigmoid(p, it: int, step: int) -> tuple[float, int]:
    # No parameter checks: Caffe 1.0 runs sigmoid with gamma < 0 (a decaying rate) -- the
    # solver_lr_sigmoid fixture made with real Caffe uses gamma = -1.5.
    with np.errstate(all="ignore"):
        e = np.exp(-_f32(p.gamma) * (_f32(it) - _f32(p.stepsize)))
        rate = _f32(p.base_lr) * (_f32(1) / (_f32(1) + e))
    return float(rate), step


POLICIES: dict[str, Callable] = {}
for _name, _policy in (("fixed", _fixed), ("step", _step), ("exp", _exp), ("inv", _inv),
                       ("multistep", _multistep), ("poly", _poly), ("sigmoid", _sigmoid)):
    add_once(POLICIES, _name, _policy, "lr policy")


def learning_rate(solver_param, iter: int, current_step: int = 0) -> tuple[float, int]:
    """Caffe's GetLearningRate for `iter` updates done; returns (rate, new current_step)."""
    name = solver_param.lr_policy
    fn = POLICIES.get(name)
    if fn is None:
        raise AllconvError(
            f"unknown lr_policy {name!r}; valid policies: {', '.join(POLICIES)}")
    return fn(solver_param, int(iter), int(current_step))


class CaffeLR(torch.optim.lr_scheduler.LRScheduler):
    """Caffe's lr policy of ``solver_param`` for every group of ``optimizer``.

    After k calls of ``step()`` (k updates done) each group's ``lr`` is the rate of update k;
    ``current_step`` is Caffe's multistep position after those k updates, the value a
    ``.solverstate`` written at iteration k holds. The rate comes from the solver's
    ``base_lr``, not from the optimizer's ``lr``.

    ``base_lrs`` (a pack of runs, runtime/pack.py): one base lr per member, each member's rate
    the one its solo solver (``base_lr`` replaced) computes; every group's ``lr`` must then be
    a 1-d tensor of one rate per member, which is written, in place, only when a rate changes
    (a CUDA graph that reads it stays valid). ``rates`` holds the current rate of each member
    (one without ``base_lrs``) as floats, for the host.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, solver_param, iter: int = 0,
                 current_step: int = 0, base_lrs=None):
        if solver_param.lr_policy not in POLICIES:
            learning_rate(solver_param, 0, 0)  # raises the listing error
        self.solver_param = solver_param
        self.member_params = None if base_lrs is None else [
            _with_base_lr(solver_param, lr) for lr in base_lrs]
        self._written = None
        self.current_step = self._lookahead = int(current_step)
        super().__init__(optimizer)
        if iter:
            self.load_state_dict({"last_epoch": iter, "current_step": current_step})

    def get_lr(self) -> list:
        rate, self._lookahead = learning_rate(self.solver_param, self.last_epoch,
                                              self.current_step)
        if self.member_params is not None:
            rate = tuple(learning_rate(p, self.last_epoch, self.current_step)[0]
                         for p in self.member_params)
        self.rates = rate if isinstance(rate, tuple) else (rate,)
        return [rate] * len(self.optimizer.param_groups)

    @property
    def passed_a_step(self) -> bool:
        """Whether this iteration's rate moved Caffe's multistep position (its "MultiStep
        Status" line)."""
        return self.solver_param.lr_policy == "multistep" and self._lookahead != self.current_step

    def step(self, epoch=None) -> None:
        self.current_step = self._lookahead   # the update just done moved Caffe's position
        if self.member_params is None:
            super().step(epoch)
            return
        self._step_count = getattr(self, "_step_count", 0) + 1
        self.last_epoch += 1
        self._write(self.get_lr())

    def _write(self, rates: list) -> None:
        """Each group's lr: a float, or (members) its tensor, written when the rates change."""
        if self.member_params is None:
            for group, rate in zip(self.optimizer.param_groups, rates):
                group["lr"] = rate
        elif rates[0] != self._written:
            for group in self.optimizer.param_groups:
                lr = group["lr"]
                if not isinstance(lr, torch.Tensor) or lr.numel() != len(rates[0]):
                    raise AllconvError(f"{len(rates[0])} member rates need a group lr tensor "
                                       "of as many rates")
                source = torch.tensor(rates[0], dtype=lr.dtype)
                lr.copy_(source.pin_memory() if lr.is_cuda else source, non_blocking=True)
            self._written = rates[0]
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "current_step": self.current_step}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``last_epoch`` updates done and multistep position ``current_step``."""
        self.last_epoch = int(state["last_epoch"])
        self.current_step = int(state["current_step"])
        self._write(self.get_lr())


def _with_base_lr(solver_param, base_lr: float):
    """A copy of ``solver_param`` with another ``base_lr``."""
    param = type(solver_param)()
    param.CopyFrom(solver_param)
    param.base_lr = base_lr
    return param
