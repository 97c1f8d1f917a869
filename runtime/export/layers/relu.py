"""ReLU -> LeakyRelu with Caffe's ``negative_slope``, 0 included: Caffe's max(x, 0) + s·min(x, 0)
is NaN at −inf (0·−inf) with s = 0 too, which LeakyRelu keeps and Relu does not."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("ReLU")
def relu(graph, layer, bottoms, tops, shapes):
    graph.node("LeakyRelu", bottoms, tops, name=layer.name, alpha=layer.slope)
