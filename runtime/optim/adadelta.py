"""Caffe's AdaDelta (adadelta_solver.cpp), with Caffe's learning rate on top of Zeiler's rule:
h_g = μ·h_g + (1 − μ)·g²; u = g·√((h_u + δ) / (h_g + δ)); h_u = μ·h_u + (1 − μ)·u²;
w -= lr·lr_mult·u."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.optim.base import PROTO, CaffeOptimizer, fp32, running_average_, scale_


class CaffeAdaDelta(CaffeOptimizer):
    """AdaDelta as Caffe computes it (``momentum`` is Zeiler's decay ρ). The history is the
    running mean of the squared diffs (``state[p]["grad_sq"]``, Caffe's history_[i]) and of
    the squared updates before the rate (``state[p]["update_sq"]``, history_[N + i])."""

    solver_types = ("AdaDelta",)
    history_keys = ("grad_sq", "update_sq")

    def __init__(self, params, lr: float, momentum: float, delta: float = PROTO.delta,
                 weight_decay: float = PROTO.weight_decay,
                 regularization: str = PROTO.regularization_type,
                 clip_gradients: float = PROTO.clip_gradients, iter_size: int = PROTO.iter_size):
        super().__init__(params, {"lr": lr, "momentum": momentum, "delta": delta,
                                  "weight_decay": weight_decay,
                                  "regularization": regularization}, clip_gradients, iter_size)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """momentum > 1 weighs g² by 1 − momentum < 0: the history h_g goes negative at the
        first update and the root of (h_u + δ)/(h_g + δ) is NaN (Caffe checks nothing). Below
        0 the history is a signed sum that only some gradients drive negative: accepted."""
        super().check_options(options)
        if fp32(options["momentum"]) > 1:
            raise AllconvError(f"momentum is {options['momentum']:g}: AdaDelta's squared-"
                               "gradient history momentum*h + (1 - momentum)*g^2 would be "
                               "negative and the update NaN (Caffe does not check this); "
                               "momentum must be at most 1")

    @classmethod
    def solver_options(cls, param) -> dict:
        return {"momentum": param.momentum, "delta": param.delta}

    def _update(self, group, params, grads, local_rate) -> None:
        grad_sq, update_sq = self._state(params, "grad_sq"), self._state(params, "update_sq")
        momentum, delta = group["momentum"], fp32(group["delta"])
        running_average_(grad_sq, torch._foreach_mul(grads, grads), momentum)
        ratio = torch._foreach_add(update_sq, delta)
        torch._foreach_div_(ratio, torch._foreach_add(grad_sq, delta))
        torch._foreach_sqrt_(ratio)
        torch._foreach_mul_(grads, ratio)
        running_average_(update_sq, torch._foreach_mul(grads, grads), momentum)
        scale_(grads, group, local_rate)
        self._subtract(params, grads)
