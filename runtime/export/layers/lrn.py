"""LRN -> ONNX. ACROSS_CHANNELS is ONNX's LRN (same formula, bias = k). WITHIN_CHANNEL as
Caffe composes it: x·(1 + α·avg_{n×n}(x²))^−β, the average padded by (n−1)/2 and always
divided by n² (count_include_pad); ``k`` is not used."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("LRN")
def lrn(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    if not layer.within:
        graph.node("LRN", [x], tops, name=name, size=layer.size, alpha=layer.alpha,
                   beta=layer.beta, bias=layer.k)
        return
    pad = (layer.size - 1) // 2
    square = graph.node("Mul", [x, x], name=f"{name}/square")
    mean = graph.node("AveragePool", [square], name=f"{name}/mean", kernel_shape=[layer.size] * 2,
                      pads=[pad] * 4, count_include_pad=1)
    scaled = graph.node("Mul", [mean, graph.constant(f"{name}/alpha", layer.alpha)],
                        name=f"{name}/alpha")
    base = graph.node("Add", [scaled, graph.constant(f"{name}/one", 1.0)], name=f"{name}/base")
    factor = graph.node("Pow", [base, graph.constant(f"{name}/minus_beta", -layer.beta)],
                        name=f"{name}/pow")
    graph.node("Mul", [x, factor], tops, name=name)
