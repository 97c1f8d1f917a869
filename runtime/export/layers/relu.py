"""ReLU -> Relu, or LeakyRelu with Caffe's ``negative_slope``."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("ReLU")
def relu(graph, layer, bottoms, tops, shapes):
    if layer.slope:
        graph.node("LeakyRelu", bottoms, tops, name=layer.name, alpha=layer.slope)
    else:
        graph.node("Relu", bottoms, tops, name=layer.name)
