"""Power -> (shift + scale·x)^power as Mul, Add and Pow (Mul for a square); a constant
(Expand to x's shape) when scale·power is 0, as Caffe's forward."""
from __future__ import annotations

from runtime.export.layers.scale_shift import affine
from runtime.export.registry import converter


@converter("Power")
def power(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    if layer.diff_scale == 0:
        shape = graph.node("Shape", [x], name=f"{name}/shape")
        graph.node("Expand", [graph.constant(f"{name}/value", layer.constant), shape], tops,
                   name=name)
        return
    base = affine(graph, name, x, layer.scale, layer.shift)
    if layer.power == 1:
        graph.node("Identity", [base], tops, name=name)
    elif layer.power == 2:
        graph.node("Mul", [base, base], tops, name=name)
    else:
        graph.node("Pow", [base, graph.constant(f"{name}/power", layer.power)], tops, name=name)
