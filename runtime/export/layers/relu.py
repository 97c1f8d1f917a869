"""ReLU -> Relu, or LeakyRelu with Caffe's ``negative_slope``. Relu is ONNX's standard op and
gives Caffe's +0 below zero (LeakyRelu with alpha 0 gives −0, which a later negative power
would turn into −inf); at −inf it gives 0 where Caffe's max(x, 0) + 0·min(x, 0) is NaN."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("ReLU")
def relu(graph, layer, bottoms, tops, shapes):
    if layer.slope:
        graph.node("LeakyRelu", bottoms, tops, name=layer.name, alpha=layer.slope)
    else:
        graph.node("Relu", bottoms, tops, name=layer.name)
