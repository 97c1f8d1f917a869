"""Convolution -> ONNX Conv (group, dilation, Caffe's pads at both ends, and at the end also
the zeros a last window overhanging the input reads), on any channel axis."""
from __future__ import annotations

from runtime.export.registry import batch_axis_fixes_the_batch, converter
from runtime.geometry import conv_overhang


@converter("Convolution")
def convolution(graph, layer, bottoms, tops, shapes):
    window_node(graph, "Conv", layer, bottoms, tops, shapes, conv_pads(layer, shapes[0]))


def conv_pads(layer, shape) -> list[int]:
    """ONNX's pads (begins, then ends) of a Convolution or Im2col on a bottom of ``shape``."""
    ends = [p + conv_overhang(*dims) for p, dims in zip(layer.pad, zip(
        shape[layer.axis + 1:], layer.kernel, layer.pad, layer.stride, layer.dilation))]
    return list(layer.pad) + ends


def window_node(graph, op: str, layer, bottoms, tops, shapes, pads=None) -> None:
    """``op`` (Conv, ConvTranspose) with the layer's weights, bias and window attributes
    (``pads`` default: the layer's at both ends): one node per bottom, sharing the weights.
    A channel axis after 1 folds the axes before it into ONNX's N and unfolds them after;
    axis 0 (the batch as channels) exports only with the prototxt's batch."""
    batch_axis_fixes_the_batch(graph, layer.axis, f"layer {layer.name!r} takes the batch axis "
                                                  "as its channels (convolution_param.axis 0)")
    weights = [graph.weight(f"{layer.name}/weight", layer.blobs[0])]
    if len(layer.blobs) > 1:
        weights.append(graph.weight(f"{layer.name}/bias", layer.blobs[1]))
    attrs = dict(kernel_shape=list(layer.kernel), pads=pads or list(layer.pad) * 2,
                 strides=list(layer.stride), dilations=list(layer.dilation), group=layer.group)
    for bottom, top, shape in zip(bottoms, tops, shapes):
        if layer.axis == 1:
            graph.node(op, [bottom] + weights, [top], name=layer.name, **attrs)
            continue
        name, axis = layer.name, layer.axis
        folded = graph.node("Reshape", [bottom, graph.shape(f"{name}/fold", [-1, *shape[axis:]])],
                            name=f"{name}/fold")
        lead = graph.node("Slice", [graph.node("Shape", [bottom], name=f"{name}/shape"),
                                    graph.shape(f"{name}/lead_start", [0]),
                                    graph.shape(f"{name}/lead_end", [axis])], name=f"{name}/lead")
        unfolded = graph.node("Concat", [lead, graph.shape(f"{name}/tail",
                                                           layer.top_shapes[0][axis:])],
                              name=f"{name}/top_shape", axis=0)
        graph.node("Reshape", [graph.node(op, [folded] + weights, name=name, **attrs), unfolded],
                   [top], name=f"{name}/unfold")
