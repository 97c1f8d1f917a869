"""Clip (clip_layer.cpp, BVLC master): max(min, min(x, max)), so min wins when min > max;
gradient 1 where min <= x <= max (both ends included), else 0."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register


@register("Clip")
class Clip(Layer):
    def setup(self, bottom_shapes, generator):
        clip = self.param.clip_param
        if not (clip.HasField("min") and clip.HasField("max")):
            raise AllconvError("clip_param.min and clip_param.max are required")
        self.min, self.max = clip.min, clip.max

    def forward(self, x):
        return (x.clamp(max=self.max).clamp(min=self.min),)
