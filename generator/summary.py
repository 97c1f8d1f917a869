"""Blob shapes and learnable-parameter counts of a NetParameter, computed from the prototxt alone.

This walks the layers the generator emits (no tensors are made), so `--list` is instant even for
the 88 M-parameter Large All-CNN. The runtime computes the same shapes with real layers; a test
checks the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import AllconvError
from runtime.geometry import conv_output_size, pool_output_size
from runtime.proto import pb

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerSummary:
    name: str
    type: str
    top_shapes: tuple[Shape, ...]
    num_params: int
    detail: str
    in_place: bool


def _hw(values, h, w, default):
    """Caffe's repeated-or-_h/_w spatial fields, e.g. kernel_size vs kernel_h/kernel_w."""
    if h or w:
        return h, w
    values = list(values) or [default]
    return values[0], values[-1]


def _convolution(p, shape):
    c = p.convolution_param
    kh, kw = _hw(c.kernel_size, c.kernel_h, c.kernel_w, 0)
    ph, pw = _hw(c.pad, c.pad_h, c.pad_w, 0)
    sh, sw = _hw(c.stride, c.stride_h, c.stride_w, 1)
    dh, dw = _hw(c.dilation, 0, 0, 1)
    n, ch, h, w = shape
    out = (n, c.num_output, conv_output_size(h, kh, ph, sh, dh), conv_output_size(w, kw, pw, sw, dw))
    params = c.num_output * (ch // c.group) * kh * kw + (c.num_output if c.bias_term else 0)
    detail = f"{kh}x{kw}" + (f"/s{sh}" if sh != 1 else "") + (f" pad {ph}" if ph else "")
    return out, params, detail


def _pooling(p, shape):
    q = p.pooling_param
    n, ch, h, w = shape
    kind = pb.PoolingParameter.PoolMethod.Name(q.pool)
    if q.global_pooling:
        return (n, ch, 1, 1), 0, f"global {kind}"
    kh, kw = _hw([q.kernel_size] if q.HasField("kernel_size") else [], q.kernel_h, q.kernel_w, 0)
    ph, pw = _hw([q.pad], q.pad_h, q.pad_w, 0)
    sh, sw = _hw([q.stride], q.stride_h, q.stride_w, 1)
    out = (n, ch, pool_output_size(h, kh, ph, sh), pool_output_size(w, kw, pw, sw))
    return out, 0, f"{kind} {kh}x{kw}/s{sh}"


def summarize(net: pb.NetParameter, phase: int, data_shape: Shape) -> list[LayerSummary]:
    """Shapes and parameter counts per layer of ``net`` in ``phase``; Data tops get ``data_shape``."""
    shapes: dict[str, Shape] = {}
    rows = []
    for p in net.layer:
        if any(rule.HasField("phase") and rule.phase != phase for rule in p.include):
            continue
        bottoms = [shapes[b] for b in p.bottom]
        params, detail = 0, ""
        if p.type == "Input":
            tops = [tuple(s.dim) for s in p.input_param.shape]
        elif p.type == "Data":
            tops = [(p.data_param.batch_size,) + tuple(data_shape[1:]), (p.data_param.batch_size,)]
        elif p.type == "Convolution":
            top, params, detail = _convolution(p, bottoms[0])
            tops = [top]
        elif p.type == "Pooling":
            top, params, detail = _pooling(p, bottoms[0])
            tops = [top]
        elif p.type in ("ReLU", "Dropout", "Softmax"):
            tops = [bottoms[0]]
            if p.type == "Dropout":
                detail = f"{p.dropout_param.dropout_ratio:g}"
            elif p.type == "ReLU" and p.relu_param.negative_slope:
                detail = f"slope {p.relu_param.negative_slope:g}"
        elif p.type in ("SoftmaxWithLoss", "Accuracy"):
            tops = [()]
        else:
            raise AllconvError(f"layer {p.name!r}: the generator's summary does not know type "
                               f"{p.type!r}; use runtime.Net for arbitrary nets")
        shapes.update(zip(p.top, tops))
        rows.append(LayerSummary(p.name, p.type, tuple(tops), params, detail,
                                 in_place=list(p.top) == list(p.bottom)))
    return rows


def count_params(rows: list[LayerSummary]) -> int:
    return sum(r.num_params for r in rows)
