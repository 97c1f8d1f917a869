"""LRN -> ONNX. ACROSS_CHANNELS is ONNX's LRN (same formula, bias = k; onnxruntime sums the
window as Caffe does, sliding, so it is NaN where Caffe is), but for α ≤ 0 or β ≤ 0, which
onnxruntime refuses: there x·(k + Σ α/n·x²)^−β as the runtime computes it, the n-channel
window sums of the terms padded by (n−1)/2 before, NaN for every channel after an infinite or
NaN term (Caffe's inf − inf). WITHIN_CHANNEL as Caffe composes it: x·(1 + α·avg_{n×n}(x²))^−β,
the average padded by (n−1)/2 and always divided by n² (count_include_pad); ``k`` is not used."""
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
    else:
        scaled = _window_sums(graph, layer, square, shapes[0])
    k = graph.constant(f"{name}/k", 1.0 if layer.within else layer.k)
    base = graph.node("Add", [scaled, k], name=f"{name}/base")
    factor = graph.node("Pow", [base, graph.constant(f"{name}/minus_beta", -layer.beta)],
                        name=f"{name}/pow")
    graph.node("Mul", [x, factor], tops, name=name)


def _window_sums(graph, layer, square, shape):
    """Σ α/n·x² over each channel's window, on (N, 1, C + n − 1, H·W) with the channels as
    rows; NaN from the channel after the first infinite or NaN term (``runtime.layers.lrn``)."""
    name, size, channels = layer.name, layer.size, shape[1]
    pre = (size - 1) // 2
    rows = graph.node("Reshape", [square, graph.shape(f"{name}/rows", [0, 1, channels, -1])],
                      name=f"{name}/channels_as_rows")
    padded = graph.node("Pad", [rows, graph.shape(
        f"{name}/pads", [0, 0, pre, 0, 0, 0, size - 1 - pre, 0])], name=f"{name}/pad")
    terms = graph.node("Mul", [padded, graph.constant(f"{name}/alpha_over_n",
                                                      np.float32(layer.alpha) / size)],
                       name=f"{name}/terms")
    ones = graph.constant(f"{name}/window", np.ones((1, 1, size, 1)))
    sums = graph.node("Conv", [terms, ones], name=f"{name}/sums", kernel_shape=[size, 1])
    bad = graph.node("Or", [graph.node("IsInf", [terms], name=f"{name}/inf"),
                            graph.node("IsNaN", [terms], name=f"{name}/nan")], name=f"{name}/bad")
    seen = graph.node("CumSum", [graph.node("Cast", [bad], name=f"{name}/count", to=6),
                                 graph.constant(f"{name}/axis", 2, np.int64)],
                      name=f"{name}/seen")
    # channel c is NaN where a bad term stands at padded index c − 1 or before
    before = graph.node("Slice", [seen, graph.shape(f"{name}/start", [0]),
                                  graph.shape(f"{name}/end", [channels - 1]),
                                  graph.shape(f"{name}/slice_axis", [2])], name=f"{name}/before")
    shifted = graph.node("Pad", [before, graph.shape(f"{name}/shift", [0, 0, 1, 0, 0, 0, 0, 0])],
                         name=f"{name}/shift")
    left = graph.node("Greater", [shifted, graph.constant(f"{name}/zero", 0, np.int32)],
                      name=f"{name}/left")
    nan = graph.constant(f"{name}/nan_value", np.nan)
    masked = graph.node("Where", [left, nan, sums], name=f"{name}/masked")
    return graph.node("Reshape", [masked, graph.node("Shape", [square], name=f"{name}/shape")],
                      name=f"{name}/back")
