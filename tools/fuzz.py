"""Mutation fuzzer: mutated prototxt, solver and caffemodel files through allconv-caffe and
export-onnx.

Each case mutates one seed input, picked by the case's rng from ``NETS`` (small nets that
together hold every supported layer type) or ``SOLVERS`` (one per solver type), writes the
mutated file and runs the command line on it in this process, through ``run_cli`` as the
console script does (no process start per case):

    prototxt    allconv-caffe time -model NET -iterations 1   (and test -weights, every other)
    solver      allconv-caffe train -solver SOLVER            (tools/tiny_caffe.py, 2 iterations)
    caffemodel  allconv-caffe test -model NET -weights MODEL -iterations 1
    onnx        export-onnx --prototxt DEPLOY --weights MODEL -o out.onnx    (the deploy form
                of a seed net, ``deploy_text``; its prototxt mutated, or its weights every other)

A case ends "ok" (exit 0), "clean" (exit 2, the last stderr line ``allconv-caffe CMD: error: ...``),
"traceback" (an exception escaped the command line), "mismatch" (export-onnx's own check found
onnxruntime and the runtime apart, or the model refused by ONNX's checker or onnxruntime: an
exporter bug, not bad input, unless it is one of the two differences the README names: Relu
at −inf, LRN's rounding), "other" (any other exit status or message), or "slow" (over
--case-seconds). Tracebacks, mismatches, others and slow cases are
kept under --out; so is the case that was running, as ``running-KIND-N.SUFFIX``, when a crash
in native code ends the fuzzer itself. Ctrl-C stops it after the case that is running,
with the counts so far (exit 130).

    python tools/fuzz.py --cases 10000 --seed 0 --out runs/fuzz
    python tools/fuzz.py --cases 500 --kinds prototxt --nets recurrent,losses

Cases run in a temporary folder. Blobs are capped at --memory-mib per blob (the runtime's
"fits in memory" check is told the machine has that much), so a mutated net never swaps a
shared machine, and cases that run past --case-seconds are counted as slow and left.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import random
import re
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from runtime import blob_shape  # noqa: E402
from harness.export_onnx import main as export_main  # noqa: E402
from runtime.cli import main as caffe_main  # noqa: E402
from runtime.cli_support import run_cli  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402
from runtime.prototxt import parse_net, parse_solver, to_text  # noqa: E402
from tools.tiny_caffe import write_tiny_net  # noqa: E402

KINDS = ("prototxt", "solver", "caffemodel", "onnx")
# the command lines run, and how each ends clean: exit 2, this last line on stderr
COMMANDS = {"allconv-caffe": (caffe_main, r"allconv-caffe (train|test|time): error: "),
            "export-onnx": (export_main, r"export-onnx: error: ")}
# export-onnx's errors that are the exporter's own failures, not the input's
EXPORT_FAILURES = re.compile(r"differs from the runtime|onnxruntime \([^)]*\) cannot run|"
                             r"onnxruntime cannot load|the ONNX checker refuses")

# Seed inputs: small nets (2x3x8x8-ish) that set the fields which change their layers'
# behaviour, so that mutations reach them, and one solver per type. Each case picks one.
HDF5_NET = "data"      # the seed net with HDF5Data and HDF5Output (h5py, the [hdf5] extra)
LMDB_FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/data_lmdb_sizes.npz"
# the module of the data seed's Python layers, imported as Caffe imports it (PYTHONPATH)
PYTHON_LAYERS = Path(__file__).resolve().parents[1] / "tests/fixtures/python_layers"
NETS = {
    "classic": """name: "classic"
layer { name: "input" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
                            weight_filler { type: "xavier" variance_norm: FAN_IN }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "drop1" type: "Dropout" bottom: "norm1" top: "norm1" dropout_param { dropout_ratio: 0.5 } }
layer { name: "conv2a" type: "Convolution" bottom: "norm1" top: "conv2a"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "conv2b" type: "Convolution" bottom: "norm1" top: "conv2b"
        convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 pad_h: 1 pad_w: 1 group: 2
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "cat" type: "Concat" bottom: "conv2a" bottom: "conv2b" top: "cat" concat_param { axis: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv2a" bottom: "conv2b" top: "sum"
        eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
layer { name: "pool2" type: "Pooling" bottom: "cat" top: "pool2"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool2" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "sum" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        loss_weight: 1 loss_param { normalization: VALID } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        accuracy_param { top_k: 1 } include { phase: TEST } }
""",
    "normalization": """name: "normalization"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "constant" value: 1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn"
        batch_norm_param { use_global_stats: false moving_average_fraction: 0.9 eps: 0.0001 } }
layer { name: "bn_global" type: "BatchNorm" bottom: "data" top: "bn_global"
        batch_norm_param { use_global_stats: true eps: 0.001 } }
layer { name: "scale" type: "Scale" bottom: "bn" top: "scale"
        scale_param { axis: 1 num_axes: 1 filler { type: "constant" value: 1.5 }
                      bias_term: true bias_filler { type: "constant" value: 0.1 } } }
layer { name: "gamma" type: "Parameter" top: "gamma" parameter_param { shape { dim: 3 dim: 8 } } }
layer { name: "scale2" type: "Scale" bottom: "bn_global" bottom: "gamma" top: "scale2"
        scale_param { axis: 1 bias_term: true bias_filler { type: "constant" value: 1 } } }
layer { name: "bias" type: "Bias" bottom: "scale" top: "bias"
        bias_param { axis: 1 num_axes: 1 filler { type: "gaussian" std: 0.1 } } }
layer { name: "bias2" type: "Bias" bottom: "scale2" bottom: "gamma" top: "bias2" bias_param { axis: 1 } }
layer { name: "mvn" type: "MVN" bottom: "bias" top: "mvn"
        mvn_param { normalize_variance: true across_channels: false eps: 1e-9 } }
layer { name: "mvn2" type: "MVN" bottom: "bias2" top: "mvn2"
        mvn_param { normalize_variance: false across_channels: true } }
layer { name: "prelu" type: "PReLU" bottom: "mvn" top: "prelu"
        prelu_param { channel_shared: false filler { type: "constant" value: 0.25 } } }
layer { name: "lrn" type: "LRN" bottom: "prelu" top: "lrn"
        lrn_param { local_size: 3 alpha: 0.001 beta: 0.75 norm_region: WITHIN_CHANNEL k: 2 } }
layer { name: "prod" type: "Eltwise" bottom: "lrn" bottom: "mvn2" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "ip" type: "InnerProduct" bottom: "prod" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""",
    "geometry": """name: "geometry"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "select" type: "DummyData" top: "index" top: "select"
        dummy_data_param { shape { dim: 3 } shape { dim: 2 }
                           data_filler { type: "constant" value: 1 } } }
layer { name: "deconv" type: "Deconvolution" bottom: "data" top: "deconv"
        convolution_param { num_output: 6 group: 3 kernel_size: 3 stride: 2 pad: 1 dilation: 2
                            weight_filler { type: "gaussian" std: 0.1 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "crop" type: "Crop" bottom: "deconv" bottom: "data" top: "crop"
        crop_param { axis: 2 offset: 1 offset: 2 } }
layer { name: "slice" type: "Slice" bottom: "crop" top: "s1" top: "s2" top: "s3"
        slice_param { axis: 1 slice_point: 1 slice_point: 4 } }
layer { name: "reshape" type: "Reshape" bottom: "s2" top: "r"
        reshape_param { shape { dim: 0 dim: -1 dim: 4 } axis: 1 num_axes: 2 } }
layer { name: "tile" type: "Tile" bottom: "s1" top: "tile" tile_param { axis: 1 tiles: 3 } }
layer { name: "spp" type: "SPP" bottom: "tile" top: "spp" spp_param { pyramid_height: 2 pool: MAX } }
layer { name: "split" type: "Split" bottom: "s3" top: "s3a" top: "s3b" }
layer { name: "im2col" type: "Im2col" bottom: "s3a" top: "cols"
        convolution_param { kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "reindex" type: "BatchReindex" bottom: "cols" bottom: "index" top: "reindex" }
layer { name: "filter" type: "Filter" bottom: "spp" bottom: "select" top: "filter" }
layer { name: "argmax" type: "ArgMax" bottom: "filter" top: "argmax"
        argmax_param { top_k: 2 out_max_val: true axis: 1 } }
layer { name: "argmax2" type: "ArgMax" bottom: "r" top: "argmax2" argmax_param { top_k: 3 } }
layer { name: "flat" type: "Flatten" bottom: "r" top: "flat" flatten_param { axis: 1 end_axis: -2 } }
layer { name: "sumsq" type: "Reduction" bottom: "reindex" top: "sumsq" loss_weight: 0.01
        reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 } }
layer { name: "asum" type: "Reduction" bottom: "flat" top: "asum" reduction_param { operation: ASUM axis: 2 } }
layer { name: "mean" type: "Reduction" bottom: "filter" top: "mean" loss_weight: 1
        reduction_param { operation: MEAN } }
layer { name: "silence" type: "Silence" bottom: "argmax" bottom: "argmax2" bottom: "asum"
        bottom: "s3b" }
""",
    "activations": """name: "activations"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "constant" value: 2 } } }
layer { name: "sigmoid" type: "Sigmoid" bottom: "data" top: "sigmoid" }
layer { name: "tanh" type: "TanH" bottom: "data" top: "tanh" }
layer { name: "elu" type: "ELU" bottom: "data" top: "elu" elu_param { alpha: 0.5 } }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "power" type: "Power" bottom: "abs" top: "power"
        power_param { power: 1.5 scale: 0.5 shift: 1 } }
layer { name: "exp" type: "Exp" bottom: "tanh" top: "exp" exp_param { base: 2 scale: 0.5 shift: 0.1 } }
layer { name: "log" type: "Log" bottom: "power" top: "log" log_param { base: 10 scale: 1 shift: 0.5 } }
layer { name: "bnll" type: "BNLL" bottom: "data" top: "bnll" }
layer { name: "threshold" type: "Threshold" bottom: "data" top: "threshold"
        threshold_param { threshold: 0.2 } }
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.5 max: 0.5 } }
layer { name: "swish" type: "Swish" bottom: "data" top: "swish" swish_param { beta: 1.5 } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" relu_param { negative_slope: 0.1 } }
layer { name: "sum" type: "Eltwise" top: "sum" bottom: "sigmoid" bottom: "elu" bottom: "exp"
        bottom: "log" bottom: "bnll" bottom: "clip" bottom: "swish" bottom: "relu"
        eltwise_param { operation: SUM coeff: 1 coeff: 0.5 coeff: -1 coeff: 1 coeff: 2
                        coeff: 1 coeff: 1 coeff: -0.5 } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "threshold" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "ip" type: "InnerProduct" bottom: "max" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""",
    "losses": """name: "losses"
layer { name: "data" type: "DummyData" top: "data" top: "target" top: "label" top: "similar"
        top: "index"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 dim: 3 dim: 4 dim: 4 }
                           shape { dim: 2 } shape { dim: 2 dim: 1 dim: 1 dim: 1 } shape { dim: 2 dim: 3 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "uniform" min: 0 max: 1 }
                           data_filler { type: "constant" value: 1 }
                           data_filler { type: "constant" value: 1 }
                           data_filler { type: "constant" value: 4 } } }
layer { name: "infogain" type: "DummyData" top: "H"
        dummy_data_param { shape { dim: 1 dim: 1 dim: 3 dim: 3 } data_filler { type: "uniform" } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "target" top: "ip2"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "euclidean" type: "EuclideanLoss" bottom: "data" bottom: "target" top: "euclidean"
        loss_weight: 0.5 }
layer { name: "sigmoid_ce" type: "SigmoidCrossEntropyLoss" bottom: "data" bottom: "target"
        top: "sigmoid_ce" loss_param { ignore_label: 5 normalization: BATCH_SIZE } }
layer { name: "hinge" type: "HingeLoss" bottom: "ip" bottom: "label" top: "hinge"
        hinge_loss_param { norm: L2 } }
layer { name: "infogain_loss" type: "InfogainLoss" bottom: "ip" bottom: "label" bottom: "H"
        top: "infogain_loss" infogain_loss_param { axis: 1 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" softmax_param { axis: 1 } }
layer { name: "logistic" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label"
        top: "logistic" }
layer { name: "contrastive" type: "ContrastiveLoss" bottom: "ip" bottom: "ip2" bottom: "similar"
        top: "contrastive" contrastive_loss_param { margin: 2 legacy_version: true } }
layer { name: "embed" type: "Embed" bottom: "index" top: "embed"
        embed_param { num_output: 4 input_dim: 5 bias_term: true
                      weight_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "embed_sum" type: "Reduction" bottom: "embed" top: "embed_sum" loss_weight: 0.1
        reduction_param { operation: SUM axis: 0 } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
""",
    "recurrent": """name: "recurrent"
layer { name: "seq" type: "DummyData" top: "x" top: "cont" top: "x_static" top: "h0"
        dummy_data_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 }
                           shape { dim: 2 dim: 5 } shape { dim: 1 dim: 2 dim: 5 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "constant" value: 1 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "gaussian" std: 0.5 } } }
layer { name: "unit_in" type: "DummyData" top: "c_prev" top: "gates" top: "unit_cont"
        dummy_data_param { shape { dim: 1 dim: 2 dim: 6 } shape { dim: 1 dim: 2 dim: 24 }
                           shape { dim: 1 dim: 2 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "gaussian" std: 1 }
                           data_filler { type: "constant" value: 1 } } }
layer { name: "rnn" type: "RNN" bottom: "x" bottom: "cont" bottom: "h0" top: "rnn" top: "h_T"
        recurrent_param { num_output: 5 expose_hidden: true
                          weight_filler { type: "gaussian" std: 0.1 }
                          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "x_static" top: "lstm"
        recurrent_param { num_output: 6 weight_filler { type: "uniform" min: -0.1 max: 0.1 } } }
layer { name: "unit" type: "LSTMUnit" bottom: "c_prev" bottom: "gates" bottom: "unit_cont"
        top: "c" top: "h" }
layer { name: "rnn_loss" type: "Reduction" bottom: "rnn" top: "rnn_loss" loss_weight: 1
        reduction_param { operation: SUMSQ } }
layer { name: "lstm_loss" type: "Reduction" bottom: "lstm" top: "lstm_loss" loss_weight: 1
        reduction_param { operation: SUM axis: 2 } }
layer { name: "unit_loss" type: "EuclideanLoss" bottom: "h" bottom: "c" top: "unit_loss" }
layer { name: "silence" type: "Silence" bottom: "h_T" }
""",
    "data": """name: "data"
layer { name: "hdf5" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param { source: "hdf5.txt" batch_size: 2 shuffle: true } }
layer { name: "images" type: "ImageData" top: "images" top: "image_label"
        transform_param { crop_size: 4 mirror: true scale: 0.5 mean_value: 100 }
        image_data_param { source: "images.txt" root_folder: "./" batch_size: 2 new_height: 6
                           new_width: 6 is_color: true shuffle: true rand_skip: 2 } }
layer { name: "dummy" type: "DummyData" top: "dummy"
        dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 }
                           data_filler { type: "uniform" min: -1 max: 1 } } }
layer { name: "memory" type: "MemoryData" top: "memory" top: "memory_label" include { phase: TRAIN }
        memory_data_param { batch_size: 2 channels: 3 height: 4 width: 4 } }
layer { name: "silence" type: "Silence" bottom: "memory" bottom: "memory_label" include { phase: TRAIN } }
layer { name: "output" type: "HDF5Output" bottom: "images" bottom: "image_label"
        hdf5_output_param { file_name: "output.h5" } }
layer { name: "lmdb" type: "Data" top: "lmdb" top: "lmdb_label"
        transform_param { crop_size: 4 mirror: true scale: 0.5 mean_value: 100 }
        data_param { source: "records_lmdb" backend: LMDB batch_size: 2 } }
layer { name: "silence_label" type: "Silence" bottom: "lmdb_label" }
layer { name: "windows" type: "WindowData" top: "windows" top: "window_label"
        transform_param { crop_size: 4 mirror: true mean_value: 100 }
        window_data_param { source: "windows.txt" root_folder: "./" batch_size: 2
                            fg_fraction: 0.5 context_pad: 1 crop_mode: "square" scale: 0.5 } }
layer { name: "silence_window_label" type: "Silence" bottom: "window_label" }
layer { name: "scaled" type: "Python" bottom: "dummy" top: "scaled"
        python_param { module: "fixture_layers" layer: "Scaled" param_str: "2.5" } }
layer { name: "affine" type: "Python" bottom: "scaled" top: "scaled" param { lr_mult: 2 }
        python_param { module: "fixture_layers" layer: "ChannelAffine" } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "images" bottom: "scaled"
        bottom: "lmdb" bottom: "windows" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""",
}

# Solver seeds: the fields every solver shares, then each type's own (tiny.prototxt).
SOLVER = """net: "tiny.prototxt"
test_iter: 1
test_interval: 1
test_initialization: true
base_lr: 0.01
weight_decay: 0.001
clip_gradients: 10
average_loss: 1
max_iter: 2
display: 1
snapshot: 1
snapshot_prefix: "snap"
snapshot_after_train: true
solver_mode: CPU
random_seed: 1
"""

SOLVERS = {
    "SGD": 'type: "SGD"\nmomentum: 0.9\nlr_policy: "multistep"\nstepvalue: 1\ngamma: 0.1\n'
           'regularization_type: "L2"\n',
    "Nesterov": 'solver_type: NESTEROV\nmomentum: 0.95\nlr_policy: "sigmoid"\ngamma: -0.5\n'
                'stepsize: 1\n',
    "Adam": 'type: "Adam"\nmomentum: 0.9\nmomentum2: 0.999\ndelta: 1e-8\nlr_policy: "fixed"\n',
    "AdaGrad": 'type: "AdaGrad"\ndelta: 1e-6\nlr_policy: "inv"\ngamma: 0.1\npower: 0.75\n'
               'regularization_type: "L1"\n',
    "AdaDelta": 'type: "AdaDelta"\nmomentum: 0.95\ndelta: 1e-6\nlr_policy: "step"\ngamma: 0.5\n'
                'stepsize: 1\niter_size: 2\n',
    "RMSProp": 'type: "RMSProp"\nrms_decay: 0.98\ndelta: 1e-8\nlr_policy: "poly"\npower: 2\n'
               'test_compute_loss: true\n',
}


def deploy_text(text: str) -> str:
    """A seed net's deploy form for export-onnx: DummyData becomes an Input of its shapes, and
    the layers that end training (losses, Accuracy, Silence) go."""
    net = parse_net(text)
    kept = [layer for layer in net.layer
            if not layer.type.endswith("Loss") and layer.type not in ("Accuracy", "Silence")]
    for layer in kept:
        if layer.type == "DummyData":
            layer.type = "Input"
            layer.input_param.shape.extend(layer.dummy_data_param.shape)
            layer.ClearField("dummy_data_param")
    del net.layer[:]
    net.layer.extend(kept)
    return to_text(net)


INTERESTING = ("-1", "0", "1", "2", "3", "7", "255", "65536", "2147483647", "2147483648",
               "4294967295", "4294967296", "9223372036854775807", "-9223372036854775808",
               "18446744073709551616", "1e30", "-1e30", "nan", "inf", "-inf", "0.5", "1e-40")
NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.?\d*(?:e-?\d+)?|nan|inf)(?![\w.])")
STRING = re.compile(r'"[^"\n]*"')
WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


# ------------------------------------------------------------------------------ mutators

def mutate_text(text: str, rng: random.Random) -> str:
    """One to three mutations of protobuf text: numbers, strings, words, lines, bytes."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(TEXT_MUTATIONS)(text, rng)
    return text


def _sub_one(pattern: re.Pattern, text: str, rng: random.Random, make) -> str:
    matches = list(pattern.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    return text[:m.start()] + make(m.group(0)) + text[m.end():]


def _number(text, rng):
    return _sub_one(NUMBER, text, rng, lambda old: rng.choice(
        INTERESTING + (str(rng.randint(-5, 40)), old + "0", "-" + old)))


def _string(text, rng):
    """A string replaced by another of the text's or an odd one; none is absolute (a
    snapshot_prefix naming a folder: "./", "."), and ``Fuzzer.confined`` keeps what a
    further mutation makes of it inside the fuzzer's folder."""
    words = [m.group(0) for m in STRING.finditer(text)]
    return _sub_one(STRING, text, rng, lambda old: rng.choice(
        words + ['""', '"./"', '"a\\000b"', '"\\377\\376"', '"' + "x" * 300 + '"', '"."']))


def _word(text, rng):
    words = sorted(set(WORD.findall(text)))
    return _sub_one(WORD, text, rng, lambda old: rng.choice(words))


def _lines(text, rng):
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.randrange(3)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[j])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def _chars(text, rng):
    i = rng.randrange(len(text) + 1)
    op = rng.randrange(3)
    if op == 0:
        return text[:i] + text[i + rng.randint(1, 8):]
    if op == 1:
        return text[:i] + rng.choice("{}:\"\\#\n\x00\xff-. ") + text[i:]
    return text[:i]


TEXT_MUTATIONS = (_number, _number, _number, _string, _word, _word, _lines, _chars)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four mutations of a binary protobuf: bit flips, bytes, varints, cuts, copies."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.randrange(6), rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(i, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[min(i, len(data) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2:
            data[i:i] = rng.choice((b"\xff\xff\xff\xff\x0f", b"\x80" * 10, b"\x01",
                                    struct.pack("<f", float("nan")), rng.randbytes(4)))
        elif op == 3:
            del data[i:i + rng.randint(1, 64)]
        elif op == 4:
            del data[i:]
        else:
            j = rng.randrange(len(data) + 1)
            data[i:i] = data[j:j + rng.randint(1, 64)]
    return bytes(data)


def mutate_model(data: bytes, rng: random.Random) -> bytes:
    """One to three field-level mutations of a .caffemodel that stays valid protobuf: blob
    shapes, legacy dims, value counts, layer names, blobs dropped or duplicated."""
    from runtime.proto import pb
    net = pb.NetParameter.FromString(data)
    for _ in range(rng.randint(1, 3)):
        layer = rng.choice([l for l in net.layer if len(l.blobs)] or list(net.layer))
        blob = rng.choice(layer.blobs) if len(layer.blobs) else layer.blobs.add()
        op = rng.randrange(7)
        if op == 0 and len(blob.shape.dim):
            blob.shape.dim[rng.randrange(len(blob.shape.dim))] = int(rng.choice(INTERESTING[:13]))
        elif op == 1:
            blob.shape.dim.append(rng.choice((0, 1, 2)))
        elif op == 2:
            setattr(blob, rng.choice(("num", "channels", "height", "width")),
                    int(rng.choice(INTERESTING[:9])))
        elif op == 3 and len(blob.data):
            del blob.data[rng.randrange(len(blob.data)):]
        elif op == 4:
            layer.name = rng.choice([l.name for l in net.layer] + ["", "x\x00"])
        elif op == 5:
            del layer.blobs[rng.randrange(len(layer.blobs))]
        else:
            layer.blobs.add().CopyFrom(blob)
    return net.SerializeToString()


# ------------------------------------------------------------------------------ running

class SlowCase(BaseException):
    """Raised by the alarm when a case runs past its time."""


def _alarm(signum, frame):
    raise SlowCase


def run_case(argv: list[str], seconds: float, prog: str = "allconv-caffe") -> tuple[str, str]:
    """(outcome, detail) of one run of ``prog`` (allconv-caffe or export-onnx), stopped after
    ``seconds`` (0: no limit)."""
    command, clean = COMMANDS[prog]
    err, out = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = run_cli(command, prog, argv)
    except SlowCase:
        return "slow", f"over {seconds:g} s: {' '.join(argv)}"
    except BaseException:  # noqa: BLE001 - what escapes the command line is the finding
        return "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    lines = err.getvalue().strip().splitlines()
    if status == 0:
        return "ok", ""
    if status == 2 and lines and re.match(clean, lines[-1]):
        return ("mismatch" if EXPORT_FAILURES.search(lines[-1]) else "clean"), lines[-1]
    return "other", f"exit {status}: {err.getvalue()}"


def write_sources(folder: Path, with_hdf5: bool) -> None:
    """The files the seed nets read: tiny.prototxt with its sources (the solvers' net), an
    HDF5 list and file (HDF5Data, when ``with_hdf5``), an image list with its images
    (ImageData), a window file over them (WindowData) and an LMDB of Datum records (Data)."""
    import numpy as np
    from PIL import Image

    write_tiny_net(folder, "tiny.prototxt")
    rng = np.random.RandomState(0)
    if with_hdf5:
        from runtime.data import hdf5
        hdf5.create(str(folder / "rows.h5"))
        hdf5.write(str(folder / "rows.h5"), rng.randn(5, 3, 4, 4), rng.randint(0, 3, 5))
        (folder / "hdf5.txt").write_text("rows.h5\n")
    for i in range(3):
        Image.fromarray(rng.randint(0, 256, (5 + i, 7, 3)).astype(np.uint8)).save(
            folder / f"image{i}.png")
    (folder / "images.txt").write_text("".join(f"image{i}.png {i}\n" for i in range(3)))
    (folder / "windows.txt").write_text(    # R-CNN's windows: label overlap x1 y1 x2 y2
        "# 0\nimage0.png\n3 5 7\n2\n1 0.9 1 1 4 3\n0 0.1 0 0 6 4\n"
        "# 1\nimage1.png\n3 6 7\n1\n2 0.7 2 2 5 5\n")
    (folder / "records_lmdb").mkdir(exist_ok=True)      # a Caffe fixture's LMDB (liblmdb's)
    with np.load(LMDB_FIXTURE) as fixture:
        (folder / "records_lmdb" / "data.mdb").write_bytes(fixture["file:lmdb:sizes"].tobytes())


class Fuzzer:
    """Seed inputs written once into ``workdir`` (each seed net with its saved weights);
    ``case(kind, i)`` picks a seed of ``nets``/``solvers``, mutates it and runs one case.

    Each seed first runs once unmutated, untimed: a case's time limit must never cut a first
    import short (a half-imported module would fail every later case), and a seed that
    does not run is the fuzzer's own error. A seed file that a case writes over (a mutated
    HDF5Output file_name naming a source) is put back before the next case."""

    def __init__(self, workdir: Path, seed: int, case_seconds: float,
                 nets=tuple(NETS), solvers=tuple(SOLVERS), keep: Path | None = None):
        from runtime import TEST, Net
        self.dir, self.seed, self.case_seconds, self.keep = workdir, seed, case_seconds, keep
        self.nets, self.solvers = list(nets), list(solvers)
        write_sources(workdir, with_hdf5=HDF5_NET in self.nets)
        if str(PYTHON_LAYERS) not in sys.path:
            sys.path.insert(0, str(PYTHON_LAYERS))
        self.caffemodels = {}
        self.deploys = [name for name in self.nets if name != HDF5_NET]  # no file-free form
        for name in self.nets:
            (workdir / f"{name}.prototxt").write_text(NETS[name])
            Net(NETS[name], TEST, seed=0).save(workdir / f"{name}.caffemodel")
            self.caffemodels[name] = (workdir / f"{name}.caffemodel").read_bytes()
        for name in self.deploys:
            text = deploy_text(NETS[name])
            (workdir / f"{name}.deploy").write_text(text)
            Net(text, TEST, seed=0).save(workdir / f"{name}.deploy.caffemodel")
        for name in self.solvers:
            (workdir / f"{name}.solver").write_text(SOLVER + SOLVERS[name])
        self.seed_files = {path: path.read_bytes() for path in workdir.rglob("*")
                           if path.is_file()}
        self.seed_stats = {path: self._stat(path) for path in self.seed_files}
        for prog, argv, ends in self.seed_runs():
            outcome, detail = run_case(argv, 0, prog)
            if outcome not in ends:
                raise RuntimeError(f"seed input {prog} {' '.join(argv)} ended in {outcome}: "
                                   f"{detail}")

    def seed_runs(self) -> list[tuple[str, list[str], tuple[str, ...]]]:
        """(command, argv, the outcomes allowed) of the unmutated seeds (MemoryData's TRAIN net
        ends clean; every deploy form exports)."""
        runs = [("allconv-caffe", ["train", "-solver", f"{name}.solver"], ("ok", "clean"))
                for name in self.solvers]
        for name in self.nets:
            runs += [("allconv-caffe", argv, ("ok", "clean")) for argv in (
                ["time", "-model", f"{name}.prototxt", "-iterations", "1"],
                ["test", "-model", f"{name}.prototxt", "-weights", f"{name}.caffemodel",
                 "-iterations", "1"])]
        runs += [("export-onnx", self.export_argv(f"{name}.deploy", f"{name}.deploy.caffemodel"),
                  ("ok",)) for name in self.deploys]
        return runs

    def confined(self, text: str) -> str:
        """A mutated solver whose snapshots would land outside the fuzzer's folder (a
        snapshot_prefix of "/" or "../", which _chars can make of "./") snapshots as "snap"."""
        try:
            solver = parse_solver(text)
        except AllconvError:
            return text
        home = self.dir.resolve()
        if "\0" in solver.snapshot_prefix:     # names no file: the run's error is the case
            return text
        prefix = (home / solver.snapshot_prefix).resolve()
        if prefix == home or home in prefix.parents:
            return text
        solver.snapshot_prefix = "snap"
        return to_text(solver)

    @staticmethod
    def export_argv(prototxt: str, weights: str) -> list[str]:
        return ["--prototxt", prototxt, "--weights", weights, "-o", "out.onnx"]

    @staticmethod
    def _stat(path: Path):
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def restore_seed_files(self) -> None:
        """Write back the seed files that a case changed or removed."""
        for path, data in self.seed_files.items():
            if self._stat(path) != self.seed_stats[path]:
                path.write_bytes(data)
                self.seed_stats[path] = self._stat(path)

    def case(self, kind: str, index: int) -> tuple[str, str, bytes, str]:
        """(outcome, detail, the mutated file, its file name's suffix) of case ``index`` of
        ``kind``."""
        rng = random.Random(f"{self.seed}:{kind}:{index}")
        path = self.dir / f"case.{kind}"
        prog = "allconv-caffe"
        if kind == "onnx":
            prog, name = "export-onnx", rng.choice(self.deploys)
            deploy, weights = f"{name}.deploy", f"{name}.deploy.caffemodel"
            if index % 2:
                path = self.dir / "case.caffemodel"
                data = mutate_model((self.dir / weights).read_bytes(), rng)
                argv = self.export_argv(deploy, str(path))
            else:
                path = self.dir / "case.prototxt"
                data = mutate_text((self.dir / deploy).read_text(), rng)
                argv = self.export_argv(str(path), weights)
        elif kind == "solver":
            data = self.confined(mutate_text(SOLVER + SOLVERS[rng.choice(self.solvers)], rng))
            argv = ["train", "-solver", str(path)]
        else:
            name = rng.choice(self.nets)
            weights = f"{name}.caffemodel"
            if kind == "caffemodel":
                mutate = mutate_model if index % 2 else mutate_bytes
                data = mutate(self.caffemodels[name], rng)
                argv = ["test", "-model", f"{name}.prototxt", "-weights", str(path),
                        "-iterations", "1"]
            else:
                data = mutate_text(NETS[name], rng)
                argv = (["time", "-model", str(path), "-iterations", "1"] if index % 2 else
                        ["test", "-model", str(path), "-weights", weights, "-iterations", "1"])
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        path.write_bytes(data)
        running = None
        if self.keep is not None:   # a crash in native code ends the fuzzer: the case stays
            running = self.keep / f"running-{kind}-{index}{path.suffix}"
            running.write_bytes(data)
        outcome, detail = run_case(argv, self.case_seconds, prog)
        if running is not None:
            running.unlink()
        self.restore_seed_files()
        return outcome, detail, data, path.suffix


class CtrlC:
    """Ctrl-C noted, never raised into a case: Python's C-level signal handler writes each
    signal's number to a wakeup pipe, whichever Python handler is installed at the time (a
    train case's SignalHandler takes SIGINT while it solves), so ``requested()`` after the
    case sees it. SIGINT gets a handler even where the launcher left it ignored."""

    def __enter__(self) -> "CtrlC":
        self._read, write = os.pipe()
        for fd in (self._read, write):
            os.set_blocking(fd, False)
        self._old_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)
        self._old_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._write = write
        return self

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._old_handler)
        os.close(self._read)
        os.close(self._write)

    def requested(self) -> bool:
        """Whether SIGINT came since the last call."""
        seen = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read, 4096):
                seen += chunk
        return signal.SIGINT in seen


@contextlib.contextmanager
def fuzzing(memory_mib: int):
    """A quiet, memory-capped environment in a temporary working folder."""
    old_cwd, old_memory = os.getcwd(), blob_shape.physical_memory
    blob_shape.physical_memory = lambda: memory_mib * 2**20
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    logging.disable(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="allconv-fuzz-") as tmp, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.chdir(tmp)
            yield Path(tmp)
    finally:
        os.chdir(old_cwd)
        logging.disable(logging.NOTSET)
        signal.signal(signal.SIGALRM, old_handler)
        blob_shape.physical_memory = old_memory


def fuzz(kinds, cases: int, seed: int, memory_mib: int = 64, case_seconds: float = 3.0,
         keep: Path | None = None, progress=None, nets=tuple(NETS),
         solvers=tuple(SOLVERS)) -> dict:
    """Run ``cases`` cases of each kind, each from a seed of ``nets`` (prototxt, caffemodel)
    or ``solvers``; ``{kind: {outcome: count}}``. Cases that end in a traceback, an
    unexpected exit or over time are written to ``keep`` with their details. Ctrl-C stops
    it after the case that is running: the KeyboardInterrupt carries the counts so far
    (``.counts``)."""
    counts = {}
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with fuzzing(memory_mib) as workdir, CtrlC() as ctrl_c:
        fuzzer = Fuzzer(workdir, seed, case_seconds, nets, solvers, keep)
        try:
            for kind in kinds:
                tally = counts[kind] = {"cases": 0, "ok": 0, "clean": 0, "traceback": 0,
                                        "mismatch": 0, "other": 0, "slow": 0}
                for i in range(cases):
                    outcome, detail, data, suffix = fuzzer.case(kind, i)
                    tally["cases"] += 1
                    tally[outcome] += 1
                    if keep is not None and outcome in ("traceback", "mismatch", "other", "slow"):
                        (keep / f"{kind}-{i}{suffix}").write_bytes(data)
                        (keep / f"{kind}-{i}.txt").write_text(detail)
                    if progress:
                        progress(kind, i, tally)
                    if ctrl_c.requested():
                        raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            stop.counts = counts
            raise
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000, help="cases per kind (default 10000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the mutations: the same seed, the same cases (default 0)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    p.add_argument("--nets", default=",".join(NETS),
                   help="comma-separated seed nets: " + ", ".join(NETS))
    p.add_argument("--solvers", default=",".join(SOLVERS),
                   help="comma-separated seed solvers: " + ", ".join(SOLVERS))
    p.add_argument("--out", type=Path, help="keep the cases that end in a traceback, a "
                                            "mismatch, another exit, over time or in a crash "
                                            "of the fuzzer itself here")
    p.add_argument("--memory-mib", type=int, default=64, help="largest blob (default 64 MiB)")
    p.add_argument("--case-seconds", type=float, default=3.0,
                   help="time limit of one case (default 3 s)")
    args = p.parse_args()
    chosen = {}
    for option, valid in (("kinds", KINDS), ("nets", NETS), ("solvers", SOLVERS)):
        chosen[option] = getattr(args, option).split(",")
        if unknown := set(chosen[option]) - set(valid):
            p.error(f"unknown {option[:-1]}(s) {sorted(unknown)}; valid: {', '.join(valid)}")
    if "onnx" in chosen["kinds"] and chosen["nets"] == [HDF5_NET]:
        p.error(f"--kinds onnx exports the seed nets' deploy forms, and {HDF5_NET!r} (data "
                "layers that read files) has none: give another with --nets")
    if HDF5_NET in chosen["nets"] and importlib.util.find_spec("h5py") is None:
        p.error(f"the seed net {HDF5_NET!r} reads and writes HDF5, and h5py is not installed: "
                "pip install -e \".[hdf5]\", or leave it out with --nets")
    torch.set_num_threads(1)    # many tiny cases: threads only add overhead
    start = time.perf_counter()

    def progress(kind, i, tally):
        if (i + 1) % 500 == 0:
            print(f"{kind}: {i + 1} cases, {tally['traceback']} tracebacks, {tally['slow']} slow "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    out = args.out.resolve() if args.out else None
    try:
        counts = fuzz(chosen["kinds"], args.cases, args.seed, args.memory_mib,
                      args.case_seconds, out, progress, chosen["nets"], chosen["solvers"])
    except KeyboardInterrupt as stop:
        print(json.dumps(getattr(stop, "counts", {}), indent=1))
        print("fuzz: interrupted; the counts so far are above", file=sys.stderr)
        return 130
    print(json.dumps(counts, indent=1))
    return 1 if any(c["traceback"] or c["mismatch"] or c["other"] for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
