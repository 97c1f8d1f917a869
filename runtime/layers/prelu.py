"""PReLU (prelu_layer.cpp): max(x, 0) + a·min(x, 0) with a learned slope a per channel
(axis 1), or one for all with ``channel_shared``; filler default constant 0.25. The gradient
at x = 0 is a (x ≤ 0 counts as negative), and a's gradient sums dy·x over x ≤ 0."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.proto import pb


@register("PReLU")
class PReLU(Layer):
    def setup(self, bottom_shapes, generator):
        prelu = self.param.prelu_param
        self._check(bottom_shapes[0])
        self.shared = prelu.channel_shared
        filler = prelu.filler if prelu.HasField("filler") else pb.FillerParameter(
            type="constant", value=0.25)
        self.add_blob(() if self.shared else (bottom_shapes[0][1],), filler, generator)

    @staticmethod
    def _check(shape):
        if not 2 <= len(shape) <= 4:
            raise AllconvError(f"bottom shape {shape} needs 2 to 4 axes (Caffe's PReLU reads "
                               "the channels with its legacy 4-d accessors)")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        self._check(shape)
        if not self.shared and shape[1] != self.blobs[0].shape[0]:
            raise AllconvError(f"bottom shape {shape} has {shape[1]} channels; the slopes "
                               f"have {self.blobs[0].shape[0]}")
        return [shape]

    def forward(self, x):
        slope = self.blobs[0]
        if not self.shared:
            slope = slope.reshape((-1,) + (1,) * (x.dim() - 2))
        return (torch.where(x > 0, x, slope * x),)
