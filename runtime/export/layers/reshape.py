"""Reshape -> ONNX Reshape to the runtime's top shape with the batch as −1, which is exact
whenever the top keeps the bottom's first axis and the other axes' count."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.registry import converter
from runtime.layers import count


@converter("Reshape")
def reshape(graph, layer, bottoms, tops, shapes):
    bottom, top = shapes[0], layer.top_shapes[0]
    if not top or top[0] != bottom[0] or count(top, 1) != count(bottom, 1):
        raise AllconvError(f"layer {layer.name!r}: a Reshape that changes the batch axis "
                           f"({tuple(bottom)} -> {tuple(top)}) does not export (the batch is "
                           "dynamic)")
    graph.node("Reshape", [bottoms[0], graph.shape(f"{layer.name}/shape", [-1, *top[1:]])], tops,
               name=layer.name)
