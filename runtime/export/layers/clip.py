"""Clip -> Max(Min(x, max), min), Caffe's order, so that min wins when min > max (ONNX's Clip
would give max there)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Clip")
def clip(graph, layer, bottoms, tops, shapes):
    name = layer.name
    upper = graph.node("Min", [bottoms[0], graph.constant(f"{name}/max", layer.max)],
                       name=f"{name}/max")
    graph.node("Max", [upper, graph.constant(f"{name}/min", layer.min)], tops, name=name)
