"""Exp (exp_layer.cpp): y = base^(shift + scale·x) = b^shift · e^(ln b · scale · x), base e when
``base`` is −1 (the default); gradient y · ln b · scale."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register


def log_base(base: float, field: str) -> float:
    """ln(base) of an Exp/Log ``base`` field: 1 for −1 (base e); other bases must be > 0."""
    if base == -1:
        return 1.0
    if not base > 0:
        raise AllconvError(f"{field} must be positive (or -1 for e), got {base:g}")
    return math.log(base)


@register("Exp")
class Exp(Layer):
    def setup(self, bottom_shapes, generator):
        exp = self.param.exp_param
        self.inner_scale = log_base(exp.base, "exp_param.base") * exp.scale
        base = torch.tensor(math.e if exp.base == -1 else exp.base)
        self.outer_scale = 1.0 if exp.shift == 0 else float(base.pow(exp.shift))  # float32

    def forward(self, x):
        return (torch.exp(x * self.inner_scale) * self.outer_scale,)
