"""Reshape -> ONNX Reshape by Caffe's own formula, so the top is Caffe's at every batch: ONNX's
0 copies the input's dim at the same index, as Caffe's 0 does within the replaced axes, both
infer one −1, and the axes outside them are copied: by index (0) when the replaced axes keep
their number, else the trailing ones from the input's shape (Shape with ``start``)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Reshape")
def reshape(graph, layer, bottoms, tops, shapes):
    rank = len(shapes[0])
    start, end = layer.span(shapes[0])
    head = [0] * start + list(layer.dims)
    if len(layer.dims) == end - start or end == rank:
        target = graph.shape(f"{layer.name}/shape", head + [0] * (rank - end))
    else:
        tail = graph.node("Shape", [bottoms[0]], name=f"{layer.name}/tail", start=end)
        target = graph.node("Concat", [graph.shape(f"{layer.name}/head", head), tail],
                            name=f"{layer.name}/shape", axis=0)
    graph.node("Reshape", [bottoms[0], target], tops, name=layer.name)
