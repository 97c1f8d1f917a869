"""Convolution (conv_layer.cpp): N-d grouped, strided, dilated cross-correlation. Its
parameter parsing, shapes and forward serve Deconvolution too, which overrides
``weight_shape``, ``output_size`` and ``convolve``. As in Caffe's BaseConvolutionLayer, N
bottoms of one shape give N tops, top i from bottom i with the same weights."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.blob_shape import check_int_field
from runtime.errors import AllconvError
from runtime.geometry import conv_output_size, conv_overhang
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, count, hw_pair

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _spatial(conv, name: str, n: int, default: int | None) -> tuple[int, ...]:
    """A repeated field (one value for all axes, or one per axis) or its 2-d _h/_w form."""
    field = name if name != "kernel" else "kernel_size"
    values = list(check_int_field(f"convolution_param.{field}", getattr(conv, field)))
    pair = hw_pair(conv, name, both=name == "kernel")  # Caffe: pad_h or stride_h alone is fine
    if pair is not None:
        if values or n != 2:
            raise AllconvError(f"{name}_h/{name}_w need 2-d convolution and no repeated {name}")
        return check_int_field(f"convolution_param.{name}_h/{name}_w", pair)
    if not values:
        if default is None:
            raise AllconvError("kernel_size (or kernel_h and kernel_w) is required")
        return (default,) * n
    if len(values) not in (1, n):
        raise AllconvError(f"{name} needs 1 or {n} values for {n} spatial axes, got {len(values)}")
    return tuple(values) * n if len(values) == 1 else tuple(values)


def convolve(x, weight, bias, kernel, pad, stride, dilation, group):
    """Caffe's convolution of ``x`` (batch, channels, *spatial): a window overhanging the end
    reads zeros (``geometry.conv_overhang``), and a stride past the padded input, where one
    window fits, is shortened to it: the same window, and PyTorch's CPU backward crashes on
    strides of tens of thousands."""
    ends = [conv_overhang(*dims) for dims in zip(x.shape[2:], kernel, pad, stride, dilation)]
    if any(ends):
        x = F.pad(x, [p for end in reversed(ends) for p in (0, end)])
    stride = tuple(min(s, size + 2 * p) for s, size, p in zip(stride, x.shape[2:], pad))
    return _CONV[len(kernel)](x, weight, bias, stride, pad, dilation, group)


def window_geometry(conv, shape) -> tuple:
    """``(axis, kernel, pad, stride, dilation)`` of a ConvolutionParameter for a bottom of
    ``shape`` (Convolution, Deconvolution and Im2col read the same fields)."""
    axis = canonical_axis(conv.axis, len(shape))
    n = len(shape) - axis - 1
    if n not in _CONV:
        raise AllconvError(f"bottom shape {shape} has {n} spatial axes; 1 to 3 are supported")
    kernel = _spatial(conv, "kernel", n, None)
    pad, stride, dilation = (_spatial(conv, name, n, default)
                             for name, default in (("pad", 0), ("stride", 1), ("dilation", 1)))
    if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise AllconvError("kernel, stride and dilation must be positive")
    return axis, kernel, pad, stride, dilation


@register("Convolution")
class Convolution(Layer):
    """Weights (num_output, C/group, *kernel) and bias (num_output,)."""
    backward_ignores_input = True

    num_bottoms = num_tops = (1, None)

    def setup(self, bottom_shapes, generator):
        if len(self.tops) != len(self.bottoms):
            raise AllconvError(f"{len(self.bottoms)} bottom(s) and {len(self.tops)} top(s): "
                               "each bottom gives one top")
        conv = self.param.convolution_param
        shape = bottom_shapes[0]
        self.axis, self.kernel, self.pad, self.stride, self.dilation = window_geometry(conv, shape)
        self.group, channels = conv.group, shape[self.axis]
        if conv.num_output <= 0 or self.group <= 0:
            raise AllconvError("num_output and group must be positive")
        if channels % self.group or conv.num_output % self.group:
            raise AllconvError(f"group {self.group} must divide the input channels ({channels}) "
                               f"and num_output ({conv.num_output})")
        self.channels, self.num_output = channels, conv.num_output
        self.add_weights(self.weight_shape(), conv, generator)

    def weight_shape(self) -> tuple[int, ...]:
        """(num_output, C / group, *kernel)."""
        return (self.num_output, self.channels // self.group) + self.kernel

    @staticmethod
    def output_size(size: int, kernel: int, pad: int, stride: int, dilation: int) -> int:
        return conv_output_size(size, kernel, pad, stride, dilation)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        for i, other in enumerate(bottom_shapes[1:], 1):
            if other != shape:
                raise AllconvError(f"all inputs must have the same shape: bottom {i} is "
                                   f"{other}, bottom 0 {shape}")
        if len(shape) != self.axis + 1 + len(self.kernel) or shape[self.axis] != self.channels:
            raise AllconvError(f"bottom shape {shape} does not fit the weights "
                               f"{tuple(self.blobs[0].shape)} (channel axis {self.axis})")
        spatial = tuple(self.output_size(*dims) for dims in zip(
            shape[self.axis + 1:], self.kernel, self.pad, self.stride, self.dilation))
        if min(spatial) <= 0:
            raise AllconvError(f"bottom shape {shape} gives output size {spatial} (kernel "
                               f"{self.kernel}, pad {self.pad}, stride {self.stride}, dilation "
                               f"{self.dilation}); every size must be positive")
        return [shape[:self.axis] + (self.num_output,) + spatial] * len(self.tops)

    def convolve(self, x, bias):
        """The operation on a batch with the channel axis at 1."""
        return convolve(x, self.blobs[0], bias, self.kernel, self.pad, self.stride,
                        self.dilation, self.group)

    def forward(self, *xs):
        return tuple(self.forward_one(x) for x in xs)

    def forward_one(self, x):
        lead = x.shape[:self.axis]
        y = x.reshape((count(lead),) + tuple(x.shape[self.axis:]))
        y = self.convolve(y, self.blobs[1] if len(self.blobs) > 1 else None)
        return y.reshape(tuple(lead) + tuple(y.shape[1:]))
