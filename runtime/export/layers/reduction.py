"""Reduction -> ReduceSum (of x, |x| or x²) or ReduceMean over the axes from Caffe's axis on,
times ``coeff``. MEAN divides in the graph, so a mean over the batch axis keeps the batch
dynamic (the runtime's coeff / count holds the prototxt's batch)."""
from __future__ import annotations

from runtime.export.registry import converter
from runtime.proto import pb

_R = pb.ReductionParameter


@converter("Reduction")
def reduction(graph, layer, bottoms, tops, shapes):
    name, x = layer.name, bottoms[0]
    op, coeff = layer.param.reduction_param.operation, layer.param.reduction_param.coeff
    if op == _R.ASUM:
        x = graph.node("Abs", [x], name=f"{name}/abs")
    elif op == _R.SUMSQ:
        x = graph.node("Mul", [x, x], name=f"{name}/square")
    total = graph.reduce("ReduceMean" if op == _R.MEAN else "ReduceSum", x,
                         range(layer.axis, len(shapes[0])), name, keepdims=False,
                         outputs=tops if coeff == 1 else None)
    if coeff != 1:
        graph.node("Mul", [total, graph.constant(f"{name}/coeff", coeff)], tops,
                   name=f"{name}/coeff")
