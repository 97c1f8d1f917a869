"""Exp (exp_layer.cpp): y = base^(shift + scale·x) = b^shift · e^(ln b · scale · x), base e when
``base`` is −1 (the default); gradient y · ln b · scale. The constants ln b · scale and b^shift
are Caffe's float32 values: the C library's logf, powf, expf and a float multiply."""
from __future__ import annotations

import math

import numpy as np
import torch

from runtime import libm
from runtime.errors import AllconvError
from runtime.layers import Layer, register


def log_base(base: float, field: str) -> np.float32:
    """ln(base) of an Exp/Log ``base`` field in float32 as Caffe computes it: 1 for −1 (base
    e); other bases must be > 0 and finite."""
    if base == -1:
        return np.float32(1)
    if not base > 0:
        raise AllconvError(f"{field} must be positive (or -1 for e), got {base:g}")
    ln_base = libm.logf(base)
    if not math.isfinite(ln_base):
        raise AllconvError(f"{field} {base:g} has no finite logarithm")
    return ln_base


@register("Exp")
class Exp(Layer):
    def setup(self, bottom_shapes, generator):
        exp = self.param.exp_param
        self.inner_scale = float(log_base(exp.base, "exp_param.base") * np.float32(exp.scale))
        self.outer_scale = float(1 if exp.shift == 0 else
                                 libm.expf(exp.shift) if exp.base == -1 else
                                 libm.powf(exp.base, exp.shift))

    def forward(self, x):
        return (torch.exp(x * self.inner_scale) * self.outer_scale,)
