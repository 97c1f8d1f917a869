"""Exp -> outer · Exp(inner · x), inner = ln(base)·scale, outer = base^shift (each left out
when 1)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Exp")
def exp(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    if layer.inner_scale != 1:
        x = graph.node("Mul", [x, graph.constant(f"{name}/inner", layer.inner_scale)],
                       name=f"{name}/inner")
    if layer.outer_scale == 1:
        graph.node("Exp", [x], tops, name=name)
        return
    y = graph.node("Exp", [x], name=name)
    graph.node("Mul", [y, graph.constant(f"{name}/outer", layer.outer_scale)], tops,
               name=f"{name}/outer")
