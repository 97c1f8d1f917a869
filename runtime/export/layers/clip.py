"""Clip -> Max(Min(x, max), min), Caffe's order, so that min wins when min > max (ONNX's Clip
would give max there); a NaN x gives min, as Caffe's std::max(min, std::min(x, max))."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Clip")
def clip(graph, layer, bottoms, tops, shapes):
    name = layer.name
    upper = graph.node("Min", [bottoms[0], graph.constant(f"{name}/max", layer.max)],
                       name=f"{name}/max")
    low = graph.constant(f"{name}/min", layer.min)
    clipped = graph.node("Max", [upper, low], name=f"{name}/min")
    graph.node("Where", [graph.node("IsNaN", bottoms, name=f"{name}/nan"), low, clipped], tops,
               name=name)
