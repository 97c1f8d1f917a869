"""Silence (silence_layer.cpp): consumes its bottoms, so they are no net output; no tops. Its
bottoms get a zero gradient from it."""
from __future__ import annotations

from runtime.layers import Layer, register


@register("Silence")
class Silence(Layer):
    num_bottoms = (1, None)
    num_tops = (0, 0)

    def reshape(self, bottom_shapes):
        return []

    def forward(self, *bottoms):
        return ()
