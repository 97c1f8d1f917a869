"""Convolution -> ONNX Conv (group, dilation, Caffe's pads at both ends, and at the end also
the zeros a last window overhanging the input reads)."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.registry import converter
from runtime.geometry import conv_overhang


@converter("Convolution")
def convolution(graph, layer, bottoms, tops, shapes):
    window_node(graph, "Conv", layer, bottoms, tops, conv_pads(layer, shapes[0]))


def conv_pads(layer, shape) -> list[int]:
    """ONNX's pads (begins, then ends) of a Convolution or Im2col on a bottom of ``shape``."""
    ends = [p + conv_overhang(*dims) for p, dims in zip(layer.pad, zip(
        shape[2:], layer.kernel, layer.pad, layer.stride, layer.dilation))]
    return list(layer.pad) + ends


def window_node(graph, op: str, layer, bottoms, tops, pads=None) -> None:
    """``op`` (Conv, ConvTranspose) with the layer's weights, bias and window attributes
    (``pads`` default: the layer's at both ends): one node per bottom, sharing the weights."""
    if layer.axis != 1:
        raise AllconvError(f"layer {layer.name!r}: only channel axis 1 exports (axis {layer.axis})")
    weights = [graph.weight(f"{layer.name}/weight", layer.blobs[0])]
    if len(layer.blobs) > 1:
        weights.append(graph.weight(f"{layer.name}/bias", layer.blobs[1]))
    for bottom, top in zip(bottoms, tops):
        graph.node(op, [bottom] + weights, [top], name=layer.name,
                   kernel_shape=list(layer.kernel), pads=pads or list(layer.pad) * 2,
                   strides=list(layer.stride), dilations=list(layer.dilation),
                   group=layer.group)
