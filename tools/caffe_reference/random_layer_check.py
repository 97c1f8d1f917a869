#!/usr/bin/env python3
"""Differential check of the runtime against real BVLC Caffe over random layer parameters.

For each layer type it draws ``--cases`` random parameterisations on random small shapes
(seeded: the same ``--seed`` draws the same cases), runs each one-layer net (a few need a
small harness: a loss behind Embed, Filter, BatchReindex) in real Caffe (forward, backward from
a seeded top diff or the loss, parameter gradients), then in the runtime, and compares every
blob, blob diff and parameter gradient (``fixture_format.rel_error``, max|ours − Caffe| /
max|Caffe|). Inference nets are also exported (``runtime.export.build_model``, dynamic batch)
and run in onnxruntime, optimisations off and on, against Caffe's forward.

Caffe refuses a bad parameter with a CHECK failure that aborts the process, so Caffe's half
runs in a worker process (Debian's python3 + pycaffe) that is restarted after an abort; the
case it was running is recorded as refused, with glog's fatal line. A refusal must be one
AllconvError line in the runtime too; the report lists where one side refuses and the other
does not, and "crashed" where Caffe dies without a CHECK (a signal, glibc's heap abort).

Verdicts: ok (every array within TOL; TOL_LOSS behind a loss), marginal (within MARGINAL: fp32
sums of a few cancelling terms), mismatch, onnx mismatch, both refuse, we refuse / Caffe
accepts, we accept / Caffe refuses, Caffe crashes, traceback (ours: always a bug). Arrays that
of gradients (diff:, grad:) both within NEAR_ZERO of 0 agree (0 in exact arithmetic). Known
differences of the reference build (a packaged fork) from BVLC master, which the runtime
follows: Scale with a second bottom has no shape CHECK (master refuses a mismatch, as we do);
Embed's index range is a DCHECK, so the release build reads out of bounds (we refuse); a
Filter that selects nothing makes its Softmax divide by zero (we run on an empty batch).

Run from the repository root with the project's venv (the Caffe half starts itself):

    nice -n 10 .venv/bin/python tools/caffe_reference/random_layer_check.py \\
        [--cases 30] [--types Crop,Slice,...] [--seed 0] [--work DIR] [--show-ok]

It prints one line per case that disagrees (and a table per type) and writes
``DIR/report.json``. It needs pycaffe at $CAFFE_PREFIX (default /opt/reference-caffe) for
$CAFFE_PYTHON (default /usr/bin/python3); the cases and their Caffe results stay in DIR
(default a fresh temp dir), so a second run with the same DIR reuses Caffe's results.
The Caffe half, by hand: ``CAFFE_PYTHON random_layer_check.py caffe DIR`` (with
PYTHONPATH=$CAFFE_PREFIX/python) runs DIR/cases.json until all are done or one aborts.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from case_kit import (REPO, L, conv, ff, labels, net_case, net_text, normal, ties,  # noqa: E402
                      uniform)

TOL = 1e-5           # as tests/test_caffe_fixtures.py's TOL_LAYER
TOL_LOSS = 1e-4      # a loss sums in a different order than Caffe's
MARGINAL = 1e-4      # above TOL but below this: "marginal" (fp32 sums of a few cancelling terms)
NEAR_ZERO = 1e-4     # gradients within this of 0 on both sides agree (see _error)
POSITIVE = "positive"


# ============================================================================ drawing cases

class Draw:
    """The random choices of one case (a RandomState seeded from the case's name)."""

    def __init__(self, *parts):
        self.r = ff.rng("random_layer_check", *parts)

    def int(self, lo, hi):          # inclusive
        return int(self.r.randint(lo, hi + 1))

    def pick(self, *options):
        return options[self.r.randint(len(options))]

    def chance(self, p):
        return bool(self.r.uniform() < p)

    def real(self, lo, hi, digits=3):
        return round(float(self.r.uniform(lo, hi)), digits)

    def shape(self, min_axes, max_axes, lo=1, hi=5):
        return [self.int(lo, hi) for _ in range(self.int(min_axes, max_axes))]


def one(name, type_, inputs, body, tops=1, bottoms=None, **kw):
    """A net of one layer ("layer") on the Input blobs, with ``tops`` tops."""
    tops = ["out"] if tops == 1 else [f"out{i}" for i in range(tops)]
    return net_case(name, type_, inputs,
                    [L("layer", type_, list(bottoms or inputs), tops, body)], **kw)


def opt(d, p, text):
    """``text`` with probability ``p``, else nothing (the field keeps Caffe's default)."""
    return text if d.chance(p) else ""


def in_place(d):
    """(top, layers before): half the time the layer runs in place on "x", an identity
    Power's copy of the input (Caffe records no forward of an input blob)."""
    if d.chance(0.5):
        return "out", []
    return "x", [L("copy", "Power", "data", "x")]


def draw_batch_norm(d, name):
    shape = d.shape(1 if d.chance(0.05) else 2, 5, 1, 4)
    inputs = {"data": normal(*shape, scale=2.0)}
    fields = (opt(d, 0.5, f"use_global_stats: {d.pick('true', 'false')} ")
              + opt(d, 0.4, f"moving_average_fraction: {d.real(0.5, 1.0)} ")
              + opt(d, 0.4, f"eps: {d.pick(1e-5, 1e-3, 0.1, 1.0)} "))
    layer_phase = d.pick("", "", "phase: TRAIN ", "phase: TEST ")
    mode = {"*": POSITIVE}
    if d.chance(0.2):
        mode["layer:2"] = "zeros"
    top, head = in_place(d)
    case = net_case(name, "BatchNorm", inputs,
                    head + [L("layer", "BatchNorm", top if head else "data", top,
                              f"{layer_phase}batch_norm_param {{ {fields}}}")],
                    weight_mode=mode, params_after_forward=True, top_diffs=[top])
    case["phase"] = d.pick("TRAIN", "TEST")      # the net's; the layer's may override it
    return case


def _affine_param(d, shape, with_bias):
    """(the param fields, the shape a second bottom or the learned blob has) for Scale and
    Bias: axis, num_axes (sometimes invalid), one time in ten a shape Caffe must refuse."""
    n = len(shape)
    axis = d.int(-n, n - 1) if n else 0
    a = axis + n if axis < 0 else axis
    num_axes = d.pick(-1, *range(0, n - a + 1)) if d.chance(0.8) else d.int(-2, n - a + 1)
    fields = opt(d, 0.7, f"axis: {axis} ") + opt(d, 0.7, f"num_axes: {num_axes} ")
    if "axis" not in fields:
        axis, a = 1, 1
    if "num_axes" not in fields:
        num_axes = 1
    end = n if num_axes == -1 else a + max(num_axes, 0)
    second = shape[a:end] if a <= n else []
    if d.chance(0.1) and second:
        second = second[:-1] + [second[-1] + 1]     # a mismatch Caffe refuses
    if with_bias and d.chance(0.5):
        fields += "bias_term: true "
    return fields, second


def _draw_affine(d, name, type_, bottom, with_bias):
    """Scale or Bias: its own blob, or (40 %) a second bottom named ``bottom``."""
    shape = d.shape(1, 4, 1, 4)
    fields, second = _affine_param(d, shape, with_bias)
    inputs = {"data": normal(*shape)}
    if d.chance(0.4):
        inputs[bottom] = normal(*second)
        fields = _drop(fields, "num_axes")      # the second bottom's shape says it
    return one(name, type_, inputs, f"{type_.lower()}_param {{ {fields}}}", weight_mode="normal")


def draw_scale(d, name):
    return _draw_affine(d, name, "Scale", "factor", True)


def draw_bias(d, name):
    return _draw_affine(d, name, "Bias", "bias", False)


def _drop(fields, key):
    """``fields`` without ``key: value``."""
    parts = fields.split()
    return "".join(f"{k} {v} " for k, v in zip(parts[::2], parts[1::2]) if k != key + ":")


def draw_mvn(d, name):
    shape = d.shape(1, 4, 1, 5)
    fields = (opt(d, 0.5, f"normalize_variance: {d.pick('true', 'false')} ")
              + opt(d, 0.5, f"across_channels: {d.pick('true', 'false')} ")
              + opt(d, 0.4, f"eps: {d.pick(1e-9, 1e-3, 0.5)} "))
    return one(name, "MVN", {"data": normal(*shape, scale=d.pick(0.5, 1.0, 3.0))},
               f"mvn_param {{ {fields}}}")


def draw_prelu(d, name):
    shape = d.shape(1, 4, 1, 4)
    data = ties(*shape) if d.chance(0.3) else normal(*shape)
    body = opt(d, 0.5, f"prelu_param {{ channel_shared: {d.pick('true', 'false')} }}")
    top, head = in_place(d)
    return net_case(name, "PReLU", {"data": data},
                    head + [L("layer", "PReLU", top if head else "data", top, body)],
                    weight_mode="normal", top_diffs=[top])


def _conv_fields(d, spatial, deconv):
    """convolution_param text for ``spatial`` axes: kernel, stride, pad, dilation in the
    repeated or the _h/_w form."""
    def field(name, lo, hi, p):
        if not d.chance(p):
            return ""
        if spatial == 2 and d.chance(0.4):
            return f"{name}_h: {d.int(lo, hi)} {name}_w: {d.int(lo, hi)} "
        k = d.pick(1, spatial) if spatial > 1 else 1
        return "".join(f"{name}_size: {d.int(lo, hi)} " if name == "kernel"
                       else f"{name}: {d.int(lo, hi)} " for _ in range(k))
    kernel = field("kernel", 1, 4, 1.0)
    return (kernel + field("stride", 1, 3, 0.6) + field("pad", 0, 2, 0.5)
            + (opt(d, 0.3, f"dilation: {d.int(1, 3)} ") if "_h" not in kernel or deconv else ""))


def draw_conv(type_):
    """Convolution or Deconvolution: 1-3 spatial axes, groups, sometimes a channel axis other
    than 1 (Caffe's convolution_param.axis: the axes before it are batch)."""
    def draw(d, name):
        spatial = d.pick(1, 2, 2, 2, 3)
        group = d.pick(1, 1, 2, 3)
        channels = group * d.int(1, 2) if d.chance(0.9) else d.int(1, 5)
        num_output = group * d.int(1, 2) if d.chance(0.9) else d.int(1, 5)
        lead = [d.int(1, 2) for _ in range(d.pick(1, 1, 1, 1, 2, 0))]
        shape = lead + [channels] + [d.int(1, 5) for _ in range(spatial)]
        fields = (f"num_output: {num_output} " + _conv_fields(d, spatial, True)
                  + (f"group: {group} " if group > 1 else "")
                  + (f"axis: {len(lead)} " if len(lead) != 1 else "")
                  + opt(d, 0.3, "bias_term: false ")
                  + opt(d, 0.1, "force_nd_im2col: true "))
        return one(name, type_, {"data": normal(*shape)}, f"convolution_param {{ {fields}}}")
    return draw


def draw_im2col(d, name):
    spatial = d.pick(1, 2, 2, 3)
    lead = [d.int(1, 2) for _ in range(d.pick(1, 1, 1, 2, 0))]
    shape = lead + [d.int(1, 3)] + [d.int(1, 6) for _ in range(spatial)]
    fields = (_conv_fields(d, spatial, False) + opt(d, 0.2, "force_nd_im2col: true ")
              + (f"axis: {len(lead)} " if len(lead) != 1 else ""))
    return one(name, "Im2col", {"data": normal(*shape)}, f"convolution_param {{ {fields}}}")


def draw_crop(d, name):
    data = d.shape(1, 4, 1, 6)
    n = len(data)
    axis = d.int(-n, n - 1) if d.chance(0.7) else None
    a = 2 if axis is None else (axis + n if axis < 0 else axis)
    ref = [d.int(1, 4) if i < a else d.int(1, data[i] + (1 if d.chance(0.1) else 0))
           for i in range(n)] + ([d.int(1, 3)] if d.chance(0.1) else [])
    room = [data[i] - ref[i] if a <= i < n else 0 for i in range(n)]
    kind = d.pick("none", "one", "each")
    if kind == "one":
        offsets = [d.int(0, max(min(room[a:] or [0]), 0) + (1 if d.chance(0.1) else 0))]
    elif kind == "each":
        offsets = [d.int(0, max(room[i], 0) + (1 if d.chance(0.1) else 0))
                   for i in range(a, n)]
        if d.chance(0.1):
            offsets.append(0)
    else:
        offsets = []
    fields = ("" if axis is None else f"axis: {axis} ") + "".join(f"offset: {o} "
                                                                  for o in offsets)
    return net_case(name, "Crop", {"data": normal(*data), "ref": normal(*ref)},
                    [L("layer", "Crop", ["data", "ref"], "out", f"crop_param {{ {fields}}}")],
                    top_diffs=["out"])


def draw_slice(d, name):
    shape = d.shape(1, 4, 1, 6)
    n = len(shape)
    legacy = d.chance(0.2)
    axis = d.int(-n, n - 1) if d.chance(0.7) else 1
    a = axis + n if axis < 0 else axis
    if legacy:
        axis = a = d.int(0, n - 1)
    dim = shape[a] if a < n else 1
    tops = d.int(1, 4)
    if d.chance(0.5):
        points = sorted(d.r.choice(range(1, dim), min(tops - 1, dim - 1), replace=False).tolist()
                        ) if dim > 1 else []
        if d.chance(0.1):
            points = points + [d.int(0, dim + 1)]
        tops = len(points) + 1
    else:
        points = []
    if d.chance(0.05):
        tops += 1       # slice points and tops disagree
    key = "slice_dim" if legacy else "axis"
    fields = (opt(d, 0.8 if not legacy else 1.0, f"{key}: {axis} ")
              + "".join(f"slice_point: {p} " for p in points))
    return one(name, "Slice", {"data": normal(*shape)}, f"slice_param {{ {fields}}}",
               tops=tops, bottoms=["data"])


def draw_reshape(d, name):
    shape = d.shape(1, 4, 1, 4)
    n = len(shape)
    axis = d.int(-n - 1, n) if d.chance(0.5) else 0
    a = axis + n + 1 if axis < 0 else axis
    num_axes = d.pick(-1, *range(0, n - min(a, n) + 1)) if d.chance(0.5) else -1
    end = n if num_axes == -1 else min(a + num_axes, n)
    seg = shape[min(a, n):end]
    total = int(np.prod(seg)) if seg else 1
    dims = []
    left = total
    for _ in range(d.int(0, 3)):
        f = d.pick(*[k for k in range(1, left + 1) if left % k == 0])
        dims.append(f)
        left //= f
    if left > 1 or d.chance(0.3):
        dims.append(left)
    if dims and d.chance(0.5):
        dims[d.int(0, len(dims) - 1)] = -1
    for i in range(len(dims)):
        if a + i < n and dims[i] == shape[a + i] and d.chance(0.5):
            dims[i] = 0
    if d.chance(0.1):
        dims.append(d.pick(2, 3, -1, 0))     # often an impossible shape
    fields = ("shape { " + "".join(f"dim: {x} " for x in dims) + "} "
              + ("" if axis == 0 and d.chance(0.5) else f"axis: {axis} ")
              + ("" if num_axes == -1 and d.chance(0.5) else f"num_axes: {num_axes} "))
    return one(name, "Reshape", {"data": normal(*shape)}, f"reshape_param {{ {fields}}}")


def draw_tile(d, name):
    shape = d.shape(1, 4, 1, 4)
    n = len(shape)
    fields = (opt(d, 0.7, f"axis: {d.int(-n, n - 1)} ")
              + f"tiles: {d.int(0, 3) if d.chance(0.1) else d.int(1, 3)} ")
    return one(name, "Tile", {"data": normal(*shape)}, f"tile_param {{ {fields}}}")


def draw_spp(d, name):
    height = d.int(1, 3)
    low = 1 if d.chance(0.2) else 2 ** (height - 1)      # smaller bottoms: mostly refused
    shape = [d.int(1, 2), d.int(1, 3), d.int(low, 9), d.int(low, 9)]
    pool = d.pick("MAX", "AVE")
    fields = f"pyramid_height: {height} " + opt(d, 0.8, f"pool: {pool} ")
    data = ties(*shape) if pool == "MAX" and d.chance(0.3) else normal(*shape)
    return one(name, "SPP", {"data": data}, f"spp_param {{ {fields}}}")


def draw_argmax(d, name):
    shape = d.shape(1, 4, 1, 5)
    n = len(shape)
    axis = d.int(-n, n - 1) if d.chance(0.6) else None
    dim = (shape[axis] if axis is not None else int(np.prod(shape[1:])))
    fields = (("" if axis is None else f"axis: {axis} ")
              + opt(d, 0.6, f"top_k: {d.int(1, dim + (1 if d.chance(0.1) else 0))} ")
              + opt(d, 0.5, f"out_max_val: {d.pick('true', 'false')} "))
    data = ties(*shape) if d.chance(0.4) else normal(*shape)
    return one(name, "ArgMax", {"data": data}, f"argmax_param {{ {fields}}}", backward="none")


def draw_reduction(d, name):
    shape = d.shape(1, 4, 1, 4)
    n = len(shape)
    fields = (opt(d, 0.8, f"operation: {d.pick('SUM', 'ASUM', 'SUMSQ', 'MEAN')} ")
              + opt(d, 0.7, f"axis: {d.int(-n, n - 1)} ")
              + opt(d, 0.5, f"coeff: {d.pick(-1.5, 0.5, 2.0, 0.0)} "))
    data = ties(*shape) if "ASUM" in fields and d.chance(0.5) else normal(*shape)
    return one(name, "Reduction", {"data": data}, f"reduction_param {{ {fields}}}")


def draw_filter(d, name):
    """As cases_geometry.selection_cases: Caffe aborts when a diff reaches the selector, so
    the backward comes from a loss behind a conv whose output is filtered."""
    n = d.int(1, 5)
    shape = [n, d.int(1, 3), d.int(1, 3), d.int(1, 3)]
    select = labels(n, *([1] if d.chance(0.5) else []), classes=2)
    if d.chance(0.1):
        select = {"shape": [n], "kind": "uniform", "low": 1.0, "high": 1.0}
    classes = d.int(2, 4)
    inputs = {"data": normal(*shape), "label": labels(n, classes=classes), "select": select}
    return net_case(name, "Filter", inputs, [
        conv("conv", "data", "c", "num_output: 2 kernel_size: 1"),
        L("layer", "Filter", ["c", "label", "select"], ["fc", "flabel"]),
        L("ip", "InnerProduct", "fc", "ip", f"inner_product_param {{ num_output: {classes} }}"),
        L("loss", "SoftmaxWithLoss", ["ip", "flabel"], "loss",
          "propagate_down: true propagate_down: false loss_param { normalization: NONE }")],
        backward="loss", force_backward=False)


def draw_batch_reindex(d, name):
    n, m = d.int(1, 4), d.int(1, 6)
    extra = 1 if d.chance(0.1) else 0
    classes = d.int(2, 4)
    inputs = {"data": normal(n, d.int(1, 3), d.int(1, 2), d.int(1, 2)),
              "index": labels(m, classes=n + extra), "label": labels(m, classes=classes)}
    return net_case(name, "BatchReindex", inputs, [
        conv("conv", "data", "c", "num_output: 2 kernel_size: 1"),
        L("layer", "BatchReindex", ["c", "index"], "r"),
        L("ip", "InnerProduct", "r", "ip", f"inner_product_param {{ num_output: {classes} }}"),
        L("loss", "SoftmaxWithLoss", ["ip", "label"], "loss")],
        backward="loss", force_backward=False)


def _neuron(name, type_, data, body, **kw):
    return one(name, type_, {"data": data}, body, **kw)


def draw_power(d, name):
    shape = d.shape(1, 4, 1, 4)
    power = d.pick(1.0, 2.0, 3.0, 0.5, -1.0, -0.5, 0.0, 1.5, d.real(-2, 3, 2))
    scale = d.pick(1.0, d.real(-2, 2, 2), 0.0) if d.chance(0.7) else 1.0
    shift = d.pick(0.0, d.real(-1, 2, 2)) if d.chance(0.6) else 0.0
    fields = (f"power: {power} " if power != 1.0 or d.chance(0.3) else "") + \
             (f"scale: {scale} " if scale != 1.0 else "") + (f"shift: {shift} " if shift else "")
    integral = float(power).is_integer() and power >= 0
    if integral:
        data = normal(*shape)
    else:      # scale·x + shift in [0.25, 2.25]: no NaN and no pole
        lo, hi = 0.25, 2.25
        if scale == 0:
            data = normal(*shape)
        else:
            a, b = (lo - shift) / scale, (hi - shift) / scale
            data = uniform(*shape, low=min(a, b), high=max(a, b))
    return _neuron(name, "Power", data, f"power_param {{ {fields}}}")


def draw_exp(d, name):
    shape = d.shape(1, 4, 1, 4)
    fields = (opt(d, 0.6, f"base: {d.pick(-1, 2, 0.5, 10, d.real(0.1, 5, 2))} ")
              + opt(d, 0.5, f"scale: {d.real(-2, 2, 2)} ")
              + opt(d, 0.5, f"shift: {d.real(-2, 2, 2)} "))
    if d.chance(0.05):
        fields += "base: -2 "
    return _neuron(name, "Exp", normal(*shape), f"exp_param {{ {fields}}}")


def draw_log(d, name):
    shape = d.shape(1, 4, 1, 4)
    scale = d.pick(1.0, d.real(0.2, 3, 2), -d.real(0.2, 3, 2))
    shift = d.pick(0.0, d.real(0.0, 2, 2))
    fields = (opt(d, 0.6, f"base: {d.pick(-1, 2, 0.5, 10, d.real(0.1, 5, 2))} ")
              + (f"scale: {scale} " if scale != 1.0 else "")
              + (f"shift: {shift} " if shift else ""))
    a, b = (0.1 - shift) / scale, (3.0 - shift) / scale
    return _neuron(name, "Log", uniform(*shape, low=min(a, b), high=max(a, b)),
                   f"log_param {{ {fields}}}")


def draw_elu(d, name):
    shape = d.shape(1, 4, 1, 4)
    body = opt(d, 0.7, f"elu_param {{ alpha: {d.pick(0.0, 0.3, 1.0, 2.5, -0.5)} }}")
    data = ties(*shape) if d.chance(0.3) else normal(*shape, scale=2.0)
    return _neuron(name, "ELU", data, body)


def draw_threshold(d, name):
    shape = d.shape(1, 4, 1, 4)
    body = opt(d, 0.7, f"threshold_param {{ threshold: {d.pick(0.0, 0.5, -1.0, 1.0)} }}")
    data = ties(*shape) if d.chance(0.4) else normal(*shape)
    return _neuron(name, "Threshold", data, body, backward="none")


def draw_embed(d, name):
    dim, out = d.int(1, 6), d.int(1, 4)
    shape = d.shape(1, 3, 1, 3)
    extra = 1 if d.chance(0.1) else 0
    fields = (f"num_output: {out} input_dim: {dim} "
              + opt(d, 0.4, f"bias_term: {d.pick('true', 'false')} "))
    return net_case(name, "Embed", {"data": labels(*shape, classes=dim + extra),
                                     "target": normal(*shape, out)},
                    [L("layer", "Embed", "data", "out", f"embed_param {{ {fields}}}"),
                     L("loss", "EuclideanLoss", ["out", "target"], "loss")],
                    backward="loss", force_backward=False)


def draw_lstm_unit(d, name):
    n, dim = d.int(1, 3), d.int(1, 4)
    cont = labels(1, n, classes=2) if d.chance(0.7) else uniform(1, n, low=0.0, high=1.0)
    inputs = {"c_prev": normal(1, n, dim), "gates": normal(1, n, 4 * dim, scale=1.5),
              "cont": cont}
    return net_case(name, "LSTMUnit", inputs,
                    [L("layer", "LSTMUnit", ["c_prev", "gates", "cont"], ["c", "h"])])


def draw_recurrent(type_):
    def draw(d, name):
        t, n, out = d.int(1, 4), d.int(1, 3), d.int(1, 4)
        inputs = {"x": normal(t, n, *d.shape(1, 2, 1, 3)), "cont": labels(t, n, classes=2)}
        if d.chance(0.4):
            inputs["x_static"] = normal(n, *d.shape(1, 2, 1, 3))
        tops = ["out"]
        expose = d.chance(0.4)
        if expose:
            inputs["h0"] = normal(1, n, out)
            tops.append("hT")
            if type_ == "LSTM":
                inputs["c0"] = normal(1, n, out)
                tops.append("cT")
        fields = f"num_output: {out} " + ("expose_hidden: true " if expose else "")
        return net_case(name, type_, inputs,
                        [L("layer", type_, list(inputs), tops,
                           f"recurrent_param {{ {fields}}}")])
    return draw


def _loss_weight(d):
    return opt(d, 0.4, f"loss_weight: {d.pick(0.5, 2.0, 0.0, -1.0)} ")


def draw_softmax_loss(d, name):
    shape = d.shape(2, 4, 1, 4)
    shape[1] = max(shape[1], 2)
    n = len(shape)
    axis = d.int(-n, n - 1) if d.chance(0.3) else 1
    a = axis + n if axis < 0 else axis
    classes = shape[a]
    label_shape = shape[:a] + shape[a + 1:]
    ignore = d.pick(None, None, 255, d.int(0, classes - 1))
    lab = labels(*label_shape, classes=classes)
    if ignore is not None:
        lab.update(ignore_label=ignore, ignore_frac=0.3)
    loss_fields = (("" if ignore is None else f"ignore_label: {ignore} ")
                   + opt(d, 0.5, f"normalization: {d.pick('FULL', 'VALID', 'BATCH_SIZE', 'NONE')} ")
                   + opt(d, 0.15, f"normalize: {d.pick('true', 'false')} "))
    body = (_loss_weight(d) + (f"softmax_param {{ axis: {axis} }} " if axis != 1 else "")
            + (f"loss_param {{ {loss_fields}}}" if loss_fields else ""))
    return net_case(name, "SoftmaxWithLoss",
                    {"data": normal(*shape, scale=d.pick(1.0, 3.0)), "label": lab},
                    [L("layer", "SoftmaxWithLoss", ["data", "label"], "loss", body)],
                    backward="loss")


def draw_euclidean(d, name):
    shape = d.shape(1, 4, 1, 4)
    other = [shape[0], int(np.prod(shape[1:]))] if d.chance(0.3) else shape
    return net_case(name, "EuclideanLoss", {"a": normal(*shape), "b": normal(*other)},
                    [L("layer", "EuclideanLoss", ["a", "b"], "loss", _loss_weight(d))],
                    backward="loss")


def draw_sigmoid_ce(d, name):
    """The reference build has neither ignore_label nor normalization here (BATCH_SIZE)."""
    shape = d.shape(1, 4, 1, 4)
    lab = uniform(*shape, low=0.0, high=1.0) if d.chance(0.5) else labels(*shape, classes=2)
    return net_case(name, "SigmoidCrossEntropyLoss",
                    {"data": normal(*shape, scale=3.0), "label": lab},
                    [L("layer", "SigmoidCrossEntropyLoss", ["data", "label"], "loss",
                       _loss_weight(d))], backward="loss")


def draw_hinge(d, name):
    shape = d.shape(2, 4, 1, 4)
    dim = int(np.prod(shape[1:]))
    body = _loss_weight(d) + opt(d, 0.5, f"hinge_loss_param {{ norm: {d.pick('L1', 'L2')} }}")
    return net_case(name, "HingeLoss", {"data": normal(*shape, scale=1.5),
                                        "label": labels(shape[0], classes=dim)},
                    [L("layer", "HingeLoss", ["data", "label"], "loss", body)], backward="loss")


def draw_multinomial(d, name):
    n, c = d.int(1, 5), d.int(1, 5)
    data = uniform(n, c, low=0.0, high=1.0) if d.chance(0.7) else ties(n, c, low=0, high=1)
    return net_case(name, "MultinomialLogisticLoss",
                    {"data": data, "label": labels(n, classes=c)},
                    [L("layer", "MultinomialLogisticLoss", ["data", "label"], "loss",
                       _loss_weight(d))], backward="loss")


def draw_contrastive(d, name):
    n, c = d.int(1, 6), d.int(1, 4)
    body = _loss_weight(d) + opt(d, 0.6, "contrastive_loss_param { "
                                 + opt(d, 0.6, f"margin: {d.pick(0.5, 2.0, 0.1)} ")
                                 + opt(d, 0.5, f"legacy_version: {d.pick('true', 'false')} ") + "}")
    return net_case(name, "ContrastiveLoss",
                    {"a": normal(n, c, 1, 1, scale=0.6), "b": normal(n, c, 1, 1, scale=0.6),
                     "y": labels(n, 1, 1, 1, classes=2)},
                    [L("layer", "ContrastiveLoss", ["a", "b", "y"], "loss", body)],
                    backward="loss")


def draw_infogain(d, name):
    """As cases_losses: the reference build's InfogainLoss takes probabilities and divides by
    N; the runtime runs BVLC master's same computation (``runtime_prototxt``)."""
    n, k = d.int(1, 5), d.int(2, 5)
    weight = _loss_weight(d)
    inputs = {"data": normal(n, 3), "label": labels(n, classes=k),
              "H": uniform(1, 1, k, k, low=0.0, high=2.0)}
    ip = L("ip", "InnerProduct", "data", "scores", f"inner_product_param {{ num_output: {k} }}")
    case = net_case(name, "InfogainLoss", inputs,
                    [ip, L("softmax", "Softmax", "scores", "prob"),
                     L("layer", "InfogainLoss", ["prob", "label", "H"], "loss", weight)],
                    backward="loss", force_backward=False)
    case.update(runtime_prototxt=net_text(name, inputs, [
        ip, L("layer", "InfogainLoss", ["scores", "label", "H"], ["loss", "prob"],
              (weight or "loss_weight: 1 ") + "loss_weight: 0 "
              "loss_param { normalization: BATCH_SIZE }")], False), no_diff=["prob"])
    return case


DRAWS = {
    "BatchNorm": draw_batch_norm, "Scale": draw_scale, "Bias": draw_bias, "MVN": draw_mvn,
    "PReLU": draw_prelu, "Deconvolution": draw_conv("Deconvolution"),
    "Convolution": draw_conv("Convolution"), "Crop": draw_crop,
    "Slice": draw_slice, "Reshape": draw_reshape, "Tile": draw_tile, "SPP": draw_spp,
    "ArgMax": draw_argmax, "Reduction": draw_reduction, "Filter": draw_filter,
    "BatchReindex": draw_batch_reindex, "Power": draw_power, "Exp": draw_exp, "Log": draw_log,
    "ELU": draw_elu, "Threshold": draw_threshold, "Embed": draw_embed, "Im2col": draw_im2col,
    "LSTMUnit": draw_lstm_unit, "RNN": draw_recurrent("RNN"), "LSTM": draw_recurrent("LSTM"),
    "SoftmaxWithLoss": draw_softmax_loss, "EuclideanLoss": draw_euclidean,
    "SigmoidCrossEntropyLoss": draw_sigmoid_ce, "HingeLoss": draw_hinge,
    "MultinomialLogisticLoss": draw_multinomial, "ContrastiveLoss": draw_contrastive,
    "InfogainLoss": draw_infogain,
}


def draw_cases(types, count, seed):
    cases = []
    for type_ in types:
        for i in range(count):
            name = f"rand_{type_}_{seed}_{i}"
            case = DRAWS[type_](Draw(seed, type_, i), name)
            case["phase"] = case.get("phase", "TEST")
            cases.append(case)
    return cases


# ============================================================================ Caffe half

def caffe_half(work: Path) -> int:
    """Run every case of WORK/cases.json without a WORK/caffe/<name>.npz; print START/DONE
    lines (the parent reads them to know which case an abort belongs to)."""
    import make_fixtures
    from pycaffe_import import import_caffe
    caffe = import_caffe()
    out = work / "caffe"
    out.mkdir(exist_ok=True)
    runner = make_fixtures.CaffeRunner(caffe, work, out)
    for case in json.loads((work / "cases.json").read_text()):
        if (out / f"{case['name']}.npz").exists() or (out / f"{case['name']}.refused").exists():
            continue
        print("START", case["name"], flush=True)
        try:
            runner.run(case)
        except Exception as err:      # pycaffe's own Python errors: the tool's, not a refusal
            (out / f"{case['name']}.error").write_text(f"{type(err).__name__}: {err}")
        print("DONE", case["name"], flush=True)
    return 0


def fatal_line(stderr: str, returncode: int) -> str:
    """glog's FATAL message (a CHECK that failed: Caffe refuses), else "crashed: ..." (a
    signal or glibc's abort on a corrupted heap: Caffe has no check there)."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    for x in reversed(lines):
        if x.startswith("F") and "] " in x:
            return x.split("] ", 1)[1]
    try:
        how = signal.Signals(-returncode).name
    except ValueError:
        how = f"exit status {returncode}"
    return f"crashed: {how}" + (f" ({lines[-1]})" if lines else "")


def run_caffe(work: Path) -> None:
    prefix = os.environ.get("CAFFE_PREFIX", "/opt/reference-caffe")
    python = os.environ.get("CAFFE_PYTHON", "/usr/bin/python3")
    env = dict(os.environ, PYTHONPATH=f"{prefix}/python", GLOG_minloglevel="2")
    env.pop("VIRTUAL_ENV", None)
    out = work / "caffe"
    out.mkdir(exist_ok=True)
    while True:
        proc = subprocess.run([python, __file__, "caffe", str(work)], env=env,
                              capture_output=True, text=True)
        started = [x.split(" ", 1)[1] for x in proc.stdout.splitlines() if x.startswith("START")]
        done = {x.split(" ", 1)[1] for x in proc.stdout.splitlines() if x.startswith("DONE")}
        if proc.returncode == 0:
            return
        running = [n for n in started if n not in done]
        if not running:
            raise SystemExit(f"the Caffe half failed before any case:\n{proc.stderr[-3000:]}")
        (out / f"{running[-1]}.refused").write_text(fatal_line(proc.stderr, proc.returncode))


# ============================================================================ runtime half

def caffe_result(work: Path, name: str):
    base = work / "caffe" / name
    for suffix in (".refused", ".error"):
        if base.with_suffix(suffix).exists():
            return suffix[1:], base.with_suffix(suffix).read_text().strip()
    return "ok", str(base.with_suffix(".npz"))


def run_ours(case):
    """Build, feed and run ``case`` in the runtime (forward and backward as Caffe's run_net);
    returns the net and the inputs."""
    import torch
    from runtime.net import Net
    from runtime.proto import pb

    net = Net(case.get("runtime_prototxt", case["prototxt"]), getattr(pb, case["phase"]))
    for layer, views in net.params.items():
        for i, view in enumerate(views):
            w = ff.make_weight(case["name"], layer, i, tuple(view.shape), case["weight_mode"])
            view.data.copy_(torch.from_numpy(w))
    inputs = {k: ff.make_input(case["name"], k, spec) for k, spec in case["inputs"].items()}
    net.forward(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    ff.backward_as_caffe(case["name"], net, case["backward"],
                         case["top_diffs"] or net.outputs)
    return net, inputs


def _np(t):
    return t.detach().float().cpu().numpy()


def compare(case, net, z, meta) -> dict:
    """{entry: relative error} over Caffe's recorded entries (inf where ours is missing)."""
    errors = {}
    shapes = {b: list(net.blobs[b].shape) for b in net.blobs}
    if shapes != meta["blob_shapes"]:
        errors["blob shapes"] = float("inf")
        errors["blob shapes: " + json.dumps({b: (shapes.get(b), s) for b, s in
                                            meta["blob_shapes"].items()
                                            if shapes.get(b) != s})] = float("inf")
        return errors

    def param(key, field):
        layer, i = key.rsplit(":", 1)
        views = net.params.get(layer)
        return getattr(views[int(i)], field) if views is not None and int(i) < len(views) else None

    getters = {"fwd:": lambda n: net.blobs[n].data if n in net.blobs else None,
               "diff:": lambda n: net.blobs[n].diff if n in net.blobs else None,
               "grad:": lambda n: param(n, "diff"), "param:": lambda n: param(n, "data")}
    for prefix, get in getters.items():
        for key in ff.entry_keys(z.files, prefix):
            value = get(key[len(prefix):])
            try:
                errors[key] = (float("inf") if value is None
                               else _error(_np(value), z, key))
            except AssertionError:
                errors[key] = float("inf")
    return errors


def _error(a, z, key):
    """rel_error, where NaN at the same places in both counts as equal, and two gradients
    that are both within NEAR_ZERO of 0 agree: a gradient that is 0 in exact arithmetic (MVN's or
    BatchNorm's over 2 values, from O(1) top diffs) is rounding noise on both sides."""
    if key not in z.files:
        return ff.rel_error(a, z, key)
    b = np.asarray(z[key], dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if not b.size:
        return 0.0
    both = np.isnan(a) & np.isnan(b)
    a, b = np.where(both, 0, a), np.where(both, 0, b)
    if not np.all(np.isfinite(a) == np.isfinite(b)):
        return float("inf")
    finite = np.isfinite(b)
    if np.any(a[~finite] != b[~finite]):
        return float("inf")
    a, b = a[finite], b[finite]
    if not b.size:
        return 0.0
    scale = float(np.abs(b).max())
    gradient = key.startswith(("diff:", "grad:"))
    if gradient and scale < NEAR_ZERO and float(np.abs(a).max()) < NEAR_ZERO:
        return 0.0
    return float(np.abs(a - b).max()) / max(scale, ff.TINY)


def compare_onnx(case, net, inputs, z, meta) -> tuple[str, float]:
    """The export of the tested layer's tops (``build_model``, dynamic batch; where that
    refuses, the case's batch as a static one) run in onnxruntime, optimisations off and on:
    ('ok' | 'ok (static batch)' | 'refused: ...' | 'skipped', worst error against Caffe)."""
    from runtime.errors import AllconvError
    from runtime.export import build_model, check

    outputs = [t for t in net.top_names.get("layer", []) if not meta["loss_weights"].get(t)]
    if not outputs or case["phase"] != "TEST":
        return "skipped", 0.0
    try:
        model, _ = build_model(net, outputs=outputs)
        status = "ok"
    except AllconvError as err:
        batch = {len(v) for v in inputs.values() if v.ndim}
        try:
            model, _ = build_model(net, outputs=outputs, static_batch=min(batch))
        except AllconvError:
            return f"refused: {err}", 0.0
        status = "ok (static batch)"
    feeds = {i.name: inputs[i.name] for i in model.graph.input}
    worst = 0.0
    for level in check.LEVELS.values():
        got = check.session(model, level).run(outputs, feeds)
        for o, v in zip(outputs, got):
            worst = max(worst, _error(np.asarray(v, np.float32), z, f"fwd:{o}"))
    return status, worst


def check_case(work: Path, case) -> dict:
    from runtime.errors import AllconvError

    status, detail = caffe_result(work, case["name"])
    res = {"name": case["name"], "type": case["group"], "caffe": status, "prototxt":
           case.get("runtime_prototxt", case["prototxt"])}
    if status == "error":
        res.update(verdict="tool error (Caffe side)", detail=detail)
        return res
    try:
        net, inputs = run_ours(case)
    except AllconvError as err:
        msg = str(err)
        res["ours"] = msg
        if status == "refused":
            res.update(verdict=("refusal not one line" if "\n" in msg else
                                "Caffe crashes, we refuse" if detail.startswith("crashed")
                                else "both refuse"), detail=detail)
        else:
            res.update(verdict="we refuse, Caffe accepts")
        return res
    except Exception as err:   # a traceback: always a bug
        import traceback
        res.update(verdict="traceback" + (", Caffe crashes" if detail.startswith("crashed")
                                          else ""), ours=f"{type(err).__name__}: {err}",
                   detail=traceback.format_exc(limit=-3))
        return res
    if status == "refused":
        res.update(verdict="Caffe crashes, we accept" if detail.startswith("crashed")
                   else "we accept, Caffe refuses", detail=detail)
        return res
    with np.load(detail) as z:
        meta = ff.meta_from_npz(z)
        errors = compare(case, net, z, meta)
        try:
            onnx_status, onnx_err = compare_onnx(case, net, inputs, z, meta)
        except Exception as err:
            onnx_status, onnx_err = f"traceback: {type(err).__name__}: {err}", float("inf")
    tol = TOL_LOSS if case["backward"] == "loss" else TOL
    worst = max(errors.values(), default=0.0)
    bad = {k: v for k, v in errors.items() if not v <= tol}
    verdict = ("ok" if not bad else "marginal" if max(bad.values()) <= MARGINAL
               else "mismatch")
    res.update(worst=worst, onnx=onnx_status, onnx_error=onnx_err, verdict=verdict, bad=bad)
    if onnx_status.startswith("traceback") or (onnx_status.startswith("ok")
                                                and not onnx_err <= tol):
        res["verdict"] = "onnx mismatch" if res["verdict"] != "mismatch" else res["verdict"]
    return res


# ============================================================================ driver

def report(results, show_ok: bool) -> None:
    by_type = defaultdict(lambda: defaultdict(int))
    for r in results:
        by_type[r["type"]][r["verdict"]] += 1
        if r["verdict"] not in ("ok", "both refuse", "Caffe crashes, we refuse") or show_ok:
            extra = {k: r[k] for k in ("bad", "ours", "detail", "onnx", "onnx_error")
                     if k in r and r[k] not in ({}, "ok", "skipped", 0.0)}
            print(f"\n[{r['verdict']}] {r['name']}\n{r['prototxt'].split('layer {', 2)[-1]}"
                  f"  {json.dumps(extra, default=str)[:1500]}")
    print("\ncases per type and verdict:")
    for t, counts in by_type.items():
        print(f"  {t:<26} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


def forget_changed(work: Path, cases) -> None:
    """Delete Caffe's results in ``work`` for every case drawn differently than before."""
    old = work / "cases.json"
    before = {c["name"]: c for c in json.loads(old.read_text())} if old.exists() else {}
    for case in cases:
        if before.get(case["name"], case) != case:
            for path in (work / "caffe").glob(f"{case['name']}.*"):
                path.unlink()


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "caffe":
        return caffe_half(Path(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=30, help="cases per layer type")
    ap.add_argument("--types", default=",".join(DRAWS),
                    help=f"comma-separated layer types (default all: {', '.join(DRAWS)})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="folder for the cases and Caffe's results")
    ap.add_argument("--show-ok", action="store_true", help="print agreeing cases too")
    args = ap.parse_args(argv)
    types = [t for t in args.types.split(",") if t]
    unknown = [t for t in types if t not in DRAWS]
    if unknown:
        ap.error(f"unknown type(s) {', '.join(unknown)}; valid: {', '.join(DRAWS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="random_layer_check_"))
    work.mkdir(parents=True, exist_ok=True)
    cases = draw_cases(types, args.cases, args.seed)
    forget_changed(work, cases)
    (work / "cases.json").write_text(json.dumps(cases))
    run_caffe(work)
    sys.path.insert(0, str(REPO))
    import warnings
    from runtime.layers import NoFillerWarning
    warnings.simplefilter("ignore", NoFillerWarning)
    results = [check_case(work, c) for c in cases]
    (work / "report.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, args.show_ok)
    print(f"\n{len(results)} cases; report in {work / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
