"""MVN -> rows of (N·C, H·W) or (N, C·H·W) (the batch kept dynamic), minus their ReduceMean,
over √(ReduceMean of squares) + eps, back to Caffe's 4-d top."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("MVN")
def mvn(graph, layer, bottoms, tops, shapes):
    name, mvn_param = layer.name, layer.param.mvn_param
    rows = [0, -1] if mvn_param.across_channels else [0, layer.top_shapes[0][1], -1]
    x = graph.node("Reshape", [bottoms[0], graph.shape(f"{name}/rows", rows)], name=f"{name}/rows")
    mean = graph.reduce("ReduceMean", x, [-1], f"{name}/mean")
    y = graph.node("Sub", [x, mean], name=f"{name}/centre")
    if mvn_param.normalize_variance:
        var = graph.reduce("ReduceMean", graph.node("Mul", [y, y], name=f"{name}/square"), [-1],
                           f"{name}/var")
        std = graph.node("Add", [graph.node("Sqrt", [var], name=f"{name}/sqrt"),
                                 graph.constant(f"{name}/eps", mvn_param.eps)], name=f"{name}/std")
        y = graph.node("Div", [y, std], name=f"{name}/normalize")
    graph.node("Reshape", [y, graph.shape(f"{name}/shape", [0, *layer.top_shapes[0][1:]])], tops,
               name=name)
