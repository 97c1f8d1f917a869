"""TanH -> Tanh."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("TanH")
def tanh(graph, layer, bottoms, tops, shapes):
    graph.node("Tanh", bottoms, tops, name=layer.name)
