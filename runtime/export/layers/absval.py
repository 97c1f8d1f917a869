"""AbsVal -> Abs."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("AbsVal")
def absval(graph, layer, bottoms, tops, shapes):
    graph.node("Abs", bottoms, tops, name=layer.name)
