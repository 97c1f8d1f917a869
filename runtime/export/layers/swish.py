"""Swish -> x · Sigmoid(β·x)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Swish")
def swish(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    scaled = x if layer.beta == 1 else graph.node(
        "Mul", [x, graph.constant(f"{name}/beta", layer.beta)], name=f"{name}/beta")
    gate = graph.node("Sigmoid", [scaled], name=f"{name}/sigmoid")
    graph.node("Mul", [x, gate], tops, name=name)
