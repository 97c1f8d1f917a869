"""Bias -> Add of the bias (the learned blob, or bottom 1 reshaped) viewed to broadcast from
Caffe's axis."""
from __future__ import annotations

from runtime.export.layers.scale import operand
from runtime.export.registry import converter


@converter("Bias")
def bias(graph, layer, bottoms, tops, shapes):
    rank = len(shapes[0])
    value, shape = ((layer.blobs[0], tuple(layer.blobs[0].shape)) if len(bottoms) == 1
                    else (bottoms[1], shapes[1]))
    graph.node("Add", [bottoms[0], operand(graph, layer, value, shape, layer.axis, rank, "bias")],
               tops, name=layer.name)
