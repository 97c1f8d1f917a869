"""Exp -> outer · Exp(inner · x), inner = ln(base)·scale, outer = base^shift (each left out
when 1)."""
from __future__ import annotations

from runtime.export.layers.scale_shift import affine, op_times
from runtime.export.registry import converter


@converter("Exp")
def exp(graph, layer, bottoms, tops, shapes):
    x = affine(graph, layer.name, bottoms[0], layer.inner_scale, 0)
    op_times(graph, layer.name, "Exp", x, tops, layer.outer_scale)
