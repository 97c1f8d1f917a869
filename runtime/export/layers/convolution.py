"""Convolution -> ONNX Conv (group, dilation, symmetric pads; floor rounding as Caffe)."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.registry import converter


@converter("Convolution")
def convolution(graph, layer, bottoms, tops, shapes):
    window_node(graph, "Conv", layer, bottoms, tops)


def window_node(graph, op: str, layer, bottoms, tops) -> None:
    """``op`` (Conv, ConvTranspose) with the layer's weights, bias and window attributes."""
    if layer.axis != 1:
        raise AllconvError(f"layer {layer.name!r}: only channel axis 1 exports (axis {layer.axis})")
    inputs = [bottoms[0], graph.weight(f"{layer.name}/weight", layer.blobs[0])]
    if len(layer.blobs) > 1:
        inputs.append(graph.weight(f"{layer.name}/bias", layer.blobs[1]))
    graph.node(op, inputs, tops, name=layer.name, kernel_shape=list(layer.kernel),
               pads=list(layer.pad) * 2, strides=list(layer.stride),
               dilations=list(layer.dilation), group=layer.group)
