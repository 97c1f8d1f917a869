"""Caffe's RMSProp (rmsprop_solver.cpp): h = rms_decay·h + (1 − rms_decay)·g²;
w -= lr·lr_mult · g / (√h + delta)."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.optim.base import (PROTO, CaffeOptimizer, fp32, over_root, refuse_momentum,
                                running_average_, scale_)


class CaffeRMSProp(CaffeOptimizer):
    """RMSProp as Caffe computes it; the history (``state[p]["mean_sq"]``) is the running mean
    of the squared regularized diffs. ``rms_decay`` must lie in [0, 1); Caffe refuses a
    momentum with it."""

    solver_types = ("RMSProp",)
    history_keys = ("mean_sq",)

    def __init__(self, params, lr: float, rms_decay: float = PROTO.rms_decay,
                 delta: float = PROTO.delta, weight_decay: float = PROTO.weight_decay,
                 regularization: str = PROTO.regularization_type,
                 clip_gradients: float = PROTO.clip_gradients, iter_size: int = PROTO.iter_size):
        super().__init__(params, {"lr": lr, "rms_decay": rms_decay, "delta": delta,
                                  "weight_decay": weight_decay,
                                  "regularization": regularization}, clip_gradients, iter_size)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Caffe's check: rms_decay in [0, 1), so the squared-gradient history stays >= 0."""
        super().check_options(options)
        if not 0 <= fp32(options["rms_decay"]) < 1:
            raise AllconvError(f"rms_decay should lie between 0 and 1 (got "
                               f"{options['rms_decay']:g})")

    @classmethod
    def solver_options(cls, param) -> dict:
        refuse_momentum(param, "RMSProp")
        return {"rms_decay": param.rms_decay, "delta": param.delta}

    def _update(self, group, params, grads, local_rate) -> None:
        history = self._state(params, "mean_sq")
        running_average_(history, torch._foreach_mul(grads, grads), group["rms_decay"])
        update = over_root(grads, history, group["delta"])
        scale_(update, group, local_rate)
        self._subtract(params, update)
