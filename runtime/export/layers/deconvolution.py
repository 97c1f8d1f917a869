"""Deconvolution -> ONNX ConvTranspose: the same weight layout (C, num_output / group, *kernel),
symmetric pads and output size s(H − 1) + d(k − 1) + 1 − 2p."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.registry import converter


@converter("Deconvolution")
def deconvolution(graph, layer, bottoms, tops, shapes):
    if layer.axis != 1:
        raise AllconvError(f"layer {layer.name!r}: only channel axis 1 exports (axis {layer.axis})")
    inputs = [bottoms[0], graph.weight(f"{layer.name}/weight", layer.blobs[0])]
    if len(layer.blobs) > 1:
        inputs.append(graph.weight(f"{layer.name}/bias", layer.blobs[1]))
    graph.node("ConvTranspose", inputs, tops, name=layer.name, kernel_shape=list(layer.kernel),
               pads=list(layer.pad) * 2, strides=list(layer.stride),
               dilations=list(layer.dilation), group=layer.group)
