"""AbsVal (absval_layer.cpp): |x|; gradient sign(x), 0 at 0. Not in place, as in Caffe."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register


@register("AbsVal")
class AbsVal(Layer):
    def setup(self, bottom_shapes, generator):
        if self.tops[0] == self.bottoms[0]:
            raise AllconvError("AbsVal does not allow in-place computation (top == bottom)")

    def forward(self, x):
        return (torch.abs(x),)
