"""Swish -> x · σ(β·x), σ as the Sigmoid converter writes it."""
from __future__ import annotations

from runtime.export.layers.sigmoid import logistic
from runtime.export.registry import converter


@converter("Swish")
def swish(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    scaled = x if layer.beta == 1 else graph.node(
        "Mul", [x, graph.constant(f"{name}/beta", layer.beta)], name=f"{name}/beta")
    gate = logistic(graph, scaled, f"{name}/sigmoid")
    graph.node("Mul", [x, gate], tops, name=name)
