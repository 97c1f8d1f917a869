"""LRN -> ONNX. ACROSS_CHANNELS is ONNX's LRN (same formula, bias = k; onnxruntime's CPU
kernel slides the window as Caffe does), but for α ≤ 0 or β ≤ 0, which onnxruntime refuses:
there x·(k + Σ α/n·x²)^−β with the sum slid as Caffe slides it, unrolled over the channels.
WITHIN_CHANNEL as Caffe composes it: x·(1 + α·avg_{n×n}(x²))^−β, the average padded by
(n−1)/2 and always divided by n² (count_include_pad); ``k`` is not used."""
from __future__ import annotations

import numpy as np

from runtime.export.registry import converter


@converter("LRN")
def lrn(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    if not layer.within and layer.alpha > 0 and layer.beta > 0:
        graph.node("LRN", [x], tops, name=name, size=layer.size, alpha=layer.alpha,
                   beta=layer.beta, bias=layer.k)
        return
    pad = (layer.size - 1) // 2
    square = graph.node("Mul", [x, x], name=f"{name}/square")
    if layer.within:
        mean = graph.node("AveragePool", [square], name=f"{name}/mean",
                          kernel_shape=[layer.size] * 2, pads=[pad] * 4, count_include_pad=1)
        scaled = graph.node("Mul", [mean, graph.constant(f"{name}/alpha", layer.alpha)],
                            name=f"{name}/alpha")
        base = graph.node("Add", [scaled, graph.constant(f"{name}/one", 1.0)],
                          name=f"{name}/base")
    else:
        base = _scale(graph, layer, square, shapes[0][1])
    factor = graph.node("Pow", [base, graph.constant(f"{name}/minus_beta", -layer.beta)],
                        name=f"{name}/pow")
    graph.node("Mul", [x, factor], tops, name=name)


def _scale(graph, layer, square, channels):
    """k + Σ α/n·x², slid over the channels as Caffe (and the runtime) slide it, unrolled:
    k plus the first window's terms, then each channel's scale from the last one plus the new
    head minus the old tail (so k lost to a huge term and NaN after an infinite one, alike)."""
    name, size = layer.name, layer.size
    pre = (size - 1) // 2
    padded = graph.node("Pad", [square, graph.shape(
        f"{name}/pads", [0, pre, 0, 0, 0, size - 1 - pre, 0, 0])], name=f"{name}/pad")
    terms = graph.node("Mul", [padded, graph.constant(f"{name}/alpha_over_n",
                                                      np.float32(layer.alpha) / size)],
                       name=f"{name}/terms")
    axis = graph.shape(f"{name}/channel_axis", [1])
    term = [graph.node("Slice", [terms, graph.shape(f"{name}/from{j}", [j]),
                                 graph.shape(f"{name}/to{j}", [j + 1]), axis],
                       name=f"{name}/term{j}") for j in range(channels + size - 1)]
    scale = graph.constant(f"{name}/k", layer.k)
    for j in range(size):
        scale = graph.node("Add", [scale, term[j]], name=f"{name}/first{j}")
    scales = [scale]
    for c in range(1, channels):
        head = graph.node("Add", [scale, term[c + size - 1]], name=f"{name}/head{c}")
        scale = graph.node("Sub", [head, term[c - 1]], name=f"{name}/tail{c}")
        scales.append(scale)
    return graph.node("Concat", scales, name=f"{name}/scale", axis=1)
