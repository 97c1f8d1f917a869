"""Pooling -> ONNX with Caffe's windows: global pooling as GlobalMaxPool/GlobalAveragePool;
otherwise explicit padding (−FLT_MAX for MAX, 0 for AVE; a negative right pad crops input
that no window reads) followed by unpadded floor-mode pooling, and for AVE a factor that turns
the k_h·k_w divisor into Caffe's window clipped to [−p, H+p). ONNX's own ``ceil_mode`` and
``pads`` are never used: they disagree with Caffe's rule about a last window starting in the
padding and with its AVE divisor, and onnxruntime had bugs there (microsoft/onnxruntime#15446).
MAX first raises what Caffe's strict ``>`` against its −FLT_MAX start never takes (NaN, −inf)
to −FLT_MAX, as the runtime does: ONNX's MaxPool would return a NaN. A mask top (MAX's second)
comes from MaxPool's indices into the padded input, mapped to Caffe's h·W + w of the real
plane, −1 where a window held nothing above −FLT_MAX.
"""
from __future__ import annotations

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.export.builder import FP16_EXACT
from runtime.export.registry import converter
from runtime.proto import pb


@converter("Pooling")
def pooling(graph, layer, bottoms, tops, shapes):
    if layer.method not in layer.runs:
        raise AllconvError(f"layer {layer.name!r} (Pooling): STOCHASTIC pooling does not export: "
                           "Caffe runs it on the GPU alone (its CPU Forward is "
                           "NOT_IMPLEMENTED), and the runtime has only MAX and AVE, which "
                           "export")
    is_max = layer.method == pb.PoolingParameter.MAX
    x = _floor(graph, layer.name, bottoms[0]) if is_max else bottoms[0]
    if layer.param.pooling_param.global_pooling and not layer.mask:
        graph.node("GlobalMaxPool" if is_max else "GlobalAveragePool", [x], tops,
                   name=layer.name)
        return
    win = layer.windows(shapes[0][2:])
    x = _crop(graph, layer.name, x, win)
    begin = [p for _, _, p, _, _ in win]
    end = [max(_right_pad(w), 0) for w in win]
    if any(begin) or any(end):
        pads = graph.shape(f"{layer.name}/pads", [0, 0, *begin, 0, 0, *end])
        value = graph.constant(f"{layer.name}/pad_value", graph.lowest if is_max else 0.0)
        x = graph.node("Pad", [x, pads, value], name=f"{layer.name}/pad", mode="constant")
    kernel = [k for _, k, _, _, _ in win]
    attrs = dict(kernel_shape=kernel, strides=[s for _, _, _, s, _ in win])
    if is_max and layer.mask:
        _mask(graph, layer.name, x, tops, attrs, win, shapes[0][2:])
        return
    if is_max:
        graph.node("MaxPool", [x], tops, name=layer.name, **attrs)
        return
    divisors = layer._divisors(win, torch.empty(0, dtype=torch.float64)).numpy()
    with np.errstate(divide="ignore"):       # a window of zero width: 0/0 as in Caffe
        factor = np.prod(kernel) / divisors
    if np.all(factor == 1):
        graph.node("AveragePool", [x], tops, name=layer.name, **attrs)
        return
    mean = graph.node("AveragePool", [x], name=layer.name, **attrs)
    graph.node("Mul", [mean, graph.constant(f"{layer.name}/divisor_factor", factor)], tops,
               name=f"{layer.name}/caffe_divisor")


def _mask(graph, name, x, tops, attrs, win, plane_shape):
    """MaxPool with its Indices (flat over the padded (N, C, H', W')) turned into Caffe's mask:
    (h' − pad_h)·W + (w' − pad_w) as floats, −1 where the maximum is −FLT_MAX."""
    (_, k_h, p_h, s_h, o_h), (_, k_w, p_w, s_w, o_w) = win
    height, width = plane_shape
    if graph.dtype == np.float16 and height * width - 1 > FP16_EXACT:
        raise AllconvError(f"--fp16: the mask of Pooling {name!r} holds indices up to "
                           f"{height * width - 1}; float16 holds integers exactly only up to "
                           f"{FP16_EXACT}: export it in float32")
    index = graph.fresh(f"{name}/indices")
    values = graph.node("MaxPool", [x], [tops[0], index], name=name, **attrs)
    integer = lambda hint, v: graph.constant(f"{name}/{hint}", v, np.int64)  # noqa: E731
    padded_w = integer("padded_width", (o_w - 1) * s_w + k_w)
    plane = integer("padded_plane", ((o_h - 1) * s_h + k_h) * ((o_w - 1) * s_w + k_w))
    flat = graph.node("Mod", [index, plane], name=f"{name}/in_plane")
    row = graph.node("Sub", [graph.node("Div", [flat, padded_w], name=f"{name}/padded_row"),
                             integer("pad_h", p_h)], name=f"{name}/row")
    col = graph.node("Sub", [graph.node("Mod", [flat, padded_w], name=f"{name}/padded_col"),
                             integer("pad_w", p_w)], name=f"{name}/col")
    at = graph.node("Add", [graph.node("Mul", [row, integer("width", width)],
                                       name=f"{name}/row_start"), col], name=f"{name}/at")
    found = graph.node("Greater", [values, graph.constant(f"{name}/lowest", graph.lowest)],
                       name=f"{name}/found")
    graph.node("Where", [found, graph.node("Cast", [at], name=f"{name}/float",
                                           to=graph.elem_type),
                         graph.constant(f"{name}/none", -1.0)], tops[1:], name=f"{name}/mask")


def _floor(graph, name, x):
    """x where x > −FLT_MAX, else −FLT_MAX (NaN included)."""
    lowest = graph.constant(f"{name}/lowest", graph.lowest)
    kept = graph.node("Greater", [x, lowest], name=f"{name}/above_lowest")
    return graph.node("Where", [kept, x, lowest], name=f"{name}/floor")


def _right_pad(window) -> int:
    """Padding after the input that the last window needs (negative: input it never reads)."""
    h, k, p, s, o = window
    return (o - 1) * s + k - h - p


def _crop(graph, name, x, win):
    """Slice off trailing input that no window reads."""
    if all(_right_pad(w) >= 0 for w in win):
        return x
    ends = [h + min(_right_pad((h, k, p, s, o)), 0) for h, k, p, s, o in win]
    return graph.node("Slice", [x, graph.shape(f"{name}/crop_starts", [0] * len(win)),
                                graph.shape(f"{name}/crop_ends", ends),
                                graph.shape(f"{name}/crop_axes", [2, 3])], name=f"{name}/crop")
