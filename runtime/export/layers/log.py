"""Log -> Log(scale·x + shift) · 1/ln(base) (each factor left out when 1)."""
from __future__ import annotations

from runtime.export.layers.scale_shift import affine
from runtime.export.registry import converter


@converter("Log")
def log(graph, layer, bottoms, tops, shapes):
    name = layer.name
    x = affine(graph, name, bottoms[0], layer.scale, layer.shift)
    if layer.base_scale == 1:
        graph.node("Log", [x], tops, name=name)
        return
    y = graph.node("Log", [x], name=name)
    graph.node("Mul", [y, graph.constant(f"{name}/base", layer.base_scale)], tops,
               name=f"{name}/base")
