"""LRN -> ONNX. ACROSS_CHANNELS is ONNX's LRN (same formula, bias = k), but for α ≤ 0, which
onnxruntime refuses: there x·(k + α·avg_n(x²))^−β, the average over n channels padded by
(n−1)/2 and divided by n. WITHIN_CHANNEL as Caffe composes it: x·(1 + α·avg_{n×n}(x²))^−β,
the average padded by (n−1)/2 and always divided by n² (count_include_pad); ``k`` is not used."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("LRN")
def lrn(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    if not layer.within and layer.alpha > 0:
        graph.node("LRN", [x], tops, name=name, size=layer.size, alpha=layer.alpha,
                   beta=layer.beta, bias=layer.k)
        return
    pad = (layer.size - 1) // 2
    square = graph.node("Mul", [x, x], name=f"{name}/square")
    if layer.within:
        mean = graph.node("AveragePool", [square], name=f"{name}/mean",
                          kernel_shape=[layer.size] * 2, pads=[pad] * 4, count_include_pad=1)
    else:       # channels as the pooled axis of (N, 1, C, H·W)
        rows = graph.shape(f"{name}/rows", [0, 1, shapes[0][1], -1])
        planes = graph.node("Reshape", [square, rows], name=f"{name}/channels_as_rows")
        pooled = graph.node("AveragePool", [planes], name=f"{name}/mean",
                            kernel_shape=[layer.size, 1], pads=[pad, 0, pad, 0],
                            count_include_pad=1)
        mean = graph.node("Reshape", [pooled, graph.node("Shape", [x], name=f"{name}/shape")],
                          name=f"{name}/back")
    scaled = graph.node("Mul", [mean, graph.constant(f"{name}/alpha", layer.alpha)],
                        name=f"{name}/alpha")
    k = graph.constant(f"{name}/k", 1.0 if layer.within else layer.k)
    base = graph.node("Add", [scaled, k], name=f"{name}/base")
    factor = graph.node("Pow", [base, graph.constant(f"{name}/minus_beta", -layer.beta)],
                        name=f"{name}/pow")
    graph.node("Mul", [x, factor], tops, name=name)
