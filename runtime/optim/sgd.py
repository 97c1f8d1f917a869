"""Caffe's SGD and Nesterov rules (sgd_solver.cpp, nesterov_solver.cpp): v = momentum * v +
lr * lr_mult * g; w -= v (Nesterov: w -= (1 + momentum) * v - momentum * v_old)."""
from __future__ import annotations

import torch

from runtime.optim.base import PROTO, CaffeOptimizer, _f32, fp32, scale_


class CaffeSGD(CaffeOptimizer):
    """Momentum SGD with Caffe's update order, parameter multipliers and float arithmetic.

    ``momentum``, ``weight_decay``, ``regularization`` and ``nesterov`` may differ per group.
    The momentum history is ``state[p]["momentum_buffer"]``; `solver_state` /
    `load_solver_state` convert it to and from a Caffe ``.solverstate``.
    """

    solver_types = ("SGD", "Nesterov")
    history_keys = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = PROTO.momentum,
                 weight_decay: float = PROTO.weight_decay,
                 regularization: str = PROTO.regularization_type,
                 clip_gradients: float = PROTO.clip_gradients, iter_size: int = PROTO.iter_size,
                 nesterov: bool = False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "regularization": regularization, "nesterov": bool(nesterov)},
                         clip_gradients, iter_size)
        self._scratch: dict[torch.Tensor, torch.Tensor] = {}

    @classmethod
    def solver_options(cls, param) -> dict:
        return {"momentum": param.momentum, "nesterov": param.type == "Nesterov"}

    def _update(self, group, params, grads, local_rate) -> None:
        scale_(grads, group, local_rate)
        self._momentum(group, params, self._state(params, "momentum_buffer"), grads)

    def _frozen(self, group, params) -> bool:
        # lr_mult 0 and no diff: the local rate is 0, so v = momentum * v; w -= v (a no-op
        # while v is zero, which it stays unless a history was loaded).
        if fp32(group["momentum"]):
            self._momentum(group, params, self._state(params, "momentum_buffer"), None)
        return True

    def _momentum(self, group: dict, params, history, scaled_grads) -> None:
        """v = momentum * v + scaled_grads (None: no gradient term); w -= v (Nesterov: w -=
        (1 + momentum) * v - momentum * v_old, in nesterov_solver.cpp's order)."""
        momentum = fp32(group["momentum"])
        if group["nesterov"]:
            old = self._scratch_for(params)
            torch._foreach_copy_(old, history)
            torch._foreach_mul_(old, -momentum)
        torch._foreach_mul_(history, momentum)
        if scaled_grads is not None:
            torch._foreach_add_(history, scaled_grads)
        if group["nesterov"]:
            torch._foreach_add_(old, history, alpha=fp32(_f32(1) + _f32(momentum)))
            self._subtract(params, old)
        else:
            self._subtract(params, history)

    def _scratch_for(self, params) -> list[torch.Tensor]:
        """Caffe's update_ blobs (Nesterov): kept between steps, not part of the state."""
        out = []
        for p in params:
            if p not in self._scratch:
                self._scratch[p] = torch.empty_like(self.state[p]["momentum_buffer"])
            out.append(self._scratch[p])
        return out
