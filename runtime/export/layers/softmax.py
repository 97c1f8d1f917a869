"""Softmax -> ONNX Softmax along Caffe's axis (opset 13+ normalises one axis, as Caffe)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Softmax")
def softmax(graph, layer, bottoms, tops, shapes):
    graph.node("Softmax", bottoms, tops, name=layer.name, axis=layer.axis)
