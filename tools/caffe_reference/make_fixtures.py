#!/usr/bin/env python3
"""Make the reference fixtures (tests/fixtures/*.npz) from real BVLC Caffe.

Run through ``tools/caffe_reference/make_fixtures.sh``, which calls this script twice:

``make_fixtures.py venv WORKDIR [--only SUBSTRING ...]``
    under the project's venv: renders every generated network (train/test and deploy form)
    and the All-CNN-C solver into WORKDIR/gen/, and saves ``.caffemodel`` files with the
    runtime's ``Net.save`` (seeded weights) for the runtime -> Caffe round trip and for the
    real-world models (WORKDIR/models/, only those ``--only`` selects).
``make_fixtures.py caffe WORKDIR OUTDIR [--only SUBSTRING ...]``
    under Debian's ``/usr/bin/python3`` with ``PYTHONPATH=/opt/reference-caffe/python``:
    runs every case in real Caffe (CPU) and writes one ``OUTDIR/<case>.npz`` per case, plus
    the Caffe-saved ``OUTDIR/caffe_saved_small.caffemodel``.

The file format, the seeded inputs/weights and the sampling of large arrays are in
``tests/fixture_format.py`` (shared with ``tests/test_caffe_fixtures.py``).

Case kinds (``meta["kind"]``):

* ``net``: a prototxt with Input layers, seeded inputs and weights; records every blob's
  forward value (``fwd:``), every blob's diff after backward (``diff:``, but the blobs a case
  lists in ``no_diff``) and every parameter's gradient (``grad:<layer>:<i>``). A case whose
  layer the reference build implements differently from BVLC master also carries
  ``runtime_prototxt``, the same computation in master's terms, which the runtime runs. Backward is either from the loss layers (their loss_weight
  seeds the diffs) or, for nets without a loss, from seeded diffs written into the output
  blobs (``force_backward: true`` so Caffe runs it). Blobs Caffe computes no diff for (labels,
  loss tops) are not recorded. The 14 generated networks (Data -> Input, Accuracy dropped,
  TEST phase) also record their ReLU inputs within KINK_TAU of zero (``kink:``), and keep
  NET_SAMPLE_SIZE samples per large array. With ``params_after_forward`` a case also records
  every learnable blob's value after the forward (``param:<layer>:<i>``: BatchNorm's TRAIN
  statistics).
* ``filler``: Caffe fills a big blob with a filler under ``caffe.set_random_seed``; records
  its mean, std, min and max.
* ``solver``: a solver with its net inline (``net_param``), seeded initial weights, fixed
  inputs fed through Input layers; records the weights after each of K ``step(1)`` calls
  (All-CNN-C: a new seeded batch of 8 before each of 20 steps, Dropout removed, and the
  ReLU kinks of every step). With ``snapshot_at`` k, Caffe's own snapshot after step k is
  kept as bytes (``file:solverstate``, ``file:caffemodel``), and Caffe also restores the
  runtime's snapshot after step k (written by the venv step) and steps on (``resumed<k>:``).

* ``sequence``: a net with Input layers and seeded weights, run through ``steps``: before each
  step every input is reshaped to its spec's shape and refilled (tag ``@<k>``), then the net is
  reshaped and, unless the step says ``forward: false``, run forward; records every other blob
  after each forward (``fwd<k>:<blob>``): what a layer keeps from one forward to the next
  (the recurrent layers' states) as the batch shrinks and grows.
* ``data``: a net of data layers (DummyData, HDF5Data over .h5 files the venv step writes with
  h5py, HDF5Output, MemoryData through ``set_input_arrays``) run a few times; records every top
  after each forward (``fwd<k>:<blob>``) and HDF5Output's file as bytes (``file:output``).

pycaffe comes from ``pycaffe_import.import_caffe`` (stand-ins for the packages of its image
helpers where they are not installed).
* ``roundtrip_runtime``: Caffe loads a ``.caffemodel`` written by the runtime's ``Net.save``
  and records the outputs; ``roundtrip_caffe``: Caffe writes ``caffe_saved_small.caffemodel``
  (weights from Caffe's own fillers) and records its weights and outputs.
* ``exp_log_constants``: Exp's and Log's setup constants, each read out of a one-layer net
  whose single input makes a top or bottom diff equal it exactly: Exp's forward at x = 0 is
  base^shift (``outer_scale``), its backward at x = 0 with shift 0 and top diff 1 is
  ln(base)·scale (``inner_scale``); Log's backward at x = 1 with scale 1, shift 0 and top diff 1
  is 1/ln(base) (``base_scale``).
* ``model``: a real-world model's published prototxt (tests/fixtures/models/, see
  ``cases_models.py``) with seeded weights from the runtime's ``Net.save`` file; Caffe
  reshapes its inputs, runs forward and records the blobs the case names (``fwd:``), its
  layers and every blob's shape.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import fixture_format as ff  # noqa: E402
from case_kit import (NET_SAMPLE_SIZE, L, conv, input_layer, labels, net_case,  # noqa: E402
                      net_text, normal, pool, ties)
from pycaffe_import import import_caffe  # noqa: E402

import cases_python  # noqa: E402

CIFAR_BATCH = 2
ALLC_SOLVER_BATCH = 8
ALLC_SOLVER_STEPS = 20
ALLC_SOLVER_RECORD = (1, 2, 3, 5, 10, 15, 20)
SOLVER_STEPS = 8
# Whole networks: ReLU inputs within KINK_TAU * max|input| of zero are recorded (flat index and
# Caffe's value), so that the test can give the runtime Caffe's side of the kink there: fp32
# rounding (~1e-6 relative) may otherwise put such a value on the other side of zero, flip the
# ReLU's gradient mask and change every gradient below it by O(1). See test_caffe_fixtures.py.
KINK_TAU = 2e-5
ROUNDTRIP_VARIANT = "all-c"
ROUNDTRIP_BATCH = 2


# ============================================================================ the cases

def convolution_cases():
    c = []
    add = lambda name, shape, body, **kw: c.append(net_case(  # noqa: E731
        f"conv_{name}", "Convolution", {"data": normal(*shape)},
        [conv("conv", "data", "out", body)], **kw))
    add("k3_p1", (2, 3, 7, 7), "num_output: 4 kernel_size: 3 pad: 1")
    add("k3_s2_p1_odd", (2, 3, 9, 9), "num_output: 5 kernel_size: 3 stride: 2 pad: 1")
    add("rect", (2, 3, 8, 7), "num_output: 4 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
                              "stride_h: 2 stride_w: 1")
    add("group2", (2, 4, 6, 6), "num_output: 6 kernel_size: 3 pad: 1 group: 2")
    add("depthwise", (2, 4, 5, 5), "num_output: 4 kernel_size: 3 group: 4")
    add("dilation2", (2, 3, 9, 9), "num_output: 4 kernel_size: 3 dilation: 2 pad: 2")
    add("1x1_nobias", (2, 5, 5, 5), "num_output: 3 kernel_size: 1 bias_term: false")
    add("k5_s3_p2", (2, 2, 13, 13), "num_output: 3 kernel_size: 5 stride: 3 pad: 2")
    add("k2_s2_odd", (1, 3, 6, 5), "num_output: 4 kernel_size: 2 stride: 2")
    add("k11_s4", (1, 3, 31, 31), "num_output: 8 kernel_size: 11 stride: 4")
    # channel axis 2: the two axes before it are Caffe's num (export folds and unfolds them)
    add("axis2_5d", (2, 2, 3, 5, 6), "num_output: 4 kernel_size: 3 pad: 1 stride: 2 axis: 2")
    # C++ integer division truncates toward zero: a window overhanging the padded input by
    # less than a stride still gives an output, its missing values read as zeros
    add("overhang_trunc", (2, 2, 1, 6), "num_output: 3 kernel_size: 4 stride: 2 pad: 1")
    add("overhang_rect", (2, 3, 5, 2), "num_output: 2 kernel_h: 3 kernel_w: 4 stride: 3")
    # N bottoms of one shape give N tops through the same weights (BaseConvolutionLayer)
    c.append(net_case("conv_two_bottoms", "Convolution",
                      {"a": normal(2, 3, 6, 6), "b": normal(2, 3, 6, 6)},
                      [conv("conv", ["a", "b"], ["ca", "cb"], "num_output: 4 kernel_size: 3")]))
    return c


def pooling_cases():
    c = []

    def add(name, shape, body, kind="normal"):
        inp = ties(*shape) if kind == "ties" else normal(*shape)
        c.append(net_case(f"pool_{name}", "Pooling", {"data": inp},
                          [pool("pool", "data", "out", body)]))

    for p in ("MAX", "AVE"):
        q = p.lower()
        add(f"{q}_k3s2_ceil_8", (2, 3, 8, 8), f"pool: {p} kernel_size: 3 stride: 2")
        add(f"{q}_k2s2_pad1_clip_5", (2, 2, 5, 5), f"pool: {p} kernel_size: 2 stride: 2 pad: 1")
        add(f"{q}_k3s2_pad1_7", (2, 2, 7, 7), f"pool: {p} kernel_size: 3 stride: 2 pad: 1")
        add(f"{q}_k3s2_7", (2, 3, 7, 7), f"pool: {p} kernel_size: 3 stride: 2")
        add(f"{q}_k3s2_13", (2, 3, 13, 13), f"pool: {p} kernel_size: 3 stride: 2")
        add(f"{q}_global_7", (2, 3, 7, 7), f"pool: {p} global_pooling: true")
        add(f"{q}_global_13", (2, 3, 13, 13), f"pool: {p} global_pooling: true")
        add(f"{q}_rect", (2, 2, 7, 6), f"pool: {p} kernel_h: 3 kernel_w: 2 stride_h: 2 "
                                       f"stride_w: 1 pad_h: 1 pad_w: 0")
        # a pad on one axis drops the other axis's last window too (pad_h || pad_w)
        add(f"{q}_pad_w_only_drops_h", (2, 2, 8, 5), f"pool: {p} kernel_h: 1 kernel_w: 3 "
                                                     f"stride_h: 3 stride_w: 1 pad_h: 0 pad_w: 1")
    add("max_k2s3_8", (2, 2, 8, 8), "pool: MAX kernel_size: 2 stride: 3")
    add("ave_k2s3_10", (2, 2, 10, 10), "pool: AVE kernel_size: 2 stride: 3")
    add("ave_global_rect", (2, 2, 5, 7), "pool: AVE global_pooling: true")
    add("max_ties_k3s2_9", (2, 3, 9, 9), "pool: MAX kernel_size: 3 stride: 2", "ties")
    add("max_ties_k2s2_6", (2, 2, 6, 6), "pool: MAX kernel_size: 2 stride: 2", "ties")
    add("max_ties_k3s2_pad1_8", (2, 2, 8, 8), "pool: MAX kernel_size: 3 stride: 2 pad: 1",
        "ties")
    add("max_ties_global_5", (2, 3, 5, 5), "pool: MAX global_pooling: true", "ties")
    # MAX's second top, the mask: h·W + w of each maximum (the first among ties), −1 for a
    # window that holds no input (k 1, s 3: the last window starts past the input; forward
    # only, as Caffe's backward writes that window's gradient to bottom_diff[−1])
    for name, shape, body, kind, backward in (
            ("ties_k3s2_pad1_8", (2, 2, 8, 8), "kernel_size: 3 stride: 2 pad: 1", "ties",
             "top_diff"),
            ("rect_pad_h", (2, 2, 7, 6), "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 "
                                         "pad_h: 1 pad_w: 0", "normal", "top_diff"),
            ("k1s3_outside_8", (1, 2, 8, 8), "kernel_size: 1 stride: 3", "normal", "none"),
            ("ties_global_5", (2, 3, 5, 5), "global_pooling: true", "ties", "top_diff")):
        inp = ties(*shape) if kind == "ties" else normal(*shape)
        c.append(net_case(f"pool_max_mask_{name}", "Pooling", {"data": inp},
                          [pool("pool", "data", ["out", "mask"], f"pool: MAX {body}")],
                          backward=backward))
    return c


def elementwise_cases():
    c = []
    c.append(net_case("relu_ties", "ReLU", {"data": ties(2, 3, 4, 5)},
                      [L("relu", "ReLU", "data", "out")]))
    c.append(net_case("relu_leaky_ties", "ReLU", {"data": ties(2, 3, 4, 5)},
                      [L("relu", "ReLU", "data", "out", "relu_param { negative_slope: 0.333 }")]))
    c.append(net_case("relu_inplace_after_conv", "ReLU", {"data": normal(2, 3, 6, 6)},
                      [conv("conv", "data", "conv", "num_output: 4 kernel_size: 3"),
                       L("relu", "ReLU", "conv", "conv", "relu_param { negative_slope: 0.1 }")]))
    # in place, Caffe's backward reads the top's sign: 1, not the slope, for a negative input
    c.append(net_case("relu_inplace_negative_slope", "ReLU", {"data": normal(2, 3, 6, 6)},
                      [conv("conv", "data", "conv", "num_output: 4 kernel_size: 3"),
                       L("relu", "ReLU", "conv", "conv", "relu_param { negative_slope: -0.5 }")]))
    c.append(net_case("dropout_test", "Dropout", {"data": normal(2, 3, 4, 4)},
                      [L("drop", "Dropout", "data", "out", "dropout_param { dropout_ratio: 0.5 }")]))
    c.append(net_case("dropout_inplace_after_conv", "Dropout", {"data": normal(2, 3, 6, 6)},
                      [conv("conv", "data", "conv", "num_output: 4 kernel_size: 3 pad: 1"),
                       L("drop", "Dropout", "conv", "conv", "dropout_param { dropout_ratio: 0.2 }"),
                       L("relu", "ReLU", "conv", "conv")]))
    return c


def inner_product_cases():
    c = []
    add = lambda name, shape, body: c.append(net_case(  # noqa: E731
        f"ip_{name}", "InnerProduct", {"data": normal(*shape)},
        [L("ip", "InnerProduct", "data", "out", f"inner_product_param {{ {body} }}")]))
    add("basic_4d", (2, 3, 4, 5), "num_output: 7")
    add("axis2", (2, 3, 4, 5), "num_output: 6 axis: 2")
    add("nobias_2d", (4, 10), "num_output: 3 bias_term: false")
    add("transpose", (3, 8), "num_output: 5 transpose: true")
    return c


def softmax_cases():
    c = []
    add = lambda name, shape, body="", scale=1.0: c.append(net_case(  # noqa: E731
        f"softmax_{name}", "Softmax", {"data": normal(*shape, scale=scale)},
        [L("softmax", "Softmax", "data", "out", body)]))
    add("2d", (3, 10), scale=3.0)
    add("4d", (2, 5, 3, 4))
    add("axis2", (2, 3, 4, 5), "softmax_param { axis: 2 }")
    return c


def softmax_loss_cases():
    c = []

    def add(name, logits, lab, loss_param="", loss_weight=None):
        body = loss_param
        if loss_weight is not None:
            body = f"loss_weight: {loss_weight}\n" + body
        c.append(net_case(f"swl_{name}", "SoftmaxWithLoss", {"data": logits, "label": lab},
                          [L("loss", "SoftmaxWithLoss", ["data", "label"], "loss", body)],
                          backward="loss"))

    add("default_2d", normal(4, 10, scale=2.0), labels(4, classes=10))
    add("loss_weight_2p5", normal(5, 6), labels(5, classes=6), loss_weight=2.5)
    for norm in ("FULL", "VALID", "BATCH_SIZE", "NONE"):
        add(f"{norm.lower()}_ignore_spatial", normal(2, 5, 3, 3),
            labels(2, 3, 3, classes=5, ignore_label=255, ignore_frac=0.3),
            f"loss_param {{ ignore_label: 255 normalization: {norm} }}",
            loss_weight=0.5 if norm == "NONE" else None)
    add("valid_ignore_valid_class", normal(6, 4), labels(6, classes=4),
        "loss_param { ignore_label: 1 }")
    add("normalize_false_legacy", normal(2, 5, 3, 3),
        labels(2, 3, 3, classes=5, ignore_label=255, ignore_frac=0.3),
        "loss_param { ignore_label: 255 normalize: false }")
    add("flt_min_clamp", normal(4, 5, scale=60.0), labels(4, classes=5))
    # (SoftmaxWithLoss with a second "prob" top cannot be built in Caffe: LossLayer adds one
    # loss_weight, SetLossWeights then wants one per top; explicit weights break the internal
    # Softmax layer, which copies them. Several tops are covered by Split and Accuracy.)
    return c


def accuracy_cases():
    c = []

    def add(name, scores, lab, body="", tops=("accuracy",)):
        c.append(net_case(f"accuracy_{name}", "Accuracy", {"data": scores, "label": lab},
                          [L("accuracy", "Accuracy", ["data", "label"], list(tops), body)],
                          backward="none"))

    add("top1", normal(6, 5), labels(6, classes=5))
    add("top2_ties", ties(8, 5, low=0, high=2), labels(8, classes=5),
        "accuracy_param { top_k: 2 }")
    add("ignore_per_class", normal(10, 4), labels(10, classes=4, ignore_label=2, ignore_frac=0.2),
        "accuracy_param { ignore_label: 2 }", tops=("accuracy", "per_class"))
    add("spatial_top3", normal(2, 5, 3, 3), labels(2, 3, 3, classes=5),
        "accuracy_param { top_k: 3 }")
    return c


def lrn_cases():
    c = []
    add = lambda name, shape, body, scale=1.0: c.append(net_case(  # noqa: E731
        f"lrn_{name}", "LRN", {"data": normal(*shape, scale=scale)},
        [L("lrn", "LRN", "data", "out", f"lrn_param {{ {body} }}")]))
    add("across_default", (2, 7, 4, 5), "")
    add("across_k2", (2, 6, 3, 3), "local_size: 3 alpha: 0.5 beta: 0.6 k: 2", scale=2.0)
    add("within", (2, 3, 6, 7), "norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.5 beta: 0.75",
        scale=2.0)
    add("within_k_ignored", (2, 2, 7, 7),
        "norm_region: WITHIN_CHANNEL local_size: 5 alpha: 2 beta: 0.75 k: 3", scale=2.0)
    # α ≤ 0, which onnxruntime's LRN refuses: x·k^−β, and a base below k
    add("across_alpha0", (2, 5, 3, 3), "local_size: 3 alpha: 0 beta: 0.75 k: 2")
    add("across_alpha_negative", (2, 6, 3, 4), "local_size: 5 alpha: -0.2 beta: 0.6 k: 3")
    return c


def structure_cases():
    c = []
    c.append(net_case("concat_axis1", "Concat", {"a": normal(2, 3, 4, 4), "b": normal(2, 2, 4, 4)},
                      [L("concat", "Concat", ["a", "b"], "out")]))
    c.append(net_case("concat_axis0", "Concat", {"a": normal(2, 3, 3), "b": normal(1, 3, 3)},
                      [L("concat", "Concat", ["a", "b"], "out", "concat_param { axis: 0 }")]))
    three = {"a": normal(2, 3, 4, 4), "b": normal(2, 3, 4, 4), "c": normal(2, 3, 4, 4)}
    c.append(net_case("eltwise_sum_coeff", "Eltwise", three,
                      [L("eltwise", "Eltwise", ["a", "b", "c"], "out",
                         "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }")]))
    c.append(net_case("eltwise_sum_default", "Eltwise",
                      {"a": normal(2, 3, 4, 4), "b": normal(2, 3, 4, 4)},
                      [L("eltwise", "Eltwise", ["a", "b"], "out")]))
    c.append(net_case("eltwise_prod", "Eltwise", three,
                      [L("eltwise", "Eltwise", ["a", "b", "c"], "out",
                         "eltwise_param { operation: PROD }")]))
    c.append(net_case("eltwise_max_ties", "Eltwise",
                      {"a": ties(2, 3, 4, 4), "b": ties(2, 3, 4, 4), "c": ties(2, 3, 4, 4)},
                      [L("eltwise", "Eltwise", ["a", "b", "c"], "out",
                         "eltwise_param { operation: MAX }")]))
    c.append(net_case("flatten_default", "Flatten", {"data": normal(2, 3, 4, 5)},
                      [L("flatten", "Flatten", "data", "out")]))
    c.append(net_case("flatten_axis1_end2", "Flatten", {"data": normal(2, 3, 4, 5)},
                      [L("flatten", "Flatten", "data", "out",
                         "flatten_param { axis: 1 end_axis: 2 }")]))
    c.append(net_case("split_explicit", "Split", {"data": normal(2, 3, 5, 5)},
                      [L("split", "Split", "data", ["s1", "s2"]),
                       conv("conv", "s1", "c", "num_output: 2 kernel_size: 3"),
                       L("relu", "ReLU", "s2", "r", "relu_param { negative_slope: 0.2 }")]))
    c.append(net_case("split_implicit_blob_used_twice", "Split", {"data": normal(2, 3, 6, 6)},
                      [conv("conv", "data", "c", "num_output: 4 kernel_size: 3 pad: 1"),
                       L("relu", "ReLU", "c", "r"),
                       pool("pool", "c", "p", "pool: MAX kernel_size: 3 stride: 2")]))
    # Every layer type together, with in-place layers and a loss that is not weighted 1.
    c.append(net_case(
        "mininet_all_layers", "Mixed",
        {"data": normal(2, 3, 11, 11), "label": labels(2, classes=5)},
        [conv("conv1", "data", "conv1", "num_output: 6 kernel_size: 3 pad: 1 group: 3"),
         L("relu1", "ReLU", "conv1", "conv1", "relu_param { negative_slope: 0.1 }"),
         L("norm1", "LRN", "conv1", "norm1", "lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 }"),
         pool("pool1", "norm1", "pool1", "pool: MAX kernel_size: 3 stride: 2"),
         conv("conv2a", "pool1", "conv2a", "num_output: 4 kernel_size: 1"),
         conv("conv2b", "pool1", "conv2b", "num_output: 4 kernel_size: 3 pad: 1"),
         L("drop2", "Dropout", "conv2b", "conv2b", "dropout_param { dropout_ratio: 0.5 }"),
         L("cat", "Concat", ["conv2a", "conv2b"], "cat"),
         L("sum", "Eltwise", ["conv2a", "conv2b"], "sum",
           "eltwise_param { coeff: 0.5 coeff: 1.5 }"),
         pool("pool2", "cat", "pool2", "pool: AVE kernel_size: 3 stride: 2 pad: 1"),
         L("flat", "Flatten", "pool2", "flat"),
         L("fc_a", "InnerProduct", "flat", "fc_a", "inner_product_param { num_output: 5 }"),
         pool("gp", "sum", "gp", "pool: AVE global_pooling: true"),
         L("fc_b", "InnerProduct", "gp", "fc_b", "inner_product_param { num_output: 5 }"),
         L("logits", "Eltwise", ["fc_a", "fc_b"], "logits"),
         L("loss", "SoftmaxWithLoss", ["logits", "label"], "loss", "loss_weight: 3")],
        backward="loss"))
    # Caffe's backward bookkeeping: a loss top read by a later layer (that layer's backward
    # overwrites the loss weight in its diff), propagate_down where no backward runs or where
    # nothing below learns
    xy = {"x": normal(4, 3), "label": labels(4, classes=3)}
    add = lambda name, inputs, layers: c.append(net_case(  # noqa: E731
        name, "backward", inputs, layers, backward="loss", force_backward=False))
    add("loss_top_read_by_a_layer", xy,
        [L("ip", "InnerProduct", "x", "ip", "inner_product_param { num_output: 3 }"),
         L("loss", "SoftmaxWithLoss", ["ip", "label"], "loss"),
         L("pow", "Power", "loss", "p", "power_param { power: 2 scale: 0.5 } loss_weight: 0.25")])
    add("loss_top_read_by_a_layer_weighted", xy,
        [L("ip", "InnerProduct", "x", "ip", "inner_product_param { num_output: 3 }"),
         L("loss", "SoftmaxWithLoss", ["ip", "label"], "loss", "loss_weight: 2"),
         L("pow", "Power", "loss", "p", "power_param { power: 2 scale: 0.5 } loss_weight: 0.25")])
    add("loss_top_read_by_a_layer_without_loss", xy,      # Caffe: no backward at all
        [L("ip", "InnerProduct", "x", "ip", "inner_product_param { num_output: 3 }"),
         L("loss", "SoftmaxWithLoss", ["ip", "label"], "loss"),
         L("pow", "Power", "loss", "p", "power_param { power: 2 }")])
    add("propagate_down_without_backward", xy,
        [L("loss", "SoftmaxWithLoss", ["x", "label"], "loss",
           "propagate_down: true propagate_down: true")])
    add("propagate_down_to_an_input_through_splits", {"x": normal(4, 3), "y": normal(4, 3)},
        [L("ip", "InnerProduct", "x", "ip", "inner_product_param { num_output: 3 }"),
         L("e", "Eltwise", ["ip", "y"], "e", "propagate_down: true propagate_down: true "
           "eltwise_param { operation: PROD } loss_weight: 1"),
         L("t", "TanH", "y", "t", "propagate_down: true loss_weight: 1")])
    return c


# ---------------------------------------------------------------------------- fillers

def filler_cases():
    c = []

    def add(name, filler, layer="conv", note=""):
        if layer == "conv":
            body = conv("layer", "data", "out", "num_output: 256 kernel_size: 3 "
                        + (f"weight_filler {{ {filler} }}" if filler else "")
                        + ' bias_filler { type: "constant" value: 0.25 }')
            inputs = {"data": {"shape": [1, 128, 3, 3], "kind": "normal"}}  # fan_in 1152
        else:
            body = L("layer", "InnerProduct", "data", "out",
                     f"inner_product_param {{ num_output: 300 weight_filler {{ {filler} }} }}")
            inputs = {"data": {"shape": [1, 500], "kind": "normal"}}
        c.append({"kind": "filler", "name": f"filler_{name}", "group": "Filler",
                  "prototxt": net_text(f"filler_{name}", inputs, [body], False),
                  "inputs": inputs, "layer": "layer", "filler": filler, "note": note,
                  "seed": ff.seed_of("filler", name) % 100000})

    add("default_constant0", "")
    add("constant", 'type: "constant" value: 0.37')
    add("gaussian_default_std", 'type: "gaussian"')
    add("gaussian", 'type: "gaussian" mean: 0.5 std: 2')
    add("uniform", 'type: "uniform" min: -0.3 max: 0.7')
    for vn in ("FAN_IN", "FAN_OUT", "AVERAGE"):
        add(f"xavier_{vn.lower()}", f'type: "xavier" variance_norm: {vn}')
        add(f"msra_{vn.lower()}", f'type: "msra" variance_norm: {vn}')
    add("msra_inner_product_fan_out", 'type: "msra" variance_norm: FAN_OUT', layer="ip")
    add("xavier_inner_product", 'type: "xavier"', layer="ip")
    return c


# ---------------------------------------------------------------------------- solvers

DEFAULT_MULTS = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }"


def tiny_solver_net(ip1_params=DEFAULT_MULTS, ip2_params=""):
    inputs = {"data": normal(8, 6), "label": labels(8, classes=3)}
    layers = [
        L("ip1", "InnerProduct", "data", "ip1",
          ip1_params + " inner_product_param { num_output: 5 }"),
        L("relu1", "ReLU", "ip1", "ip1", "relu_param { negative_slope: 0.1 }"),
        L("ip2", "InnerProduct", "ip1", "ip2",
          ip2_params + " inner_product_param { num_output: 3 }"),
        L("loss", "SoftmaxWithLoss", ["ip2", "label"], "loss"),
    ]
    return inputs, net_text("tiny", inputs, layers, force_backward=False)


def shared_solver_net(owner_spec, sharer_spec, sharer_ip=""):
    """Two InnerProducts of one input sharing weights "w", each with its own ParamSpec: a layer
    computes the shared diff when its own lr_mult is non-zero, whatever the owner's."""
    inputs = {"data": normal(8, 6), "label": labels(8, classes=3)}
    layers = [
        L("ip1", "InnerProduct", "data", "ip1",
          owner_spec + " param { lr_mult: 2 decay_mult: 0 } inner_product_param { num_output: 5 }"),
        L("ip1b", "InnerProduct", "data", "ip1b",
          sharer_spec + f" inner_product_param {{ num_output: 5 bias_term: false {sharer_ip}}}"),
        L("sum", "Eltwise", ["ip1", "ip1b"], "sum", "eltwise_param { coeff: 1 coeff: -0.5 }"),
        L("relu1", "ReLU", "sum", "sum", "relu_param { negative_slope: 0.1 }"),
        L("ip2", "InnerProduct", "sum", "ip2", "inner_product_param { num_output: 3 }"),
        L("loss", "SoftmaxWithLoss", ["ip2", "label"], "loss"),
    ]
    return inputs, net_text("shared", inputs, layers, force_backward=False)


def solver_case(name, group, settings, note="", net=None, steps=SOLVER_STEPS, snapshot_at=None):
    inputs, text = net or tiny_solver_net()
    solver = (f"net_param {{\n{textwrap.indent(text, '  ')}}}\n" + textwrap.dedent(settings).strip()
              + "\nmax_iter: 10\ndisplay: 0\nsnapshot: 0\nrandom_seed: 5\nsolver_mode: CPU\n")
    case = {"kind": "solver", "name": f"solver_{name}", "group": group, "solver": solver,
            "inputs": inputs, "weight_mode": "msra", "steps": steps,
            "record": list(range(1, steps + 1)), "feed": "fixed", "note": note,
            "sample_size": ff.SAMPLE_SIZE}
    if snapshot_at:   # Caffe also writes a .solverstate and .caffemodel after that step
        case["snapshot_at"] = snapshot_at
    return case


def solver_cases():
    c = []
    # lr policies: no momentum and no decay, so each step's change is -rate * g: the rate
    # of every iteration reads straight off the weights. Step boundaries fall inside the 8 steps.
    plain = 'type: "SGD" base_lr: 0.2 momentum: 0 weight_decay: 0\n'
    c.append(solver_case("lr_fixed", "lr_policy", plain + 'lr_policy: "fixed"'))
    c.append(solver_case("lr_step", "lr_policy",
                         plain + 'lr_policy: "step" gamma: 0.5 stepsize: 3'))
    c.append(solver_case("lr_multistep", "lr_policy", plain + 'lr_policy: "multistep" gamma: 0.3 '
                         'stepvalue: 2 stepvalue: 5 stepvalue: 6'))
    c.append(solver_case("lr_exp", "lr_policy", plain + 'lr_policy: "exp" gamma: 0.8'))
    c.append(solver_case("lr_inv", "lr_policy", plain + 'lr_policy: "inv" gamma: 0.5 power: 0.75'))
    c.append(solver_case("lr_poly", "lr_policy", plain + 'lr_policy: "poly" power: 2'))
    # (gamma >= 0: BVLC master CHECKs it, as the runtime does; this Caffe build does not)
    c.append(solver_case("lr_sigmoid", "lr_policy", plain + 'lr_policy: "sigmoid" gamma: 1.5 '
                         'stepsize: 4'))
    mom = ('type: "SGD" base_lr: 0.1 momentum: 0.9 weight_decay: 0.05 '
           'lr_policy: "step" gamma: 0.1 stepsize: 4\n')
    c.append(solver_case("momentum_step_down", "momentum", mom))
    c.append(solver_case(
        "lr_decay_mults", "lr_mult/decay_mult", mom,
        net=tiny_solver_net('param { lr_mult: 0 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }',
                            'param { lr_mult: 1 decay_mult: 0 } param { lr_mult: 0 decay_mult: 1 }')))
    c.append(solver_case(
        "lr_mult2_decay1_bias", "lr_mult/decay_mult", mom,
        net=tiny_solver_net('param { lr_mult: 2 decay_mult: 1 } param { lr_mult: 1 decay_mult: 1 }',
                            "")))
    c.append(solver_case("iter_size2", "iter_size", mom + "iter_size: 2"))
    # a shared blob with lr 0 still gets the diff of a layer whose own lr_mult is not 0, and
    # that diff enters the clip_gradients norm (the blob itself never moves)
    c.append(solver_case("shared_owner_lr0_clip", "shared lr_mult", mom + "clip_gradients: 0.05",
                         net=shared_solver_net('param { name: "w" lr_mult: 0 }', 'param { name: "w" }')))
    c.append(solver_case("shared_sharer_lr0_clip", "shared lr_mult", mom + "clip_gradients: 0.05",
                         net=shared_solver_net('param { name: "w" }', 'param { name: "w" lr_mult: 0 }')))
    # Caffe's HDF5 snapshot pair, a shared blob saved once, restored both ways
    c.append(solver_case("hdf5_snapshot", "snapshot_format", mom + "snapshot_format: HDF5",
                         net=shared_solver_net('param { name: "w" }', 'param { name: "w" }'),
                         steps=5, snapshot_at=3))
    # PERMISSIVE: the sharer reads the owner's 5x6 weights as its own 6x5 (transpose: true
    # makes that a real product); its snapshot writes them in its own shape
    c.append(solver_case("shared_permissive", "shared lr_mult", mom + "clip_gradients: 0.05",
                         net=shared_solver_net(
                             'param { name: "w" }',
                             'param { name: "w" share_mode: PERMISSIVE lr_mult: 3 }',
                             sharer_ip="transpose: true "),
                         steps=5, snapshot_at=3))
    # the same with the owner frozen (only the sharer computes the diff) and as an HDF5 pair
    permissive = ('param { name: "w" share_mode: PERMISSIVE }', "transpose: true ")
    c.append(solver_case("shared_permissive_owner_lr0", "shared lr_mult",
                         mom + "clip_gradients: 0.05",
                         net=shared_solver_net('param { name: "w" lr_mult: 0 }', *permissive)))
    c.append(solver_case("hdf5_snapshot_permissive", "snapshot_format",
                         mom + "snapshot_format: HDF5",
                         net=shared_solver_net('param { name: "w" }', *permissive),
                         steps=5, snapshot_at=3))
    c.append(solver_case("clip_gradients", "clip_gradients", mom + "clip_gradients: 0.05"))
    c.append(solver_case("l1", "regularization",
                         mom.replace("weight_decay: 0.05", "weight_decay: 0.02")
                         + 'regularization_type: "L1"'))
    c.append(solver_case("nesterov", "Nesterov", mom.replace('type: "SGD"', 'type: "Nesterov"')))
    c.append(solver_case("nesterov_clip_iter_size", "Nesterov",
                         mom.replace('type: "SGD"', 'type: "Nesterov"')
                         + "clip_gradients: 0.05\niter_size: 2"))
    # a Python layer's blobs learn (lr_mult 2 on its gain, decay_mult 0 on its bias); its code
    # adds to their diffs, over the two passes of iter_size 2
    inputs, layers = cases_python.chain(
        affine_specs="param { lr_mult: 2 } param { lr_mult: 1 decay_mult: 0 }")
    c.append(solver_case("python_iter_size2", "Python", cases_python.SGD + "\niter_size: 2",
                         net=(inputs, net_text("python", inputs, layers, False))))
    return c + adaptive_solver_cases()


# Each adaptive rule twice, 5 steps: (a) L2 decay, every lr_mult/decay_mult combination (lr_mult
# 0 blobs included: decay still reaches their history) and a step schedule, with a snapshot
# (Caffe's .solverstate) after step 3; (b) L1 decay, clip_gradients, iter_size 2, multistep.
ADAPTIVE_RULES = {
    "adam": 'type: "Adam" base_lr: 0.05 momentum: 0.9 momentum2: 0.999 delta: 0.001',
    "adagrad": 'type: "AdaGrad" base_lr: 0.1 delta: 0.001',
    "rmsprop": 'type: "RMSProp" base_lr: 0.02 rms_decay: 0.9 delta: 0.0001',
    "adadelta": 'type: "AdaDelta" base_lr: 1.0 momentum: 0.95 delta: 0.0001',
}
ADAPTIVE_STEPS = 5
ADAPTIVE_SNAPSHOT = 3


def adaptive_solver_cases():
    c = []
    mults = tiny_solver_net('param { lr_mult: 0 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }',
                            'param { lr_mult: 1 decay_mult: 0 } param { lr_mult: 0 decay_mult: 1 }')
    # the diff of the shared lr-0 blob reaches Adam's history though the blob never moves
    c.append(solver_case("adam_shared_owner_lr0", "adam", ADAPTIVE_RULES["adam"]
                         + '\nweight_decay: 0.05 lr_policy: "fixed"',
                         net=shared_solver_net('param { name: "w" lr_mult: 0 }', 'param { name: "w" }'),
                         steps=ADAPTIVE_STEPS, snapshot_at=ADAPTIVE_SNAPSHOT))
    for rule, fields in ADAPTIVE_RULES.items():
        c.append(solver_case(
            f"{rule}_decay_mults_step", rule, fields + '\nweight_decay: 0.05 lr_policy: "step" '
            "gamma: 0.5 stepsize: 2", net=mults, steps=ADAPTIVE_STEPS,
            snapshot_at=ADAPTIVE_SNAPSHOT))
        c.append(solver_case(
            f"{rule}_l1_clip_iter_size", rule, fields + '\nweight_decay: 0.02 '
            'regularization_type: "L1" clip_gradients: 0.05 iter_size: 2 lr_policy: "multistep" '
            "gamma: 0.3 stepvalue: 1 stepvalue: 3", steps=ADAPTIVE_STEPS))
    return c


# ---------------------------------------------------------------------------- data layers

def data_case(name, phase, layers, forwards, note, inputs=None, **extra):
    """A net of data layers run ``forwards`` times; every top recorded after each forward
    (``fwd<k>:<blob>``). Files (``h5_files``, ``list_files``) are written into the case's
    folder, named ff.DIR in the prototxt, by the venv step (h5py) before Caffe runs."""
    text = (input_layer(inputs) if inputs else "") + "".join(layers)
    return dict({"kind": "data", "name": f"data_{name}", "group": "data layers",
                 "prototxt": text, "phase": phase, "forwards": forwards, "inputs": inputs or {},
                 "note": note, "sample_size": ff.SAMPLE_SIZE}, **extra)


def windows(foreground, background) -> list[str]:
    """A window file's lines: image 0 (a.png, 10x12) holds the ``foreground`` windows
    (label, overlap, x1, y1, x2, y2), image 1 (b.png, 9x11) the ``background`` ones."""
    lines = []
    for index, (name, (h, w), boxes) in enumerate(
            (("a.png", (10, 12), foreground), ("b.png", (9, 11), background))):
        lines += [f"# {index}", f"{ff.DIR}/{name}", f"3 {h} {w}", str(len(boxes))]
        lines += [" ".join(str(v) for v in box) for box in boxes]
    return lines


def image_case(name, images, forwards, note, params, transform="", first_label=0,
               grey_too=False):
    """A data case of ImageData over ``images`` (their image_files specs), listed in order
    with labels from ``first_label``; ``grey_too``: a second ImageData reads them grey."""
    d = ff.DIR

    def layer(layer_name, tops, extra):
        return L(layer_name, "ImageData", (), tops,
                 f'image_data_param {{ source: "{d}/list.txt" root_folder: "{d}/" {params}'
                 f'{extra} }} {transform}')
    layers = [layer("images", ["data", "label"], "")]
    if grey_too:
        layers.append(layer("grey", ["grey", "grey_label"], " is_color: false"))
    return data_case(name, "TEST", layers, forwards, note, image_files=images, list_files={
        "list.txt": [f"{image} {first_label + i}" for i, image in enumerate(images)]})


def data_cases():
    d = ff.DIR
    windows_images = {"a.png": (10, 12), "b.png": (9, 11)}
    listed_images = {f"{i}.png": (7, 6) for i in range(4)}
    sized_images = {"tall.png": (9, 4), "wide.png": (3, 8), "square.png": (6, 6),
                    "flat.bmp": (5, 7)}
    exif_images = {"turned6.jpg": {"shape": [5, 9], "orientation": 6},
                   "turned3.jpg": {"shape": [4, 6], "orientation": 3},
                   "turned8.png": {"shape": [3, 7], "orientation": 8},
                   "ink.jpg": {"shape": [6, 5], "mode": "CMYK"},
                   "cut.jpg": {"shape": [24, 20], "keep": 0.6}}
    turned = "4d4d002a000000080001011200030000000100{:02x}000000000000"    # EXIF: orientation
    png_images = {"gamma.png": {"shape": [5, 6], "grey_row": 0, "chunks": [["gAMA", "0000b18f"]]},
                  "srgb.png": {"shape": [4, 7], "grey_row": 1, "chunks": [["sRGB", "00"]]},
                  "deep.png": {"shape": [3, 5], "depth": 16, "grey_row": 2},
                  "deep_gamma.png": {"shape": [6, 4], "depth": 16, "grey_row": 0, "chunks": [
                      ["sBIT", "0c0c0c"], ["gAMA", "0000d903"]]},
                  "quirks.png": {"shape": [3, 8], "chunks": [
                      ["cHRM", ""], ["gAMA", "00030d40", "bad crc"],
                      ["eXIf", turned.format(6)], ["eXIf", turned.format(3)]]}}
    format_images = {"photo.webp": [30, 40], "photo.jp2": [20, 50], "alpha.tif": {"shape": [5, 7], "mode": "RGBA"},
                     "ink.tif": {"shape": [6, 4], "mode": "CMYK"},
                     "raw15.ppm": {"shape": [4, 6], "maxval": 15},
                     "text1000.pgm": {"shape": [5, 3], "maxval": 1000, "ascii": True}}
    resized_images = {"tall.png": (9, 4), "wide.png": (3, 8), "square.png": (6, 6),
                      "twice.png": (10, 18), "line.png": (1, 7), "column.png": (13, 1),
                      "large.png": (31, 40), "same.png": (5, 9), "flat.bmp": (4, 11)}
    dummy = [
        L("dummy", "DummyData", (), ["a", "b"], """dummy_data_param {
            shape { dim: 2 dim: 3 } shape { dim: 4 dim: 1 dim: 5 }
            data_filler { type: "constant" value: 1.5 }
            data_filler { type: "uniform" min: -1 max: 3 } }"""),
        L("legacy", "DummyData", (), ["c", "e"], """dummy_data_param {
            num: 2 channels: 3 channels: 1 height: 1 width: 4 width: 2 }"""),
    ]
    h5 = {"a.h5": {"data": normal(5, 2, 3), "label": labels(5, classes=4, dtype="int32"),
                   "w": dict(normal(5, 1), dtype="float64")},
          "b.h5": {"data": normal(4, 2, 3), "label": labels(4, classes=4, dtype="int32"),
                   "w": dict(normal(4, 1), dtype="float64")}}
    memory_data = {"data": normal(6, 2, 1, 3), "labels": labels(6, classes=5)}
    pixels = {"key": "%05d", "records": [{"shape": [3, 6, 5], "label": i} for i in range(7)]}
    floats = {"key": "%05d", "shuffle": True,
              "records": [{"shape": [2, 4, 4], "label": 10 + i, "floats": True}
                          for i in range(5)]}
    leveldb_sizes = {"key": "%05d", "shuffle": True,
                     "records": [{"shape": [3, 12, 12] if i % 3 else [3, 6, 7], "label": i,
                                  "flat": i % 2 == 0} for i in range(40)]}
    per_batch = {"key": "%05d",         # batches of 2 of one size each: 5x5, 7x6, 4x9
                 "records": [{"shape": [3, *((5, 5), (7, 6), (4, 9))[i // 2]], "label": i}
                             for i in range(6)]}
    sizes = {"key": "%08d_image", "shuffle": True,      # a leaf per few records, overflow pages
             "records": [{"shape": [3, 27, 27] if i % 2 else [3, 9, 9], "label": i % 10}
                         for i in range(30)]}
    return [
        data_case("dummy", "TEST", dummy, 2, "constant tops (shape and legacy dims, default "
                  "filler 0) exact; the uniform top refilled at every forward",
                  random_tops=["b"]),
        data_case("hdf5", "TRAIN", [L("h5", "HDF5Data", (), ["data", "label", "w"],
                                      f'hdf5_data_param {{ source: "{d}/list.txt" '
                                      "batch_size: 4 }")], 4,
                  "two files of 5 and 4 rows (int32 labels, float64 column), batch 4 across "
                  "files and wrapping around", h5_files=h5,
                  list_files={"list.txt": [f"{d}/a.h5", f"  {d}/b.h5"]}),
        data_case("hdf5_output", "TEST", [L("out", "HDF5Output", ["data", "label"], (),
                                            f'hdf5_output_param {{ file_name: "{d}/out.h5" }}')],
                  1, "Caffe's HDF5Output file (bytes) for seeded bottoms",
                  inputs={"data": normal(2, 3, 4), "label": labels(2, classes=3)},
                  output_file="out.h5"),
        data_case("memory", "TRAIN", [L("mem", "MemoryData", (), ["data", "label"],
                                        "memory_data_param { batch_size: 2 channels: 2 "
                                        "height: 1 width: 3 } transform_param { scale: 0.5 }")],
                  4, "set_input_arrays with 6 rows, batch 2, wrapping around; the "
                  "transform_param is not applied (Caffe's Reset warns)",
                  memory_arrays=memory_data),
        data_case("lmdb", "TEST", [
            L("pixels", "Data", (), ["data", "label"],
              f'data_param {{ source: "{d}/pixels" backend: LMDB batch_size: 3 }} '
              "transform_param { scale: 0.5 mean_value: 1 mean_value: 2 mean_value: 3 }"),
            L("floats", "Data", (), ["f"],
              f'data_param {{ source: "{d}/floats" backend: LMDB batch_size: 2 }} '
              "transform_param { crop_size: 3 }")], 4,
                  "LMDBs of Datum records: uint8 data with mean_value and scale, 7 records "
                  "in batches of 3 wrapping around; float_data records written out of key "
                  "order, read in key order, centre-cropped at TEST",
                  lmdb_files={"pixels": pixels, "floats": floats}),
        data_case("leveldb", "TEST", [
            L("pixels", "Data", (), ["data", "label"],
              f'data_param {{ source: "{d}/pixels" batch_size: 4 }} '
              "transform_param { scale: 0.25 mean_value: 7 }"),
            L("sizes", "Data", (), ["s"],
              f'data_param {{ source: "{d}/sizes" backend: LEVELDB batch_size: 3 }} '
              "transform_param { crop_size: 6 }")], 5,
                  "LevelDBs of Datum records (Caffe's default backend, and named): every record "
                  "written twice (an older version with another label in a table file, the "
                  "newer of half the records in the log), deleted keys among them; records of "
                  "two sizes under a TEST crop, Snappy-compressed blocks",
                  leveldb_files={"pixels": pixels, "sizes": leveldb_sizes}),
        data_case("lmdb_sizes", "TEST", [
            L("sizes", "Data", (), ["data", "label"],
              f'data_param {{ source: "{d}/sizes" backend: LMDB batch_size: 4 }} '
              "transform_param { crop_size: 8 }")], 9,
                  "an LMDB of 30 records of two sizes (the larger in overflow pages, a branch "
                  "page over several leaves), one size after the TEST centre crop",
                  lmdb_files={"sizes": sizes}),
        data_case("lmdb_sizes_per_batch", "TEST", [
            L("sizes", "Data", (), ["data", "label"],
              f'data_param {{ source: "{d}/per_batch" backend: LMDB batch_size: 2 }} '
              "transform_param { scale: 0.5 mean_value: 3 }"),
            L("pool", "Pooling", "data", "pool",
              "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")], 4,
                  "an LMDB whose batches are each of one size (5x5, 7x6, 4x9, wrapping to 5x5), "
                  "no crop: Caffe's top takes each batch's first record's size, and the "
                  "pooling below reshapes at every forward",
                  lmdb_files={"per_batch": per_batch}),
        image_case("image_list", listed_images, 3, "ImageData over a list of 4 colour PNGs "
                   "(7x6), BGR, in batches of 3 wrapping around, the TEST centre crop, "
                   "mean_value and scale", "batch_size: 3",
                   "transform_param { crop_size: 4 scale: 0.5 mean_value: 9 mean_value: 8 "
                   "mean_value: 7 }", first_label=3),
        image_case("image_sizes_grey", sized_images, 4, "colour PNGs of three sizes and a BMP "
                   "read grey (libpng's rgb_to_gray for a PNG, cvtColor's for the BMP), "
                   "batch_size 1: the top takes each image's size", "batch_size: 1 is_color: false"),
        image_case("image_resized", resized_images, 3, "images of nine sizes (smaller, larger, "
                   "twice, one pixel wide) resized to 5x9 by OpenCV's bilinear resize",
                   "batch_size: 3 new_height: 5 new_width: 9"),
        image_case("image_exif_cmyk", exif_images, 5, "JPEGs as OpenCV 4.6 reads them: turned "
                   "upright by their EXIF orientation (6, 3, 8), a CMYK one through OpenCV's "
                   "own conversion, one cut short (libjpeg fills its missing blocks), in colour "
                   "and grey", "batch_size: 1", grey_too=True),
        image_case("image_png_gamma", png_images, 5, "PNGs as libpng 1.6 reads them for "
                   "OpenCV 4.6, in colour and grey: grey through libpng's gamma tables (a gAMA "
                   "of 0.45455, an sRGB chunk; 16 bits with an sBIT of 12 and a gAMA of "
                   "0.55555) and at 16 bits (rounded), a row of grey pixels in each; an empty "
                   "cHRM, a gAMA whose CRC fails (both passed over) and two eXIf chunks (the "
                   "first turns the image)", "batch_size: 1", grey_too=True),
        image_case("image_formats", format_images, 6, "OpenCV 4.6's own decoders, in colour "
                   "and grey: a WebP's and a JPEG 2000's grey by cvtColor (15-bit weights), an "
                   "RGBA TIFF's colour times alpha and a CMYK TIFF's as libtiff hands them over, "
                   "a binary PPM of maxval 15 read unscaled, a text PGM of maxval 1000 (16 bits: "
                   "its high byte)",
                   "batch_size: 1", grey_too=True),
        data_case("window_warp", "TRAIN", [
            L("windows", "WindowData", (), ["data", "label"],
              f'window_data_param {{ source: "{d}/windows.txt" batch_size: 4 scale: 0.5 '
              "fg_threshold: 0.5 bg_threshold: 0.2 fg_fraction: 0.5 } "
              "transform_param { crop_size: 6 mean_value: 10 mean_value: 20 "
              "mean_value: 30 }")], 2,
                  "R-CNN's window file: a foreground window (label 2) and a background one "
                  "(label 5 made 0) on two images, one dropped between the thresholds; two "
                  "of each per batch, background first; 6x6 windows warped to crop_size 6 "
                  "(OpenCV's resize copies them), mean_value and window_data_param.scale",
                  image_files=windows_images, list_files={"windows.txt": windows(
                      [(2, 0.9, 2, 1, 7, 6), (1, 0.3, 0, 0, 5, 5)], [(5, 0.1, 3, 2, 8, 7)])}),
        data_case("window_context_square", "TEST", [
            L("windows", "WindowData", (), ["data", "label"],
              f'window_data_param {{ source: "{d}/windows.txt" batch_size: 3 '
              'fg_fraction: 0.34 context_pad: 2 crop_mode: "square" } '
              "transform_param { crop_size: 9 }")], 1,
                  "context_pad 2 and square windows, widened past the images' edges (left "
                  "and bottom, top and right), clipped, the rest of the crop 0; 9x9 widened "
                  "windows, so OpenCV's resize copies them",
                  image_files=windows_images, list_files={"windows.txt": windows(
                      [(4, 0.7, 0, 5, 3, 6)], [(0, 0.0, 6, 0, 9, 3)])}),
        data_case("window_resized", "TEST", [
            L("windows", "WindowData", (), ["data", "label"],
              f'window_data_param {{ source: "{d}/windows.txt" batch_size: 2 '
              "context_pad: 1 } transform_param { crop_size: 7 }")], 1,
                  "windows warped by OpenCV's bilinear resize (5x6 and 8x4 to 7x7 with a "
                  "context_pad)",
                  image_files=windows_images, list_files={
                      "windows.txt": windows([(1, 0.8, 1, 2, 5, 8)], [(0, 0.1, 2, 1, 9, 4)])}),
        data_case("python_source", "TRAIN", cases_python.data_layers("TRAIN"), 3,
                  "a Python data layer drawing its batch in each reshape (set-up's too), 5x6 "
                  "and 7x6 in turn; a Python layer and MAX pooling below, resized at every "
                  "forward; a Python layer's phase (TRAIN) and param_str", group="Python"),
        data_case("python_phase_test", "TEST", cases_python.data_layers("TEST"), 1,
                  "a Python layer's phase (TEST), no param_str", group="Python"),
    ]


def databases_unreadable(caffe) -> str | None:
    """Why the LMDB and LevelDB data cases cannot run here, if they cannot: this Caffe was
    built without them (its Data layer would abort the process), or the lmdb or plyvel
    package (to write them) is missing."""
    library = (Path(caffe.__file__).parent / "_caffe.so").read_bytes()
    for symbol, backend, package in ((b"mdb_env_open", "LMDB", "lmdb"),
                                     (b"leveldb", "LevelDB", "plyvel")):
        if symbol not in library:
            return f"{caffe.__file__}'s _caffe.so was built without {backend}"
        if importlib.util.find_spec(package) is None:
            return f"no {package} package for this python (make_fixtures.sh installs one)"
    return None


def python_layer_missing(caffe) -> str | None:
    """Why the Python layer cases cannot run here, if they cannot: this Caffe was built
    without its Python layer (its layer factory would abort the process)."""
    if "Python" not in caffe.layer_type_list():
        return f"{caffe.__file__}'s Caffe was built without its Python layer"
    return None


def opencv_missing(caffe) -> str | None:
    """Why the ImageData and WindowData cases cannot run here, if they cannot: this Caffe was
    built without OpenCV (its layer factory would abort the process)."""
    if "WindowData" not in caffe.layer_type_list():
        return f"{caffe.__file__}'s Caffe was built without OpenCV"
    return None


def write_leveldb_files(case: dict, folder: Path, caffe_pb2) -> dict:
    """Write a data case's LevelDBs (``leveldb_files``) into ``folder`` with plyvel (the
    binding of LevelDB, which Caffe's convert tools write with): every record first with its
    label + 100, then as it is, and keys deleted among them; the first half compacted into
    table files, the newer versions of the rest in the log; the files' bytes, as npz entries
    ``file:leveldb:<name>/<file>``."""
    import plyvel

    def datum(fields, label_offset=0):
        return caffe_pb2.Datum(**{**fields, "label": fields["label"] + label_offset}) \
            .SerializeToString()
    entries = {}
    for name in case.get("leveldb_files", {}):
        records = ff.datum_records(case, name)
        half = len(records) // 2
        db = plyvel.DB(str(folder / name), create_if_missing=True, block_size=1024)
        for key, fields in records:                 # older versions, and keys to delete
            db.put(key, datum(fields, 100))
            db.put(key + b"_gone", b"deleted below")
        for key, fields in records[:half]:
            db.put(key, datum(fields))
        db.compact_range()                          # into table files (Snappy blocks)
        for key, fields in records[half:]:          # newer than the tables': in the log
            db.put(key, datum(fields))
        for key, _ in records:
            db.delete(key + b"_gone")
        db.close()
        for path in sorted((folder / name).iterdir()):
            if path.name not in ("LOCK", "LOG", "LOG.old"):
                entries[f"file:leveldb:{name}/{path.name}"] = np.frombuffer(path.read_bytes(),
                                                                            np.uint8)
    return entries


def write_lmdb_files(case: dict, folder: Path, caffe_pb2) -> dict:
    """Write a data case's LMDBs (``lmdb_files``) into ``folder`` with the lmdb package (the
    binding of liblmdb, which Caffe's convert tools write with); their data.mdb bytes, as npz
    entries ``file:lmdb:<name>``."""
    import lmdb
    entries = {}
    for name in case.get("lmdb_files", {}):
        env = lmdb.open(str(folder / name), map_size=1 << 26)
        with env.begin(write=True) as txn:
            for key, fields in ff.datum_records(case, name):
                txn.put(key, caffe_pb2.Datum(**fields).SerializeToString())
        env.close()
        data = (folder / name / "data.mdb").read_bytes()
        entries[f"file:lmdb:{name}"] = np.frombuffer(data, np.uint8)
    return entries


# ---------------------------------------------------------------------------- generated nets

def generated_cases(gen_dir: Path):
    variants = json.loads((gen_dir / "variants.json").read_text())
    cases = []
    for v in variants:
        size, batch = v["input_size"], v["batch"]
        raw = (gen_dir / f"{v['name']}.prototxt").read_text()
        inputs = {"data": normal(batch, 3, size, size),
                  "label": labels(batch, classes=v["classes"])}
        cases.append({"kind": "net", "name": f"net_{v['name']}", "group": "network",
                      "scale": "network", "variant": v["name"], "generated_prototxt": raw,
                      "inputs": inputs, "weight_mode": "msra", "backward": "loss",
                      "top_diffs": None, "sample_size": NET_SAMPLE_SIZE,
                      "convert": {"phase": "TEST", "drop": ["Accuracy"], "force_backward": True},
                      "note": "generated train/test net in TEST phase; Data -> Input, "
                              "Accuracy dropped (no backward in Caffe)"})
    raw = (gen_dir / "all-c.prototxt").read_text()
    solver_raw = (gen_dir / "all-c.solver.prototxt").read_text()
    cases.append({"kind": "solver", "name": "solver_all_c_20_steps", "group": "All-CNN-C",
                  "variant": "all-c", "generated_prototxt": raw,
                  "generated_solver": solver_raw,
                  "inputs": {"data": normal(ALLC_SOLVER_BATCH, 3, 32, 32),
                             "label": labels(ALLC_SOLVER_BATCH, classes=10)},
                  "weight_mode": "msra", "steps": ALLC_SOLVER_STEPS,
                  "record": list(ALLC_SOLVER_RECORD), "feed": "per_step", "kinks": True,
                  "sample_size": ff.SAMPLE_SIZE,
                  "convert": {"phase": "TRAIN", "drop": ["Dropout", "Accuracy"],
                              "force_backward": False},
                  "note": "generated All-CNN-C train net, Data -> Input (new batch each step), "
                          "Dropout removed; generated solver with stepvalues 10, 15 and no "
                          "testing/snapshots"})
    return cases


def roundtrip_cases(gen_dir: Path):
    deploy = (gen_dir / f"{ROUNDTRIP_VARIANT}.deploy_b{ROUNDTRIP_BATCH}.prototxt").read_text()
    small_inputs = {"data": normal(2, 3, 9, 9)}
    small = net_text("caffe_saved_small", small_inputs, [
        conv("conv1", "data", "conv1", "num_output: 4 kernel_size: 3 pad: 1",
             'weight_filler { type: "msra" } bias_filler { type: "uniform" min: -0.5 max: 0.5 }'),
        L("relu1", "ReLU", "conv1", "conv1"),
        pool("pool1", "conv1", "pool1", "pool: MAX kernel_size: 3 stride: 2"),
        L("fc", "InnerProduct", "pool1", "fc",
          'inner_product_param { num_output: 6 weight_filler { type: "xavier" } '
          'bias_filler { type: "gaussian" std: 0.3 } }'),
        L("prob", "Softmax", "fc", "prob")], force_backward=False)
    return [
        {"kind": "roundtrip_runtime", "name": "roundtrip_runtime_saved_all_c", "group": "round trip",
         "prototxt": deploy, "inputs": {"data": normal(ROUNDTRIP_BATCH, 3, 32, 32)},
         "weight_mode": "msra", "caffemodel": "runtime_saved.caffemodel",
         "sample_size": ff.SAMPLE_SIZE,
         "note": "runtime Net.save -> caffe.Net(..., weights=) -> outputs"},
        {"kind": "roundtrip_caffe", "name": "roundtrip_caffe_saved_small", "group": "round trip",
         "prototxt": small, "inputs": small_inputs, "caffemodel": "caffe_saved_small.caffemodel",
         "seed": 1234, "sample_size": ff.SAMPLE_SIZE,
         "note": "caffe net.save (Caffe's own fillers) -> runtime Net(weights=) -> outputs"},
    ]


def layer_cases():
    import cases_geometry, cases_losses, cases_neurons, cases_nonfinite, cases_normalization, \
        cases_other  # noqa: E401
    return (convolution_cases() + pooling_cases() + elementwise_cases() + inner_product_cases()
            + softmax_cases() + softmax_loss_cases() + accuracy_cases() + lrn_cases()
            + structure_cases() + cases_geometry.cases() + cases_normalization.cases()
            + cases_neurons.cases() + cases_losses.cases() + cases_other.cases()
            + cases_nonfinite.cases() + cases_python.cases())


def model_cases():
    import cases_models
    return cases_models.cases()


def all_cases(gen_dir: Path):
    return (layer_cases() + filler_cases() + solver_cases() + generated_cases(gen_dir)
            + roundtrip_cases(gen_dir) + data_cases() + model_cases())


# ============================================================================ venv step

def selected(name: str, only: list[str]) -> bool:
    return not only or any(s in name for s in only)


def venv_step(work: Path, only: list[str]) -> None:
    """Render the generated nets and save caffemodels with the runtime (no caffe here);
    write the data cases' files (h5py)."""
    sys.path.insert(0, str(REPO))
    write_data_case_files(work)
    from generator.render import NetOptions, SolverOptions, render_net, render_solver
    from generator.variants import VARIANTS

    gen = work / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    table = []
    for name, variant in VARIANTS.items():
        (gen / f"{name}.prototxt").write_text(render_net(variant, NetOptions()))
        table.append({"name": name, "input_size": variant.input_size,
                      "classes": variant.classes[0],
                      "batch": CIFAR_BATCH if variant.is_cifar else 1})
    (gen / "variants.json").write_text(json.dumps(table, indent=1))
    allc = VARIANTS["all-c"]
    (gen / "all-c.solver.prototxt").write_text(
        render_solver(allc, NetOptions(), SolverOptions(net_path="all-c.prototxt")))
    deploy = render_net(VARIANTS[ROUNDTRIP_VARIANT],
                        NetOptions(deploy=True, deploy_batch=ROUNDTRIP_BATCH))
    (gen / f"{ROUNDTRIP_VARIANT}.deploy_b{ROUNDTRIP_BATCH}.prototxt").write_text(deploy)

    # runtime -> Caffe round trip: the runtime writes the caffemodel Caffe will load.
    from runtime.proto import pb
    try:
        from runtime.net import Net
    except ImportError as err:
        print(f"venv step: WARNING: runtime.net unavailable ({err}); no runtime caffemodel")
        return
    case = roundtrip_cases(gen)[0]
    net = Net(case["prototxt"], pb.TEST)
    import torch
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            blob.data.copy_(torch.from_numpy(ff.make_weight(
                case["name"], layer, i, tuple(blob.data.shape), case["weight_mode"])))
    net.save(str(work / case["caffemodel"]))
    write_runtime_snapshots(work, only)
    write_model_weights(work, only)
    print(f"venv step: rendered {len(table)} networks, saved {case['caffemodel']}")


# The reference build reads at most 512 MiB of protobuf per file (its CodedInputStream limit;
# BVLC Caffe's is 2 GiB), less than FCN-8s's 538 MB of weights: a model's layers are written in
# files of at most this size, which Caffe copies one after another (CopyTrainedLayersFrom).
MODEL_PART_BYTES = 450 * 2**20


def write_model_weights(work: Path, only: list[str]) -> None:
    """Each selected real-world model's seeded weights, written in Caffe's .caffemodel format
    by the runtime's writer (Net.save's) to WORKDIR/models/<case>.<k>.caffemodel."""
    import torch
    from google.protobuf import text_format
    import cases_models
    from runtime.caffemodel import write_weights
    from runtime.net import Net
    from runtime.proto import pb

    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    for case in model_cases():
        if not selected(case["name"], only):
            continue
        text = cases_models.apply_edits(cases_models.caffe_text(case, pb, text_format),
                                        case["runtime_edits"])
        net = Net(text, pb.TEST)
        modes = cases_models.weight_modes(case, ((l.name, l.type_name, len(l.blobs))
                                                 for l in net.layers))
        for layer in net.layers:
            for i, blob in enumerate(layer.blobs):
                blob.data.copy_(torch.from_numpy(ff.make_weight(
                    case["name"], layer.name, i, tuple(blob.shape), modes)))
        parts, size = [[]], 0
        for layer in net.layers:
            blobs = [b.detach().numpy() for b in layer.blobs]
            nbytes = sum(b.nbytes for b in blobs)
            if parts[-1] and size + nbytes > MODEL_PART_BYTES:
                parts.append([])
                size = 0
            parts[-1].append((layer.name, layer.type_name, blobs))
            size += nbytes
        for k, part in enumerate(parts, 1):
            write_weights(folder / f"{case['name']}.{k}.caffemodel", part, net_name=net.name)


def write_runtime_snapshots(work: Path, only: list[str]) -> None:
    """For each selected solver case with ``snapshot_at`` k: the runtime's own solver, k steps
    from the case's weights and inputs, snapshotted into WORKDIR/ours/<case>/ (Caffe restores
    it); an HDF5 snapshot needs h5py in the venv (the case is skipped without it)."""
    import torch
    from runtime.prototxt import read_solver
    from runtime.solver import make_solver

    for case in solver_cases():
        if not case.get("snapshot_at") or not selected(case["name"], only):
            continue
        if hdf5_snapshot(case) and h5py_module() is None:
            print(f"venv step: no h5py in the venv; {case['name']} (an HDF5 snapshot) will be "
                  "skipped")
            continue
        param = read_solver(case["solver"])
        folder = work / "ours" / case["name"]
        folder.mkdir(parents=True, exist_ok=True)
        param.snapshot_prefix = str(folder / "ours")
        solver = make_solver(param, device="cpu")
        for layer, views in solver.net.params.items():
            for i, view in enumerate(views):
                view.data.copy_(torch.from_numpy(ff.make_weight(
                    case["name"], layer, i, tuple(view.shape), case["weight_mode"])))
        for _ in range(case["snapshot_at"]):
            for blob, spec in case["inputs"].items():
                solver.net.blobs[blob].data.copy_(torch.from_numpy(
                    ff.make_input(case["name"], blob, spec)))
            solver.step(1)
        solver.snapshot()


def h5py_module():
    """h5py, or None where the venv lacks it (the cases that need it are then skipped)."""
    try:
        import h5py
    except ImportError:
        return None
    return h5py


def hdf5_snapshot(case: dict) -> bool:
    return "snapshot_format: HDF5" in case.get("solver", "")


def write_data_case_files(work: Path) -> None:
    """Each data case's files into WORKDIR/data/<case>/; those with HDF5 files need h5py in
    the venv (the cases are skipped without it)."""
    h5py = h5py_module()
    skipped = []
    for case in data_cases():
        if case.get("h5_files") and h5py is None:
            skipped.append(case["name"])
            continue
        folder = work / "data" / case["name"]
        folder.mkdir(parents=True, exist_ok=True)
        ff.write_data_files(case, folder, h5py)
    if skipped:
        print(f"venv step: no h5py in the venv; the HDF5 data cases {skipped} will be skipped")


# ============================================================================ caffe step

class CaffeRunner:
    def __init__(self, caffe, work: Path, out: Path):
        self.caffe = caffe
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
        self.pb = caffe_pb2
        self.text_format = text_format
        self.work = work
        self.out = out
        self.tmp = Path(tempfile.mkdtemp(prefix="caffe_fixtures_"))

    # ---------------------------------------------------------------- helpers
    def write_tmp(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def convert(self, raw: str, inputs: dict, convert: dict) -> str:
        """Generated net -> Caffe-ready: Data layers -> one Input layer, layers dropped."""
        pb = self.pb
        src = pb.NetParameter()
        self.text_format.Merge(raw, src)
        dst = pb.NetParameter()
        dst.name = src.name
        if convert.get("force_backward"):
            dst.force_backward = True
        inp = dst.layer.add()
        inp.name = "data"
        inp.type = "Input"
        for name, spec in inputs.items():
            inp.top.append(name)
            inp.input_param.shape.add().dim.extend(spec["shape"])
        phase = getattr(pb, convert["phase"])
        for layer in src.layer:
            if layer.type in ("Data",) or layer.type in convert.get("drop", ()):
                continue
            if any(r.HasField("phase") and r.phase != phase for r in layer.include):
                continue
            dst.layer.add().CopyFrom(layer)
        return self.text_format.MessageToString(dst)

    def forward_recording_kinks(self, net, prefix: str) -> dict:
        """net.forward() one layer at a time; returns the entries recording every ReLU's
        near-zero inputs (``<prefix><layer>@index`` int64, ``<prefix><layer>@value``)."""
        arrays = {}
        names = list(net._layer_names)
        for i, lname in enumerate(names):
            layer = net.layers[i]
            if layer.type == "ReLU":
                x = net.blobs[net.bottom_names[lname][0]].data.reshape(-1).copy()
                m = float(np.abs(x).max())
                idx = np.nonzero(np.abs(x) <= KINK_TAU * m)[0].astype(np.int64)
                arrays[f"{prefix}{lname}@index"] = idx
                arrays[f"{prefix}{lname}@value"] = x[idx].astype(np.float32)
            net._forward(i, i)
        return arrays

    def set_weights(self, net, case: dict) -> dict:
        sums = {}
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                w = ff.make_weight(case["name"], layer, i, blob.data.shape, case["weight_mode"])
                blob.data[...] = w
                sums[f"{layer}:{i}"] = ff.checksum(w)
        return sums

    def feed(self, net, case: dict, tag: str = "") -> dict:
        sums = {}
        for name, spec in case["inputs"].items():
            x = ff.make_input(case["name"], name + tag, spec)
            net.blobs[name].data[...] = x
            sums[name + tag] = ff.checksum(x)
        return sums

    def save(self, case: dict, meta: dict, arrays: dict) -> int:
        meta = dict(meta)
        meta.update({k: v for k, v in case.items() if k not in meta})
        meta["format_version"] = ff.FORMAT_VERSION
        meta["caffe"] = f"BVLC Caffe {self.caffe.__version__} (brocolli-caffe 9.0.2 sdist), CPU"
        path = self.out / f"{case['name']}.npz"
        np.savez_compressed(path, meta=ff.meta_to_array(meta), **arrays)
        return path.stat().st_size

    # ---------------------------------------------------------------- kinds
    def run_net(self, case: dict):
        caffe = self.caffe
        if "generated_prototxt" in case:
            case["prototxt"] = self.convert(case["generated_prototxt"], case["inputs"],
                                            case["convert"])
        path = self.write_tmp(case["name"] + ".prototxt", case["prototxt"])
        net = caffe.Net(path, getattr(caffe, case.get("phase", "TEST")))
        wsums = self.set_weights(net, case)
        isums = self.feed(net, case)
        arrays = {}
        loss_w = dict(net.blob_loss_weights)
        if case["backward"] != "none":
            # zeroed before the forward pass, which may leave values in a bottom's diff for
            # the backward pass to use (HingeLoss does)
            for name, blob in net.blobs.items():
                if not loss_w.get(name):
                    blob.diff[...] = 0
        if case["scale"] == "network":
            arrays.update(self.forward_recording_kinks(net, "kink:"))
        else:
            net.forward()
        if case.get("params_after_forward"):     # blobs a forward changes (BatchNorm's TRAIN)
            for layer, blobs in net.params.items():
                for i, blob in enumerate(blobs):
                    arrays.update(ff.encode(f"param:{layer}:{i}", blob.data, case["sample_size"]))
        s = case["sample_size"]
        inputs = set(case["inputs"])
        for name, blob in net.blobs.items():
            if name not in inputs:
                arrays.update(ff.encode(f"fwd:{name}", blob.data, s))
        meta = {"input_sums": isums, "weight_sums": wsums,
                "blob_shapes": {n: list(b.data.shape) for n, b in net.blobs.items()},
                "param_shapes": {f"{l}:{i}": list(b.data.shape)
                                 for l, bl in net.params.items() for i, b in enumerate(bl)},
                "loss_weights": {n: float(w) for n, w in loss_w.items() if w},
                "outputs": list(net.outputs)}
        if case["backward"] != "none":
            net.clear_param_diffs()
            top_diffs = {}
            if case["backward"] == "top_diff":
                tops = case["top_diffs"] or list(net.outputs)
                for t in tops:
                    g = ff.make_input(case["name"], "topdiff:" + t,
                                      {"shape": list(net.blobs[t].diff.shape), "kind": "normal"})
                    net.blobs[t].diff[...] = g
                    top_diffs[t] = ff.checksum(g)
                meta["top_diffs"] = tops
                meta["top_diff_sums"] = top_diffs
            net.backward()
            no_diff = [n for n, spec in case["inputs"].items() if spec["kind"] == "labels"]
            no_diff += [n for n in loss_w if loss_w[n]] + case.get("no_diff", [])
            for name, blob in net.blobs.items():
                if name in no_diff or name in top_diffs:
                    continue
                arrays.update(ff.encode(f"diff:{name}", blob.diff, s))
            for layer, blobs in net.params.items():
                for i, blob in enumerate(blobs):
                    arrays.update(ff.encode(f"grad:{layer}:{i}", blob.diff, s))
        return meta, arrays

    def run_filler(self, case: dict):
        caffe = self.caffe
        path = self.write_tmp(case["name"] + ".prototxt", case["prototxt"])
        caffe.set_random_seed(case["seed"])
        net = caffe.Net(path, caffe.TEST)
        meta = {}
        arrays = {}
        for i, blob in enumerate(net.params[case["layer"]]):
            w = blob.data.astype(np.float64)
            meta[f"blob{i}"] = {"shape": list(w.shape), "count": int(w.size),
                                "mean": float(w.mean()), "std": float(w.std()),
                                "min": float(w.min()), "max": float(w.max())}
            arrays.update(ff.encode(f"fill:{i}", blob.data))
        return meta, arrays

    def probe(self, layer_type: str, param: str, x: float, read: str) -> float:
        """One Exp or Log layer on a 1-element input ``x``: its top (``read`` "fwd") or, with
        top diff 1, its bottom diff."""
        text = (f'force_backward: true\n{input_layer({"x": {"shape": [1]}})}'
                + L("l", layer_type, "x", "y", param))
        net = self.caffe.Net(self.write_tmp("probe.prototxt", text), self.caffe.TEST)
        net.blobs["x"].data[...] = x
        net.forward()
        if read == "fwd":
            return net.blobs["y"].data[0]
        net.blobs["y"].diff[...] = 1
        net.backward()
        return net.blobs["x"].diff[0]

    def run_exp_log_constants(self, case: dict):
        exp = "exp_param {{ base: {!r} scale: {!r} shift: {!r} }}".format
        arrays = {
            "log:base_scale": [self.probe("Log", f"log_param {{ base: {b!r} }}", 1, "diff")
                               for b in case["log_bases"]],
            "exp:inner_scale": [self.probe("Exp", exp(b, s, 0.0), 0, "diff")
                                for b, s in case["exp_inner"]],
            "exp:outer_scale": [self.probe("Exp", exp(b, 1.0, s), 0, "fwd")
                                for b, s in case["exp_outer"]],
        }
        return {}, {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}

    def solver_text(self, case: dict) -> str:
        if "generated_solver" not in case:
            return case["solver"]
        net_text_ = self.convert(case["generated_prototxt"], case["inputs"], case["convert"])
        case["prototxt"] = net_text_
        pb = self.pb
        sp = pb.SolverParameter()
        self.text_format.Merge(case["generated_solver"], sp)
        for f in ("net", "test_iter", "test_interval", "test_initialization", "snapshot",
                  "snapshot_prefix", "display", "average_loss", "solver_mode", "stepvalue"):
            sp.ClearField(f)
        sp.net_param.CopyFrom(self.parse_net(net_text_))
        sp.stepvalue.extend([10, 15])
        sp.random_seed = 5
        sp.solver_mode = pb.SolverParameter.CPU
        return self.text_format.MessageToString(sp)

    def parse_net(self, text: str):
        n = self.pb.NetParameter()
        self.text_format.Merge(text, n)
        return n

    def run_solver(self, case: dict):
        caffe = self.caffe
        text = self.solver_text(case)
        case["solver"] = text
        path = self.write_tmp(case["name"] + ".solver.prototxt", text)
        solver = caffe.get_solver(path)
        net = solver.net
        wsums = self.set_weights(net, case)
        s = case["sample_size"]
        arrays = {}
        isums = {}
        losses = []
        if case["feed"] == "fixed":
            isums.update(self.feed(net, case))
        for k in range(1, case["steps"] + 1):
            if case["feed"] == "per_step":
                isums.update(self.feed(net, case, f"@{k}"))
            if case.get("kinks"):
                # the same forward pass as step(1)'s (deterministic on CPU), to see its kinks
                arrays.update(self.forward_recording_kinks(net, f"kink{k}:"))
            solver.step(1)
            losses.append(float(net.blobs["loss"].data))
            if k in case["record"]:
                for layer, blobs in net.params.items():
                    for i, blob in enumerate(blobs):
                        arrays.update(ff.encode(f"step{k}:{layer}:{i}", blob.data, s))
            if k == case.get("snapshot_at"):
                arrays.update(self.snapshot_files(solver, case))
        assert solver.iter == case["steps"]
        if case.get("snapshot_at"):
            arrays.update(self.resume_runtime_snapshot(path, case))
        meta = {"input_sums": isums, "weight_sums": wsums, "losses": losses,
                "param_shapes": {f"{l}:{i}": list(b.data.shape)
                                 for l, bl in net.params.items() for i, b in enumerate(bl)}}
        return meta, arrays

    def resume_runtime_snapshot(self, path: str, case: dict) -> dict:
        """Caffe restores the runtime's snapshot after step k (venv step) and steps on:
        ``resumed<k>:<layer>:<i>`` weights, and the runtime's .solverstate as bytes."""
        k = case["snapshot_at"]
        end = ".solverstate.h5" if hdf5_snapshot(case) else ".solverstate"
        state = self.work / "ours" / case["name"] / f"ours_iter_{k}{end}"
        if not state.is_file():
            print(f"  WARNING: no runtime snapshot {state}; Caffe does not resume one")
            return {}
        solver = self.caffe.get_solver(path)
        solver.restore(str(state))
        assert solver.iter == k
        arrays = {"file:runtime_solverstate": np.frombuffer(state.read_bytes(), np.uint8)}
        self.feed(solver.net, case)
        for step in range(k + 1, case["steps"] + 1):
            solver.step(1)
            for layer, blobs in solver.net.params.items():
                for i, blob in enumerate(blobs):
                    arrays.update(ff.encode(f"resumed{step}:{layer}:{i}", blob.data,
                                            case["sample_size"]))
        return arrays

    def snapshot_files(self, solver, case: dict) -> dict:
        """solver.snapshot() in an empty folder; its .solverstate and .caffemodel as bytes
        (``file:solverstate``, ``file:caffemodel``) and the learned_net name in the case."""
        folder = Path(tempfile.mkdtemp(prefix="snapshot_", dir=self.tmp))
        here = os.getcwd()
        os.chdir(folder)     # an unset snapshot_prefix writes "_iter_N.*" into the cwd
        try:
            solver.snapshot()
        finally:
            os.chdir(here)
        found = {kind: p for p in folder.rglob("*") if p.is_file()
                 for kind in (".solverstate", ".caffemodel") if kind in p.name}
        # learned_net: the .caffemodel as Caffe names it (no h5py here to read an HDF5 state)
        case["learned_net"] = found[".caffemodel"].name
        return {f"file:{kind[1:]}": np.frombuffer(found[kind].read_bytes(), np.uint8)
                for kind in (".solverstate", ".caffemodel")}

    def run_sequence(self, case: dict):
        caffe = self.caffe
        net = caffe.Net(self.write_tmp(case["name"] + ".prototxt", case["prototxt"]), caffe.TEST)
        wsums, isums, arrays = self.set_weights(net, case), {}, {}
        for k, step in enumerate(case["steps"], 1):
            given = {name: ff.make_input(case["name"], f"{name}@{k}", spec)
                     for name, spec in step["inputs"].items()}
            for name, x in given.items():
                net.blobs[name].reshape(*x.shape)
                isums[f"{name}@{k}"] = ff.checksum(x)
            net.reshape()
            if not step["forward"]:
                continue
            for name, x in given.items():
                net.blobs[name].data[...] = x
            net.forward()
            for name, blob in net.blobs.items():
                if name not in given:
                    arrays.update(ff.encode(f"fwd{k}:{name}", blob.data, case["sample_size"]))
        return {"input_sums": isums, "weight_sums": wsums}, arrays

    def run_data(self, case: dict):
        caffe = self.caffe
        folder = self.work / "data" / case["name"]
        folder.mkdir(parents=True, exist_ok=True)
        files = {**write_lmdb_files(case, folder, self.pb),
                 **write_leveldb_files(case, folder, self.pb)}
        text = case["prototxt"].replace(ff.DIR, str(folder))
        net = caffe.Net(self.write_tmp(case["name"] + ".prototxt", text),
                        getattr(caffe, case["phase"]))
        isums = self.feed(net, case) if case["inputs"] else {}
        if "memory_arrays" in case:
            arrays_in = {k: ff.make_input(case["name"], k, spec)
                         for k, spec in case["memory_arrays"].items()}
            isums = {k: ff.checksum(v) for k, v in arrays_in.items()}
            net.set_input_arrays(arrays_in["data"], arrays_in["labels"])
        arrays = dict(files)
        for k in range(1, case["forwards"] + 1):
            net.forward()
            for name, blob in net.blobs.items():
                if name not in case["inputs"]:
                    arrays.update(ff.encode(f"fwd{k}:{name}", blob.data, case["sample_size"]))
        shapes = {n: list(b.data.shape) for n, b in net.blobs.items()}
        del net     # HDF5Output closes its file in its destructor
        if "output_file" in case:
            data = (folder / case["output_file"]).read_bytes()
            arrays["file:output"] = np.frombuffer(data, np.uint8)
        return {"input_sums": isums, "blob_shapes": shapes}, arrays

    def run_roundtrip_runtime(self, case: dict):
        caffe = self.caffe
        path = self.write_tmp(case["name"] + ".prototxt", case["prototxt"])
        net = caffe.Net(path, caffe.TEST, weights=str(self.work / case["caffemodel"]))
        worst = 0.0
        wsums = {}
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                w = ff.make_weight(case["name"], layer, i, blob.data.shape, case["weight_mode"])
                worst = max(worst, float(np.abs(blob.data - w).max()))
                wsums[f"{layer}:{i}"] = ff.checksum(w)
        isums = self.feed(net, case)
        net.forward()
        arrays = {}
        for name, blob in net.blobs.items():
            if name not in case["inputs"]:
                arrays.update(ff.encode(f"fwd:{name}", blob.data, case["sample_size"]))
        meta = {"input_sums": isums, "weight_sums": wsums,
                "loaded_weights_max_abs_diff": worst,
                "caffemodel_bytes": (self.work / case["caffemodel"]).stat().st_size}
        if worst != 0.0:
            print(f"  WARNING: weights Caffe loaded differ from the runtime's by {worst}")
        return meta, arrays

    def run_roundtrip_caffe(self, case: dict):
        caffe = self.caffe
        path = self.write_tmp(case["name"] + ".prototxt", case["prototxt"])
        caffe.set_random_seed(case["seed"])
        net = caffe.Net(path, caffe.TEST)
        model = self.out / case["caffemodel"]
        net.save(str(model))
        net2 = caffe.Net(path, caffe.TEST, weights=str(model))   # Caffe reads back its file
        isums = self.feed(net2, case)
        net2.forward()
        arrays = {}
        for layer, blobs in net2.params.items():
            for i, blob in enumerate(blobs):
                arrays.update(ff.encode(f"weight:{layer}:{i}", blob.data))
        for name, blob in net2.blobs.items():
            if name not in case["inputs"]:
                arrays.update(ff.encode(f"fwd:{name}", blob.data))
        return {"input_sums": isums, "caffemodel_bytes": model.stat().st_size}, arrays

    def run_model(self, case: dict):
        import cases_models
        caffe = self.caffe
        text = cases_models.caffe_text(case, self.pb, self.text_format)
        path = self.write_tmp(case["name"] + ".prototxt", text)
        parts = sorted((self.work / "models").glob(f"{case['name']}.*.caffemodel"))
        net = caffe.Net(path, caffe.TEST)
        for part in parts:
            net.copy_from(str(part))
        names = list(net._layer_names)
        modes = cases_models.weight_modes(case, ((n, l.type, len(l.blobs))
                                                 for n, l in zip(names, net.layers)))
        wsums, worst = {}, 0.0
        for layer, blobs in net.params.items():
            for i, blob in enumerate(blobs):
                w = ff.make_weight(case["name"], layer, i, blob.data.shape, modes)
                worst = max(worst, float(np.abs(blob.data - w).max()))
                wsums[f"{layer}:{i}"] = ff.checksum(w)
        if worst != 0.0:
            raise SystemExit(f"{case['name']}: the weights Caffe loaded differ from the "
                             f"runtime's by {worst}")
        for name, spec in case["inputs"].items():     # pycaffe's reshape
            net.blobs[name].reshape(*spec["shape"])
        net.reshape()
        isums = self.feed(net, case)
        net.forward()
        arrays = {}
        for name in case["record"]:
            arrays.update(ff.encode(f"fwd:{name}", net.blobs[name].data, case["sample_size"]))
        meta = {"input_sums": isums, "weight_sums": wsums, "weight_mode": modes,
                "source_sha256": cases_models.source_sha256(case),
                "layers": [[n, l.type] for n, l in zip(names, net.layers)],
                "blob_shapes": {n: list(b.data.shape) for n, b in net.blobs.items()},
                "outputs": list(net.outputs),
                "caffemodel_bytes": [p.stat().st_size for p in parts]}
        if case["v1_data_as_inputs"]:
            meta["prototxt"] = text
            meta["caffe_net"] = self.upgraded_net(net)
        return meta, arrays

    def upgraded_net(self, net) -> str:
        """The NetParameter Caffe built (its upgrade of the prototxt, phase filtered, Split
        layers inserted), as text without blobs: what net.save writes, less the weights."""
        model = self.tmp / "upgraded.caffemodel"
        net.save(str(model))
        param = self.pb.NetParameter()
        param.ParseFromString(model.read_bytes())
        for layer in param.layer:
            del layer.blobs[:]
        return self.text_format.MessageToString(param)

    def run(self, case: dict) -> int:
        fn = getattr(self, "run_" + case["kind"])
        meta, arrays = fn(case)
        return self.save(case, meta, arrays)


def caffe_step(work: Path, out: Path, only: list[str]) -> None:
    caffe = import_caffe()
    out.mkdir(parents=True, exist_ok=True)
    runner = CaffeRunner(caffe, work, out)
    cases = all_cases(work / "gen")
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    if not (work / "runtime_saved.caffemodel").exists():
        print("WARNING: no runtime-saved caffemodel in WORKDIR; skipping the runtime -> Caffe "
              "round trip (run the venv step with the runtime in place)")
        cases = [c for c in cases if c["kind"] != "roundtrip_runtime"]
    missing = [c["name"] for c in cases if selected(c["name"], only) and (
               c.get("h5_files") and not (work / "data" / c["name"]).is_dir()
               or hdf5_snapshot(c) and c.get("snapshot_at")
               and not (work / "ours" / c["name"]).is_dir())]     # (the venv step made none)
    if missing:
        print(f"WARNING: no files for {missing} (h5py missing in the venv); skipped")
        cases = [c for c in cases if c["name"] not in missing]
    kept = set()
    for why, what, needs in (
            (databases_unreadable(caffe), "the LMDB and LevelDB data cases",
             lambda c: c.get("lmdb_files") or c.get("leveldb_files")),
            (python_layer_missing(caffe), "the Python layer cases",
             lambda c: c.get("group") == "Python"),
            (opencv_missing(caffe), "the ImageData and WindowData cases",
             lambda c: c.get("image_files"))):
        skipped = {c["name"] for c in cases if needs(c)}
        if why and skipped:
            print(f"WARNING: {why}; {what} are skipped and their fixtures kept "
                  "(tools/caffe_reference/build-reference-caffe-full.sh builds a Caffe with them)")
            kept |= skipped
    cases = [c for c in cases if c["name"] not in kept]
    if only:
        cases = [c for c in cases if selected(c["name"], only)]
        if not cases:
            near = [n for s in only for n in difflib.get_close_matches(s, names, 5, 0.4)]
            raise SystemExit(f"--only {' '.join(only)}: no case's name holds it (nearest: "
                             f"{', '.join(dict.fromkeys(near)) or 'none'}; "
                             f"{len(names)} cases in all)")
    else:
        for stale in out.glob("*.npz"):     # only this script's files (they carry a meta)
            with np.load(stale) as z:
                ours = "meta" in z.files and "format_version" in ff.meta_from_npz(z)
            if ours and stale.stem not in kept:
                stale.unlink()
    missing = [c["name"] for c in cases if c["kind"] == "model"
               and not (work / "models" / f"{c['name']}.1.caffemodel").exists()]
    if missing:
        print(f"WARNING: no runtime-saved caffemodel for {missing}; skipped")
        cases = [c for c in cases if c["name"] not in missing]
    total = 0
    for case in cases:
        t = time.perf_counter()
        size = runner.run(case)
        total += size
        print(f"{case['name']:<45} {size / 1024:8.1f} KiB {time.perf_counter() - t:7.2f} s",
              flush=True)
    print(f"{len(cases)} fixtures, {total / 1024 / 1024:.2f} MiB written to {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    v = sub.add_parser("venv", help="render nets and save a runtime caffemodel (project venv)")
    v.add_argument("work", type=Path)
    v.add_argument("--only", nargs="*", default=[], help="only the models whose case name "
                   "contains one (the other files are always written)")
    c = sub.add_parser("caffe", help="run the cases in real Caffe (Debian python3 + pycaffe)")
    c.add_argument("work", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--only", nargs="*", default=[], help="only cases whose name contains one")
    args = ap.parse_args(argv)
    if args.step == "venv":
        venv_step(args.work, args.only)
    else:
        caffe_step(args.work, args.out, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
