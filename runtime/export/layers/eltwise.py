"""Eltwise -> Sum with per-bottom coefficients (SUM; a bottom of coeff 0 left out, as BLAS's
axpy leaves it, and zeros where all are), a chain of Greater and Where (MAX: Caffe's
comparisons, which ONNX's Max does not keep where a value is NaN), a chain of Mul (PROD); a
bottom of another shape (one count) reshaped to bottom 0's first."""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from runtime.export.registry import converter
from runtime.proto import pb


@converter("Eltwise")
def eltwise(graph, layer, bottoms, tops, shapes):
    name = layer.name
    if any(tuple(s) != tuple(shapes[0]) for s in shapes[1:]):    # one count: bottom 0's shape
        like = graph.node("Shape", [bottoms[0]], name=f"{name}/shape")
        bottoms = [b if tuple(s) == tuple(shapes[0]) else
                   graph.node("Reshape", [b, like], name=f"{name}/reshape{i}")
                   for i, (b, s) in enumerate(zip(bottoms, shapes))]
    if layer.op == pb.EltwiseParameter.SUM:
        scaled = [b if c == 1 else graph.node(
            "Mul", [b, graph.constant(f"{name}/coeff{i}", c)], name=f"{name}/coeff{i}")
            for i, (b, c) in enumerate(zip(bottoms, layer.coeff)) if c != 0]
        if scaled:
            graph.node("Sum", scaled, tops, name=name)
        else:
            shape = graph.node("Shape", [bottoms[0]], name=f"{name}/zeros_shape")
            graph.node("ConstantOfShape", [shape], tops, name=name,
                       value=numpy_helper.from_array(np.zeros(1, graph.dtype)))
    elif layer.op == pb.EltwiseParameter.MAX:      # Caffe's comparisons, NaN included
        best = bottoms[0]
        for i, b in enumerate(bottoms[1:], start=1):
            challenger, held = (best, b) if i == 1 else (b, best)   # ties: held
            wins = graph.node("Greater", [challenger, held], name=f"{name}/greater{i}")
            best = graph.node("Where", [wins, challenger, held], tops if i == len(bottoms) - 1
                              else None, name=f"{name}/pick{i}")
    else:
        product = bottoms[0]
        for b in bottoms[1:-1]:
            product = graph.node("Mul", [product, b], name=name)
        graph.node("Mul", [product, bottoms[-1]], tops, name=name)
