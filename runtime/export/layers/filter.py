"""Filter -> ONNX Compress of each bottom along axis 0 where the selector is nonzero."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Filter")
def filter_(graph, layer, bottoms, tops, shapes):
    name, selector = layer.name, bottoms[-1]
    flat = graph.node("Reshape", [selector, graph.shape(f"{name}/flat", [-1])],
                      name=f"{name}/flat")
    keep = graph.node("Not", [graph.node("Equal", [flat, graph.constant(f"{name}/zero", 0.0)],
                                         name=f"{name}/zero")], name=f"{name}/keep")
    for x, top in zip(bottoms, tops):
        graph.node("Compress", [x, keep], [top], name=name, axis=0)
