"""Im2col (im2col_layer.cpp): each output position holds the kernel window's values, channel
c and kernel offset k at channel c·K + k (K the kernel's size, offsets in row-major order),
zeros for the padding (and for a window's overhang past the end); spatial sizes as
Convolution's. Two spatial axes: torch's unfold, a copy as Caffe's, whose backward is col2im;
other counts: a grouped convolution with one-hot kernels (each output is one input value times
1, and the others times 0, so an infinite or NaN input makes NaN of the columns beside it)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
        spatial = self._spatial(shape[self.axis + 1:])
        if min(spatial) <= 0:
            raise AllconvError(f"bottom shape {shape} is smaller than the kernel {self.kernel}")
        return [shape[:self.axis] + (shape[self.axis] * math.prod(self.kernel),) + spatial]

    def _spatial(self, sizes) -> tuple[int, ...]:
        """The top's spatial sizes for the bottom's ``sizes``, Convolution's."""
        return tuple(conv_output_size(*dims) for dims in zip(
            sizes, self.kernel, self.pad, self.stride, self.dilation))

    def forward(self, x):
        lead, channels = x.shape[:self.axis], x.shape[self.axis]
        y = x.reshape((count(lead),) + tuple(x.shape[self.axis:]))
        spatial = self._spatial(y.shape[2:])
        if len(self.kernel) == 2:       # zeros past the end for a window's overhang
            overhang = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, s, d, k, n, p
                        in zip(spatial, self.stride, self.dilation, self.kernel, y.shape[2:],
                               self.pad)]
            y = F.unfold(F.pad(y, (0, overhang[1], 0, overhang[0])), self.kernel, self.dilation,
                         self.pad, self.stride).reshape((len(y), -1) + spatial)
        else:
            weight = one_hot_kernels(channels, self.kernel, x.dtype, x.device)
            y = convolve(y, weight, None, self.kernel, self.pad, self.stride, self.dilation,
                         channels)
        return (y.reshape(tuple(lead) + tuple(y.shape[1:])),)
