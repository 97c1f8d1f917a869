"""Im2col -> a grouped Conv (one group per channel) with one-hot kernels: each output is one
input value (or the zero padding) times 1, as Caffe copies it, and the others times 0 (so an
infinite or NaN input makes NaN of the columns beside it, where Caffe copies)."""
from __future__ import annotations

import math

import numpy as np

from runtime.errors import AllconvError
from runtime.export.layers.convolution import conv_pads
from runtime.export.registry import converter


def one_hot_kernels(channels: int, kernel) -> np.ndarray:
    """Weights (channels·K, 1, *kernel): filter c·K + k is 1 at offset k, else 0."""
    size = math.prod(kernel)
    return np.tile(np.eye(size, dtype=np.float32), (channels, 1)).reshape(
        channels * size, 1, *kernel)


@converter("Im2col")
def im2col(graph, layer, bottoms, tops, shapes):
    if layer.axis != 1:
        raise AllconvError(f"layer {layer.name!r} (Im2col): only channel axis 1 exports, not "
                           f"axis {layer.axis} (ONNX's Conv takes its channels on axis 1)")
    channels = shapes[0][1]
    kernels = one_hot_kernels(channels, layer.kernel)
    graph.node("Conv", [bottoms[0], graph.constant(f"{layer.name}/one_hot", kernels)], tops,
               name=layer.name, kernel_shape=list(layer.kernel), pads=conv_pads(layer, shapes[0]),
               strides=list(layer.stride), dilations=list(layer.dilation), group=channels)
