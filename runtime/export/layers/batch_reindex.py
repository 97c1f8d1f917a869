"""BatchReindex -> ONNX Gather along axis 0 of the indices cast to int64 (truncation, as
Caffe's static_cast)."""
from __future__ import annotations

from onnx import TensorProto

from runtime.export.registry import converter


@converter("BatchReindex")
def batch_reindex(graph, layer, bottoms, tops, shapes):
    index = graph.node("Cast", [bottoms[1]], name=f"{layer.name}/index", to=TensorProto.INT64)
    graph.node("Gather", [bottoms[0], index], tops, name=layer.name, axis=0)
