"""Caffe's AdaGrad (adagrad_solver.cpp): h += g²; w -= lr·lr_mult · g / (√h + delta)."""
from __future__ import annotations

import torch

from runtime.optim.base import PROTO, CaffeOptimizer, over_root, refuse_momentum, scale_


class CaffeAdaGrad(CaffeOptimizer):
    """AdaGrad as Caffe computes it; the history (``state[p]["sum_sq"]``) is the sum of the
    squared regularized diffs. Caffe refuses a momentum with it."""

    solver_types = ("AdaGrad",)
    history_keys = ("sum_sq",)

    def __init__(self, params, lr: float, delta: float = PROTO.delta,
                 weight_decay: float = PROTO.weight_decay,
                 regularization: str = PROTO.regularization_type,
                 clip_gradients: float = PROTO.clip_gradients, iter_size: int = PROTO.iter_size):
        super().__init__(params, {"lr": lr, "delta": delta, "weight_decay": weight_decay,
                                  "regularization": regularization}, clip_gradients, iter_size)

    @classmethod
    def solver_options(cls, param) -> dict:
        refuse_momentum(param, "AdaGrad")
        return {"delta": param.delta}

    def _update(self, group, params, grads, local_rate) -> None:
        history = self._state(params, "sum_sq")
        torch._foreach_add_(history, torch._foreach_mul(grads, grads))
        update = over_root(grads, history, group["delta"])
        scale_(update, group, local_rate)
        self._subtract(params, update)
