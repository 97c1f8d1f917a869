"""Concat -> ONNX Concat along Caffe's axis."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Concat")
def concat(graph, layer, bottoms, tops, shapes):
    graph.node("Concat", bottoms, tops, name=layer.name, axis=layer.axis)
