"""Caffe's output-size arithmetic for convolution, deconvolution and pooling windows (one
place for all), and the receptive field such windows stack up to."""
from __future__ import annotations

import math
from dataclasses import dataclass


def conv_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Convolution: (H + 2p - (d(k-1)+1)) / s + 1 in C++ integers (conv_layer.cpp), so the
    division truncates toward zero: a window that overhangs the padded input by less than a
    stride still gives one output (see ``conv_overhang``)."""
    span = size + 2 * pad - (dilation * (kernel - 1) + 1)
    return (span // stride if span >= 0 else -(-span // stride)) + 1


def conv_overhang(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """How far the last window of ``conv_output_size`` reaches past the padded input: 0 but
    where the truncation above kept a window that overhangs, whose missing values Caffe's
    im2col reads as zeros (as more padding at the end)."""
    out = conv_output_size(size, kernel, pad, stride, dilation)
    return max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size - 2 * pad)


def pool_output_size(size: int, kernel: int, pad: int, stride: int, round_up: bool = True,
                     padded: bool | None = None) -> int:
    """Pooling: ceil((H + 2p - k) / s) + 1, then, when the layer pads (``padded``: a pad on
    any axis, this one's by default), drop a last window that would start in the padding,
    (out - 1)·s >= H + p: pooling_layer.cpp tests pad_h || pad_w for both axes. FLOOR mode
    rounds down."""
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if round_up else span // stride) + 1
    if (pad > 0 if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class Window:
    """Along one axis, the input positions a blob's unit i sees: [start + i·jump, … + size).
    The input blob itself is Window(0, 1, 1)."""

    start: int = 0
    size: int = 1
    jump: int = 1

    def through(self, kernel: int, pad: int, stride: int, dilation: int = 1) -> Window:
        """The window of a conv or pooling layer's top whose bottom has this window."""
        return Window(self.start - pad * self.jump,
                      self.size + dilation * (kernel - 1) * self.jump, self.jump * stride)

    def span(self, index: int, length: int) -> tuple[int, int]:
        """Unit ``index``'s input interval [begin, end), clipped to an input of ``length``."""
        begin = self.start + index * self.jump
        return max(begin, 0), min(begin + self.size, length)


def deconv_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Deconvolution: s(H − 1) + d(k − 1) + 1 − 2p, the size a convolution maps back to H
    (deconv_layer.cpp)."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad
