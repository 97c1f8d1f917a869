"""MVN -> rows of (N·C, H·W) or (N, C·H·W), Caffe's num and channels copied from the input
(a recurrent T × N × … blob's N is its channels), minus their ReduceMean, over
√(ReduceMean of squares) + eps, back to the bottom's shape padded with 1s to Caffe's 4-d
(num, channels, height, width) top. In float16 an eps below its smallest value (Caffe's
default 1e-9) is raised to that value, 2^−24.
"""
from __future__ import annotations

import numpy as np

from runtime.export.registry import converter

FP16_SMALLEST = 2.0 ** -24


@converter("MVN")
def mvn(graph, layer, bottoms, tops, shapes):
    name, mvn_param = layer.name, layer.param.mvn_param
    channels = 0 if len(shapes[0]) > 1 else 1     # a 1-axis bottom: Caffe's 1 channel
    rows = [0, -1] if mvn_param.across_channels else [0, channels, -1]
    x = graph.node("Reshape", [bottoms[0], graph.shape(f"{name}/rows", rows)], name=f"{name}/rows")
    mean = graph.reduce("ReduceMean", x, [-1], f"{name}/mean")
    y = graph.node("Sub", [x, mean], name=f"{name}/centre")
    if mvn_param.normalize_variance:
        var = graph.reduce("ReduceMean", graph.node("Mul", [y, y], name=f"{name}/square"), [-1],
                           f"{name}/var")
        eps = mvn_param.eps
        if graph.dtype == np.float16 and 0 < eps < FP16_SMALLEST:
            eps = FP16_SMALLEST     # not 0, which would make a constant row 0/0
        std = graph.node("Add", [graph.node("Sqrt", [var], name=f"{name}/sqrt"),
                                 graph.constant(f"{name}/eps", eps)], name=f"{name}/std")
        y = graph.node("Div", [y, std], name=f"{name}/normalize")
    shape = graph.node("Shape", bottoms, name=f"{name}/bottom_shape")
    padding = 4 - len(shapes[0])
    if padding:
        shape = graph.node("Concat", [shape, graph.shape(f"{name}/ones", [1] * padding)],
                           name=f"{name}/shape", axis=0)
    graph.node("Reshape", [y, shape], tops, name=name)
