"""Im2col -> a grouped Conv (one group per channel) with the runtime's one-hot kernels: each
output is one input value (or the zero padding) times 1, as Caffe copies it."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.layers.convolution import conv_pads
from runtime.export.registry import converter
from runtime.layers.im2col import one_hot_kernels


@converter("Im2col")
def im2col(graph, layer, bottoms, tops, shapes):
    if layer.axis != 1:
        raise AllconvError(f"layer {layer.name!r}: only channel axis 1 exports (axis {layer.axis})")
    channels = shapes[0][1]
    kernels = one_hot_kernels(channels, layer.kernel).numpy()
    graph.node("Conv", [bottoms[0], graph.constant(f"{layer.name}/one_hot", kernels)], tops,
               name=layer.name, kernel_shape=list(layer.kernel), pads=conv_pads(layer, shapes[0]),
               strides=list(layer.stride), dilations=list(layer.dilation), group=channels)
