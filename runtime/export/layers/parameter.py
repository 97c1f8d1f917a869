"""Parameter -> its blob as an initializer (Identity gives it the top's name)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Parameter")
def parameter(graph, layer, bottoms, tops, shapes):
    graph.node("Identity", [graph.weight(f"{layer.name}/blob", layer.blobs[0])], tops,
               name=layer.name)
