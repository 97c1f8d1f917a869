"""TanH (tanh_layer.cpp): y = tanh(x), gradient 1 − y²."""
from __future__ import annotations

import torch

from runtime.layers import Layer, register


@register("TanH")
class TanH(Layer):
    def forward(self, x):
        return (torch.tanh(x),)
