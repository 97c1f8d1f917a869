"""Embed -> Cast the indices to int64 (truncating, as Caffe's static_cast), Gather the weight
rows, Add the bias."""
from __future__ import annotations

from onnx import TensorProto

from runtime.export.registry import converter


@converter("Embed")
def embed(graph, layer, bottoms, tops, shapes):
    name = layer.name
    index = graph.node("Cast", bottoms, name=f"{name}/index", to=TensorProto.INT64)
    weight = graph.weight(f"{name}/weight", layer.blobs[0])
    if len(layer.blobs) == 1:
        graph.node("Gather", [weight, index], tops, name=name, axis=0)
        return
    rows = graph.node("Gather", [weight, index], name=name, axis=0)
    graph.node("Add", [rows, graph.weight(f"{name}/bias", layer.blobs[1])], tops,
               name=f"{name}/bias")
