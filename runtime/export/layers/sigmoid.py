"""Sigmoid -> Sigmoid."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Sigmoid")
def sigmoid(graph, layer, bottoms, tops, shapes):
    graph.node("Sigmoid", bottoms, tops, name=layer.name)
