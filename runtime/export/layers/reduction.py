"""Reduction -> ReduceSum (of x, |x| or x²) over the axes from Caffe's axis on, times the
coefficient (for MEAN coeff / count, as the runtime computes it)."""
from __future__ import annotations

from runtime.export.registry import converter
from runtime.proto import pb

_R = pb.ReductionParameter


@converter("Reduction")
def reduction(graph, layer, bottoms, tops, shapes):
    name, x = layer.name, bottoms[0]
    op = layer.param.reduction_param.operation
    if op == _R.ASUM:
        x = graph.node("Abs", [x], name=f"{name}/abs")
    elif op == _R.SUMSQ:
        x = graph.node("Mul", [x, x], name=f"{name}/square")
    axes = graph.shape(f"{name}/axes", range(layer.axis, len(shapes[0])))
    total = graph.node("ReduceSum", [x, axes], tops if layer.coeff == 1 else None, name=name,
                       keepdims=0)
    if layer.coeff != 1:
        graph.node("Mul", [total, graph.constant(f"{name}/coeff", layer.coeff)], tops,
                   name=f"{name}/coeff")
