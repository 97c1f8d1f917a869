"""ReLU (relu_layer.cpp): max(x, 0) + negative_slope·min(x, 0); gradient at 0 is the slope."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.layers import Layer, register


@register("ReLU")
class ReLU(Layer):
    def setup(self, bottom_shapes, generator):
        self.slope = self.param.relu_param.negative_slope

    def forward(self, x):
        return (F.leaky_relu(x, self.slope) if self.slope else F.relu(x),)
