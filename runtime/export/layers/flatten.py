"""Flatten -> Reshape: axes before ``axis`` kept (0 copies them, so the batch stays dynamic),
``axis`` .. ``end_axis`` merged (-1), the axes after given."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Flatten")
def flatten(graph, layer, bottoms, tops, shapes):
    dims = [0] * layer.start + [-1] + list(shapes[0][layer.end + 1:])
    graph.node("Reshape", [bottoms[0], graph.shape(f"{layer.name}/shape", dims)], tops,
               name=layer.name)
