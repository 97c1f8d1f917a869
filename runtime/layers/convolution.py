"""Convolution (conv_layer.cpp): N-d grouped, strided, dilated cross-correlation."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.blob_shape import check_int_field
from runtime.errors import AllconvError
from runtime.geometry import conv_output_size
from runtime.layers import Layer, canonical_axis, count, hw_pair, register

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


@register("Convolution")
class Convolution(Layer):
    """Weights (num_output, C/group, *kernel) and bias (num_output,)."""

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
        self.group, channels = conv.group, shape[self.axis]
        if conv.num_output <= 0 or self.group <= 0:
            raise AllconvError("num_output and group must be positive")
        if channels % self.group or conv.num_output % self.group:
            raise AllconvError(f"group {self.group} must divide the input channels ({channels}) "
                               f"and num_output ({conv.num_output})")
        self.add_weights((conv.num_output, channels // self.group) + self.kernel, conv, generator)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        want = self.blobs[0].shape[1] * self.group
        if len(shape) != self.axis + 1 + len(self.kernel) or shape[self.axis] != want:
            raise AllconvError(f"bottom shape {shape} does not fit the weights "
                               f"{tuple(self.blobs[0].shape)} (channel axis {self.axis})")
        spatial = tuple(conv_output_size(*dims) for dims in zip(
            shape[self.axis + 1:], self.kernel, self.pad, self.stride, self.dilation))
        if min(spatial) <= 0:
            raise AllconvError(f"bottom shape {shape} is smaller than the kernel {self.kernel}")
        return [shape[:self.axis] + (self.blobs[0].shape[0],) + spatial]

    def forward(self, x):
        lead = x.shape[:self.axis]
        y = x.reshape((count(lead),) + tuple(x.shape[self.axis:]))
        bias = self.blobs[1] if len(self.blobs) > 1 else None
        y = _CONV[len(self.kernel)](y, self.blobs[0], bias, self.stride, self.pad,
                                    self.dilation, self.group)
        return (y.reshape(tuple(lead) + tuple(y.shape[1:])),)
