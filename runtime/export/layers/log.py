"""Log -> Log(scale·x + shift) · 1/ln(base) (each factor left out when 1)."""
from __future__ import annotations

from runtime.export.layers.scale_shift import affine, op_times
from runtime.export.registry import converter


@converter("Log")
def log(graph, layer, bottoms, tops, shapes):
    x = affine(graph, layer.name, bottoms[0], layer.scale, layer.shift)
    op_times(graph, layer.name, "Log", x, tops, layer.base_scale)
