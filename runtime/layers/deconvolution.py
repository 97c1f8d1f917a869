"""Deconvolution (deconv_layer.cpp): the transpose of Convolution, with its parameters.
Weights (C, num_output / group, *kernel), bias (num_output,); output size
s(H − 1) + d(k − 1) + 1 − 2p per spatial axis."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.geometry import deconv_output_size
from runtime.layers import register
from runtime.layers.convolution import Convolution

_DECONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@register("Deconvolution")
class Deconvolution(Convolution):
    def weight_shape(self) -> tuple[int, ...]:
        """(C, num_output / group, *kernel)."""
        return (self.channels, self.num_output // self.group) + self.kernel

    @staticmethod
    def output_size(size: int, kernel: int, pad: int, stride: int, dilation: int) -> int:
        return deconv_output_size(size, kernel, pad, stride, dilation)

    def convolve(self, x, bias):
        return _DECONV[len(self.kernel)](x, self.blobs[0], bias, self.stride, self.pad, 0,
                                         self.group, self.dilation)
