"""Im2col (im2col_layer.cpp): each output position holds the kernel window's values, channel
c and kernel offset k at channel c·K + k (K the kernel's size, offsets in row-major order),
zeros for the padding (and for a window's overhang past the end); spatial sizes as
Convolution's. Computed as a grouped convolution with
one-hot kernels (exact: each output is one input value times 1), whose backward is col2im."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.geometry import conv_output_size
from runtime.layers import Layer, register
from runtime.layers.shapes import count
from runtime.layers.convolution import convolve, window_geometry


def one_hot_kernels(channels: int, kernel, dtype=torch.float32, device=None) -> torch.Tensor:
    """Weights (channels·K, 1, *kernel): filter c·K + k is 1 at offset k, else 0."""
    size = math.prod(kernel)
    eye = torch.eye(size, dtype=dtype, device=device).repeat(channels, 1)
    return eye.reshape(channels * size, 1, *kernel)


@register("Im2col")
class Im2col(Layer):
    diffs_whenever_run = (0,)     # Caffe's Backward ignores propagate_down

    def setup(self, bottom_shapes, generator):
        self.axis, self.kernel, self.pad, self.stride, self.dilation = window_geometry(
            self.param.convolution_param, bottom_shapes[0])

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
        y = convolve(y, weight, None, self.kernel, self.pad, self.stride, self.dilation, channels)
        return (y.reshape(tuple(lead) + tuple(y.shape[1:])),)
