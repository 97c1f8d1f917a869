"""PReLU -> ONNX PRelu (the same max(x, 0) + a·min(x, 0)) with the slopes viewed as (C, 1, ...)
or one shared value."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("PReLU")
def prelu(graph, layer, bottoms, tops, shapes):
    slope = layer.blobs[0].detach().cpu().numpy()
    view = (1,) if layer.shared else (-1,) + (1,) * (len(shapes[0]) - 2)
    graph.node("PRelu", [bottoms[0], graph.constant(f"{layer.name}/slope", slope.reshape(view))],
               tops, name=layer.name)
