"""ELU -> Elu with Caffe's ``alpha`` (the same formula: α·(eˣ − 1) for x < 0, x otherwise)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("ELU")
def elu(graph, layer, bottoms, tops, shapes):
    graph.node("Elu", bottoms, tops, name=layer.name, alpha=layer.alpha)
