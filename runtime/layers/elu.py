"""ELU (elu_layer.cpp): max(x, 0) + α·(e^min(x, 0) − 1); gradient 1 for x > 0, else y + α
(α at 0, as torch's ELU)."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.layers import Layer, register


@register("ELU")
class ELU(Layer):
    def setup(self, bottom_shapes, generator):
        self.alpha = self.param.elu_param.alpha

    def forward(self, x):
        return (F.elu(x, self.alpha),)
