"""Flatten (flatten_layer.cpp): merge axes ``axis`` .. ``end_axis`` into one."""
from __future__ import annotations

from runtime.layers import Layer, canonical_axis, count, register


@register("Flatten")
class Flatten(Layer):
    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        flatten = self.param.flatten_param
        self.start = canonical_axis(flatten.axis, len(shape))
        self.end = canonical_axis(flatten.end_axis, len(shape))
        return [shape[:self.start] + (count(shape, self.start, self.end + 1),)
                + shape[self.end + 1:]]

    def forward(self, x):
        return (x.flatten(self.start, self.end),)
