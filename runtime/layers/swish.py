"""Swish (swish_layer.cpp, BVLC master): y = x·σ(βx); gradient βy + σ(βx)·(1 − βy)."""
from __future__ import annotations

import torch

from runtime.layers import Layer, register


@register("Swish")
class Swish(Layer):
    def setup(self, bottom_shapes, generator):
        self.beta = self.param.swish_param.beta

    def forward(self, x):
        return (x * torch.sigmoid(x * self.beta),)
