"""Dropout -> Identity: the exported net is a TEST-phase net, where Caffe passes through."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("Dropout")
def dropout(graph, layer, bottoms, tops, shapes):
    graph.node("Identity", bottoms, tops, name=layer.name)
