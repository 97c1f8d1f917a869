"""Im2col (im2col_layer.cpp): each output position holds the kernel window's values, channel
c and kernel offset k at channel c·K + k (K the kernel's size, offsets in row-major order),
zeros for the padding; spatial sizes as Convolution's. Computed as a grouped convolution with
one-hot kernels (exact: each output is one input value times 1), whose backward is col2im."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.geometry import conv_output_size
from runtime.layers import Layer, canonical_axis, count, register
from runtime.layers.convolution import _CONV, _spatial


def one_hot_kernels(channels: int, kernel, dtype=torch.float32, device=None) -> torch.Tensor:
    """Weights (channels·K, 1, *kernel): filter c·K + k is 1 at offset k, else 0."""
    size = math.prod(kernel)
    eye = torch.eye(size, dtype=dtype, device=device).repeat(channels, 1)
    return eye.reshape(channels * size, 1, *kernel)


@register("Im2col")
class Im2col(Layer):
    def setup(self, bottom_shapes, generator):
        conv = self.param.convolution_param
        shape = bottom_shapes[0]
        self.axis = canonical_axis(conv.axis, len(shape))
        n = len(shape) - self.axis - 1
        if n not in _CONV:
            raise AllconvError(f"bottom shape {shape} has {n} spatial axes; 1 to 3 are supported")
        self.kernel = _spatial(conv, "kernel", n, None)
        self.pad = _spatial(conv, "pad", n, 0)
        self.stride = _spatial(conv, "stride", n, 1)
        self.dilation = _spatial(conv, "dilation", n, 1)
        if min(self.kernel) <= 0 or min(self.stride) <= 0 or min(self.dilation) <= 0:
            raise AllconvError("kernel, stride and dilation must be positive")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) != self.axis + 1 + len(self.kernel):
            raise AllconvError(f"bottom shape {shape} does not have the {len(self.kernel)} "
                               f"spatial axes set up after channel axis {self.axis}")
        spatial = tuple(conv_output_size(*dims) for dims in zip(
            shape[self.axis + 1:], self.kernel, self.pad, self.stride, self.dilation))
        if min(spatial) <= 0:
            raise AllconvError(f"bottom shape {shape} is smaller than the kernel {self.kernel}")
        return [shape[:self.axis] + (shape[self.axis] * math.prod(self.kernel),) + spatial]

    def forward(self, x):
        lead, channels = x.shape[:self.axis], x.shape[self.axis]
        y = x.reshape((count(lead),) + tuple(x.shape[self.axis:]))
        weight = one_hot_kernels(channels, self.kernel, x.dtype, x.device)
        y = _CONV[len(self.kernel)](y, weight, None, self.stride, self.pad, self.dilation,
                                    channels)
        return (y.reshape(tuple(lead) + tuple(y.shape[1:])),)
