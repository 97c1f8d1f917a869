"""SPP -> each pyramid level through the Pooling converter (the runtime's Pooling layers of the
level), flattened to (N, −1) and concatenated; one level is its Pooling alone."""
from __future__ import annotations

from runtime.export.layers.pooling import pooling
from runtime.export.registry import converter


@converter("SPP")
def spp(graph, layer, bottoms, tops, shapes):
    if len(layer.levels) == 1:
        pooling(graph, layer.levels[0], bottoms, tops, shapes)
        return
    flat = []
    for level in layer.levels:
        pooled = graph.fresh(f"{level.name}/out")
        pooling(graph, level, bottoms, [pooled], shapes)
        flat.append(graph.node("Flatten", [pooled], name=f"{level.name}/flatten", axis=1))
    graph.node("Concat", flat, tops, name=layer.name, axis=1)
