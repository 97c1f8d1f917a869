"""Tile -> ONNX Tile with ``tiles`` on Caffe's axis (repeating the block after it, as Caffe)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Tile")
def tile(graph, layer, bottoms, tops, shapes):
    repeats = [1] * len(shapes[0])
    repeats[layer.axis] = layer.tiles
    graph.node("Tile", [bottoms[0], graph.shape(f"{layer.name}/repeats", repeats)], tops,
               name=layer.name)
