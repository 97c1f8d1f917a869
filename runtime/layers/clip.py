"""Clip (clip_layer.cpp, BVLC master): std::max(min, std::min(x, max)), so min wins when
min > max, and a NaN x gives min (each std:: call returns its first argument when the
comparison with NaN is false; the CUDA kernel's fminf/fmaxf give max there, and the runtime
follows the CPU's on every device); gradient 1 where min <= x <= max (both ends included),
else 0."""
from __future__ import annotations

import torch

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
        clipped = x.clamp(max=self.max).clamp(min=self.min)
        return (torch.where(x.isnan(), self.min, clipped),)
