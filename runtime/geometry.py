"""Caffe's output-size arithmetic for convolution and pooling windows (one place for both)."""
from __future__ import annotations

import math


def conv_output_size(size: int, kernel: int, pad: int, stride: int, dilation: int = 1) -> int:
    """Convolution: floor((H + 2p - (d(k-1)+1)) / s) + 1 (conv_layer.cpp)."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def pool_output_size(size: int, kernel: int, pad: int, stride: int, round_up: bool = True) -> int:
    """Pooling: ceil((H + 2p - k) / s) + 1, then, when p > 0, drop a last window that would
    start in the padding, (out - 1)·s >= H + p (pooling_layer.cpp). FLOOR mode rounds down."""
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if round_up else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out
