"""Im2col (im2col_layer.cpp): each output position holds the kernel window's values, channel
c and kernel offset k at channel c·K + k (K the kernel's size, offsets in row-major order),
zeros for the padding (and for a window's overhang past the end); spatial sizes as
Convolution's. A copy, as Caffe's (an infinite or NaN value stays where it is), whose backward
sums each window's diffs back (col2im): torch's unfold for one or two spatial axes, strided
windows of the padded input for three (which torch.compile's dynamic shapes do not take)."""
from __future__ import annotations

import math

import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.geometry import conv_output_size, conv_overhang
from runtime.layers import Layer, register
from runtime.layers.shapes import count
from runtime.layers.convolution import window_geometry


@register("Im2col")
class Im2col(Layer):
    backward_ignores_input = True
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
        lead, n = x.shape[:self.axis], len(self.kernel)
        y = x.reshape((count(lead),) + tuple(x.shape[self.axis:]))
        geometry = list(zip(y.shape[2:], self.kernel, self.pad, self.stride, self.dilation))
        shape = tuple(lead) + (y.shape[1] * math.prod(self.kernel),) + tuple(
            conv_output_size(*dims) for dims in geometry)
        if not y.numel():   # no channels, or a Filter that kept no item: nothing to copy
            return (y.reshape(shape),)
        ends = [conv_overhang(*dims) for dims in geometry]
        if any(ends):       # only a window larger than the padded input overhangs
            y = F.pad(y, [p for end in reversed(ends) for p in (0, end)])
        if n < 3:           # torch's unfold (one axis as a second of size 1): torch.compile's
            one = 2 - n     # dynamic shapes take it
            y = F.unfold(y.reshape(y.shape[:2] + (1,) * one + y.shape[2:]),
                         *((v,) * one + tuple(values) for v, values in (
                             (1, self.kernel), (1, self.dilation), (0, self.pad),
                             (1, self.stride))))
        else:               # strided windows of the padded input: (N, C, *out, *kernel)
            y = F.pad(y, [p for pad in reversed(self.pad) for p in (pad, pad)])
            for i, (_, k, _, s, d) in enumerate(geometry):
                y = y.unfold(2 + i, d * (k - 1) + 1, s)[..., ::d]
            y = y.permute(0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n))
        return (y.reshape(shape),)
