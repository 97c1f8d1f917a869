"""Softmax (softmax_layer.cpp) along ``softmax_param.axis``."""
from __future__ import annotations

from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


@register("Softmax")
class Softmax(Layer):
    diffs_whenever_run = (0,)     # Caffe's Backward ignores propagate_down

    def reshape(self, bottom_shapes):
        self.axis = canonical_axis(self.param.softmax_param.axis, len(bottom_shapes[0]))
        return [bottom_shapes[0]]

    def forward(self, x):
        return (x.softmax(self.axis),)
