"""Split -> one Identity per top."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Split")
def split(graph, layer, bottoms, tops, shapes):
    for top in tops:
        graph.node("Identity", bottoms, [top], name=layer.name)
