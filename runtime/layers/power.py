"""Power (power_layer.cpp): y = (shift + scale·x)^power.

With scale·power = 0 the output is the constant 1 (power 0) or shift^power, gradient 0.
The gradient is Caffe's: scale (power 1), 2·scale·(shift + scale·x) (power 2), power·y/x
(shift 0), else scale·power·y/(shift + scale·x), so at a base of 0 it is Caffe's 0/0 too.
"""
from __future__ import annotations

import torch

from runtime.layers import Layer, register
from runtime.layers.gradient import with_gradient
from runtime.libm import powf, powx


@register("Power")
class Power(Layer):
    @property
    def backward_ignores_input(self) -> bool:
        return self.power == 1

    def setup(self, bottom_shapes, generator):
        power = self.param.power_param
        self.power, self.scale, self.shift = power.power, power.scale, power.shift
        self.diff_scale = self.power * self.scale
        # the output when scale·power is 0, in float32 as Caffe's pow (inf, NaN included)
        self.constant = 1.0 if self.power == 0 else float(powf(self.shift, self.power))

    def forward(self, x):
        if self.diff_scale == 0:
            return (torch.full_like(x, self.constant),)
        base = x * self.scale + self.shift if self.shift else x * self.scale   # −0 stays −0
        if self.power in (1, 2):
            return (base if self.power == 1 else base * base,)
        y = powx(base, self.power)
        # Caffe's order: y / x · power, or y / base · diff_scale (it overflows where they do)
        slope = (y / x * self.power if self.shift == 0 else y / base * self.diff_scale).detach()
        return (with_gradient(y, slope * x),)
