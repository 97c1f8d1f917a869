"""Caffe's Adam (adam_solver.cpp): m = β₁·m + (1 − β₁)·g; v = β₂·v + (1 − β₂)·g²;
w -= lr·lr_mult · √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + δ), t = iter + 1. Unlike Kingma and Ba,
δ is added to the uncorrected √v."""
from __future__ import annotations

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.optim.base import PROTO, CaffeOptimizer, fp32, over_root, running_average_, scale_


class CaffeAdam(CaffeOptimizer):
    """Adam as Caffe computes it: β₁ is the solver's ``momentum``, β₂ its ``momentum2``, δ its
    ``delta``. The history is m (``state[p]["exp_avg"]``, Caffe's history_[i]) and v
    (``state[p]["exp_avg_sq"]``, history_[N + i]); t comes from ``group["iter"]``, which
    ``load_solver_state`` sets from the ``.solverstate``."""

    solver_types = ("Adam",)
    host_iteration = True
    history_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float, momentum: float, momentum2: float = PROTO.momentum2,
                 delta: float = PROTO.delta, weight_decay: float = PROTO.weight_decay,
                 regularization: str = PROTO.regularization_type,
                 clip_gradients: float = PROTO.clip_gradients, iter_size: int = PROTO.iter_size):
        super().__init__(params, {"lr": lr, "momentum": momentum, "momentum2": momentum2,
                                  "delta": delta, "weight_decay": weight_decay,
                                  "regularization": regularization}, clip_gradients, iter_size)

    @classmethod
    def solver_options(cls, param) -> dict:
        return {"momentum": param.momentum, "momentum2": param.momentum2, "delta": param.delta}

    @classmethod
    def check_options(cls, options: dict) -> None:
        """The bias correction must be finite at every t. 1 − β₁ᵗ is 0 only for β₁ = ±1 (at
        t = 1 or 2) and 1 − β₂ᵗ < 0 only for |β₂| > 1 (at t = 1 or 2), so t = 1 and 2 decide
        (beyond them a power may overflow, which makes the correction 0, not NaN). Other
        values, unusual as they are (β₁ > 1, β₂ in [−1, 0)), Caffe computes finitely, and so
        are accepted."""
        super().check_options(options)
        beta1, beta2 = options["momentum"], options["momentum2"]
        for t in (1, 2):
            correction = cls.correction(beta1, beta2, t)
            if not np.isfinite(correction):
                field, value = (("momentum", beta1) if np.isfinite(cls.correction(0, beta2, t))
                                else ("momentum2", beta2))
                raise AllconvError(
                    f"{field} is {value:g}: Adam's bias correction sqrt(1 - momentum2^t) / "
                    f"(1 - momentum^t) would be {correction:g} at iteration {t}, and so would "
                    "the update (Caffe does not check this)")

    @staticmethod
    def correction(beta1: float, beta2: float, t: int) -> float:
        """√(1 − β₂ᵗ)/(1 − β₁ᵗ): float betas raised to an int power in double (C++'s
        ``pow(float, int)``), the quotient rounded to float; IEEE as in C++: β₂ > 1 gives NaN,
        β₁ = 1 gives ±inf or NaN, an overflow inf (Caffe checks neither)."""
        b1, b2 = np.float64(fp32(beta1)), np.float64(fp32(beta2))
        with np.errstate(all="ignore"):
            return fp32(np.sqrt(1.0 - np.power(b2, t)) / (1.0 - np.power(b1, t)))

    def _update(self, group, params, grads, local_rate) -> None:
        m, v = self._state(params, "exp_avg"), self._state(params, "exp_avg_sq")
        running_average_(m, grads, group["momentum"])
        running_average_(v, torch._foreach_mul(grads, grads), group["momentum2"])
        update = over_root(m, v, group["delta"])
        scale = self.correction(group["momentum"], group["momentum2"], group["iter"] + 1)
        if isinstance(local_rate, list):     # a pack: one tensor of row rates per parameter
            rate = [r * scale for r in local_rate]
        elif isinstance(local_rate, torch.Tensor):
            rate = local_rate * scale
        else:
            rate = fp32(fp32(local_rate) * scale)
        scale_(update, group, rate)
        self._subtract(params, update)
