"""Threshold -> Greater than the threshold, cast to the net's float type (1 or 0)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Threshold")
def threshold(graph, layer, bottoms, tops, shapes):
    above = graph.node("Greater", [bottoms[0], graph.constant(f"{layer.name}/threshold",
                                                              layer.threshold)],
                       name=f"{layer.name}/greater")
    graph.node("Cast", [above], tops, name=layer.name, to=graph.elem_type)
