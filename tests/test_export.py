"""ONNX export (runtime/export, export-onnx): onnxruntime against real Caffe's fixture values,
against the runtime on hand-written nets and on real CIFAR-10 images through the in-graph
GCN+ZCA, run folders, and each bad input as one line with exit status 2."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")   # the [onnx] extra: without it, these tests skip
import torch

import fixture_format as ff
from test_caffe_fixtures import METAS, TOL_LAYER, TOL_NETWORK, load, make_inputs, set_weights

from generator.render import NetOptions, render_net
from generator.variants import VARIANTS
from runtime.data import cifar, get_dataset, preprocess
from runtime.errors import AllconvError
from harness import export_onnx as cli
from runtime.export import build_model, check, registry, to_onnx
from runtime.export.walker import needed_layers
from runtime.net import Net
from runtime.proto import pb

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")

SHARED_CIFAR10 = Path(__file__).resolve().parents[1] / ".." / "shared/data/cifar-10-batches-bin"


# ----------------------------------------------------------------------------- real Caffe

def _exportable(net, blob) -> bool:
    types = set(registry.exportable_types())
    return all(layer.param.type in types for layer in needed_layers(net, [blob]))


def _fixture_cases():
    cases = []
    for name, meta in METAS.items():
        if meta["kind"] != "net":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = Net(meta["prototxt"], pb.TEST, seed=0)
        blobs = [k[4:] for k in ff.entry_keys(load(name).files, "fwd:")]
        outputs = [b for b in blobs if b in net.blobs and b not in net.inputs
                   and _exportable(net, b)]
        if outputs:
            cases.append(pytest.param(name, outputs, id=name))
    return cases


def _rows_with_nan(x, caffe, axis=None):
    """ArgMax's outputs of the rows (along ``axis``, else all but the first) holding NaN."""
    nan = (np.isnan(x).reshape(len(x), -1).any(1).reshape(-1, *[1] * (caffe.ndim - 1))
           if axis is None else np.isnan(x).any(axis, keepdims=True))
    return np.broadcast_to(nan, caffe.shape)


# Where onnxruntime does not compute what real Caffe computed (README, export-onnx): Relu(−inf)
# is 0, Caffe's 0·−inf NaN; onnxruntime's LRN rounds its sliding sum without fused multiply-
# adds, so where Caffe's loses k to a huge square and ends below 0 (NaN), it ends at 0 (inf);
# TopK orders a row with NaN by its own rule, not by Caffe's heap steps.
ORT_DIFFERS = {"nonfinite_relu": lambda x, caffe: np.isneginf(x),
               "nonfinite_lrn_k_lost": lambda x, caffe: np.isnan(caffe),
               "nonfinite_argmax": _rows_with_nan, "nonfinite_argmax_top3": _rows_with_nan,
               "nonfinite_argmax_axis": lambda x, caffe: _rows_with_nan(x, caffe, 1)}


@pytest.mark.parametrize("name,outputs", _fixture_cases())
def test_onnxruntime_computes_what_real_caffe_computed(name, outputs):
    """Every fixture net (the 14 generated networks, each layer case: pooling corner cases,
    LRN, groups, Concat, Eltwise, InnerProduct, in-place layers) whose blobs export: the
    exported model, run by onnxruntime with optimisations off and on, against Caffe's values."""
    meta = METAS[name]
    net = Net(meta["prototxt"], pb.TEST, seed=0)
    set_weights(net, meta)
    inputs = make_inputs(meta)
    try:
        model, _ = build_model(net, outputs=outputs)
    except registry.BatchFixed:      # a layer over the batch axis: the prototxt's batch
        model, _ = build_model(net, outputs=outputs,
                               static_batch=len(next(iter(inputs.values()))))
    feeds = {i.name: inputs[i.name] for i in model.graph.input}
    tol = TOL_NETWORK if meta["scale"] == "network" else TOL_LAYER
    with load(name) as z:
        for label, level in check.LEVELS.items():
            got = check.session(model, level).run(outputs, feeds)
            if name in ORT_DIFFERS:     # compared everywhere else
                apart = ORT_DIFFERS[name](inputs["data"], z["fwd:out"])
                assert apart.any()
                got[0] = np.where(apart, z["fwd:out"], got[0])
            errors = {o: ff.rel_error(v, z, f"fwd:{o}") for o, v in zip(outputs, got)}
            bad = {o: e for o, e in errors.items() if not e <= tol}
            assert not bad, f"{name} ({label}): relative errors {bad} > {tol:g}"


def test_all_fourteen_generated_networks_are_compared():
    names = {p.id for p in _fixture_cases()}
    assert {f"net_{v}" for v in VARIANTS} <= names


# ----------------------------------------------------------------------------- hand-written nets

def _input(shape, label=None) -> str:
    """An Input of top "data" ``shape``, and of top "label" ``label`` where given."""
    shapes = [shape] if label is None else [shape, label]
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in s) + " }" for s in shapes)
    tops = ' top: "data"' + ("" if label is None else ' top: "label"')
    return f'layer {{ name: "input" type: "Input"{tops} input_param {{ {dims} }} }}\n'



def _layer(name, type_, bottoms, tops, body="") -> str:
    links = "".join(f' bottom: "{b}"' for b in bottoms) + "".join(f' top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_}"{links} {body} }}\n'


FILLED = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 }'


def _conv(name, bottom, fields) -> str:
    return _layer(name, "Convolution", [bottom], [name],
                  f"convolution_param {{ {fields} {FILLED} }}")


def _pool(name, bottom, fields) -> str:
    return _layer(name, "Pooling", [bottom], [name], f"pooling_param {{ {fields} }}")


def _ip(name, bottom, fields) -> str:
    return _layer(name, "InnerProduct", [bottom], [name],
                  f"inner_product_param {{ {fields} {FILLED} }}")


def _eltwise(name, bottoms, fields) -> str:
    return _layer(name, "Eltwise", bottoms, [name], f"eltwise_param {{ {fields} }}")


HAND_NETS = {
    # AlexNet/CaffeNet's first stage on an odd size: conv 11/4, in-place ReLU, LRN across,
    # max pool 3/2 rounding up, grouped conv, LRN within, dropout in place, inner products.
    "caffenet_like": (
        _input((2, 3, 35, 35))
        + _conv("conv1", "data", "num_output: 8 kernel_size: 11 stride: 4")
        + _layer("relu1", "ReLU", ["conv1"], ["conv1"])
        + _layer("norm1", "LRN", ["conv1"], ["norm1"],
                 "lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 k: 2 }")
        + _pool("pool1", "norm1", "pool: MAX kernel_size: 3 stride: 2")
        + _conv("conv2", "pool1", "num_output: 6 kernel_size: 3 pad: 1 group: 2")
        + _layer("relu2", "ReLU", ["conv2"], ["conv2"], "relu_param { negative_slope: 0.1 }")
        + _layer("norm2", "LRN", ["conv2"], ["norm2"],
                 "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }")
        + _ip("fc", "norm2", "num_output: 7")
        + _layer("drop", "Dropout", ["fc"], ["fc"], "dropout_param { dropout_ratio: 0.5 }")
        + _ip("fc_t", "fc", "num_output: 4 transpose: true")
        + _layer("prob", "Softmax", ["fc_t"], ["prob"]),
        {"Conv", "Relu", "LRN", "MaxPool", "LeakyRelu", "AveragePool", "Pow", "MatMul",
         "Softmax"}),
    # GoogLeNet-like: an inception block (Concat of branches), padded AVE pooling rounding up,
    # an Eltwise of each kind, global max pooling, Flatten.
    "inception_like": (
        _input((2, 4, 9, 9))
        + _conv("a", "data", "num_output: 3 kernel_size: 1")
        + _conv("b", "data", "num_output: 5 kernel_size: 3 pad: 1")
        + _pool("c", "data", "pool: MAX kernel_size: 3 stride: 1 pad: 1")
        + _layer("cat", "Concat", ["a", "b", "c"], ["cat"])
        + _pool("ave", "cat", "pool: AVE kernel_size: 3 stride: 2 pad: 1")
        + _conv("s1", "ave", "num_output: 4 kernel_size: 1")
        + _conv("s2", "ave", "num_output: 4 kernel_size: 1")
        + _eltwise("sum", ["s1", "s2"], "operation: SUM coeff: 0.5 coeff: -2")
        + _eltwise("prod", ["s1", "s2", "sum"], "operation: PROD")
        + _eltwise("max", ["sum", "prod"], "operation: MAX")
        + _pool("gmax", "max", "pool: MAX global_pooling: true")
        + _layer("flat", "Flatten", ["gmax"], ["flat"]),
        {"Concat", "Pad", "AveragePool", "Sum", "Mul", "Greater", "Where", "GlobalMaxPool",
         "Reshape"}),
    # Eltwise of one count in two shapes, as the reference build takes it: each bottom read
    # in bottom 0's shape
    "eltwise_shapes": (
        _input((2, 3, 4, 4))
        + _conv("a", "data", "num_output: 2 kernel_size: 4")
        + _layer("fa", "Flatten", ["a"], ["fa"])
        + _eltwise("sum", ["a", "fa"], "operation: SUM coeff: 0.5 coeff: -2")
        + _eltwise("prod", ["fa", "a"], "operation: PROD")
        + _eltwise("max", ["a", "fa", "sum"], "operation: MAX"),
        {"Shape", "Reshape", "Sum", "Mul", "Greater", "Where"}),
    # Eltwise MAX over bottoms with NaN (the log of the negative inputs): Caffe's comparisons,
    # which ONNX's Max would not keep (it gives NaN wherever a bottom is NaN)
    "eltwise_max_nan": (
        _input((2, 3, 4, 4))
        + _layer("log", "Log", ["data"], ["log"])
        + _layer("neg", "Power", ["data"], ["neg"], "power_param { scale: -1 }")
        + _eltwise("max", ["log", "data", "neg"], "operation: MAX")
        + _eltwise("max2", ["data", "log"], "operation: MAX"),
        {"Greater", "Where"}),
}

# Pooling where Caffe's rounding up changes the output size: (input, kernel, stride, pad,
# Caffe's output size). Floor rounding gives one less in the first four (two with pad);
# 5/2/2/1 rounds up to 4 and Caffe drops the last window, which would start in the padding
# (ONNX's ceil_mode keeps it); 5/1/3/0 has a last window wholly outside the input (MAX gives
# −FLT_MAX there, AVE 0/0 in the column of width 0).
POOLS = [(7, 2, 2, 0, 4), (8, 3, 2, 0, 4), (6, 3, 2, 1, 4), (11, 4, 3, 2, 5), (5, 2, 2, 1, 3),
         (5, 1, 3, 0, 3)]


@pytest.mark.parametrize("name", HAND_NETS)
def test_hand_written_nets_match_the_runtime(name, tmp_path):
    text, ops = HAND_NETS[name]
    net = Net(text, pb.TEST, seed=1)
    worst = to_onnx(net, tmp_path / "m.onnx")
    assert set(worst) == {"optimisations off", "optimisations on"}
    assert max(worst.values()) <= check.TOL_FP32
    assert ops <= {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}


def test_relu_exports_caffes_zeros_and_refuses_minus_infinity(tmp_path):
    """Relu gives Caffe's +0 below zero, so 1/relu(x) is +inf there as in Caffe (LeakyRelu with
    alpha 0 gives −0 and −inf). At −inf Caffe's 0·−inf is NaN and Relu's 0: the check finds it
    and nothing is written (the cube of 1e20·x overflows to ±inf for N(0, 1) inputs)."""
    text = _input((2, 3, 4, 4)) + _layer("relu", "ReLU", ["data"], ["relu"]) + _layer(
        "inverse", "Power", ["relu"], ["inverse"], "power_param { power: -1 }")
    assert max(to_onnx(Net(text, pb.TEST), tmp_path / "m.onnx").values()) == 0
    assert "Relu" in {n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node}
    text = _input((2, 3, 4, 4)) + _layer("cube", "Power", ["data"], ["cube"],
                                         "power_param { power: 3 scale: 1e20 }") + _layer(
        "relu", "ReLU", ["cube"], ["relu"])
    with pytest.raises(check.Mismatch, match="first blob that differs is 'relu'"):
        to_onnx(Net(text, pb.TEST), tmp_path / "n.onnx")
    assert not (tmp_path / "n.onnx").exists()


# LRN across channels where Caffe's sliding window sum meets an infinite square (the MAX
# pooling of a window outside its input gives −FLT_MAX) or a NaN (the log of a negative
# input): NaN for every later channel. ONNX's LRN where onnxruntime takes it (α, β > 0),
# the runtime's composition elsewhere.
LRN_INPUTS = {"pool": _pool("pool", "data", "pool: MAX kernel_size: 1 stride: 3"),
              "log": _layer("pool", "Log", ["data"], ["pool"])}


@pytest.mark.parametrize("params", ["alpha: 0.1 beta: 0.75 k: 2", "alpha: inf beta: 0.75",
                                    "alpha: -0.1 beta: 0.5", "alpha: 0.1 beta: -1",
                                    "alpha: 0 beta: 0.75"])
@pytest.mark.parametrize("source", LRN_INPUTS)
def test_lrn_across_channels_exports_caffes_sliding_sum(params, source, tmp_path):
    text = _input((2, 7, 5, 4)) + LRN_INPUTS[source] + _layer(
        "norm", "LRN", ["pool"], ["norm"], f"lrn_param {{ local_size: 3 {params} }}")
    net = Net(text, pb.TEST, seed=1)
    net.blobs["data"].data[...] = torch.randn(2, 7, 5, 4, generator=torch.Generator().manual_seed(0))
    net.forward()
    assert torch.isnan(net.blobs["norm"].data).any()       # the case reaches the NaN pattern
    to_onnx(net, tmp_path / "m.onnx")
    ops = {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}
    assert ("LRN" in ops) == params.startswith(("alpha: 0.1 beta: 0.75", "alpha: inf"))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("size,kernel,stride,pad,caffe", POOLS)
def test_pooling_that_rounds_up_keeps_caffes_windows(method, size, kernel, stride, pad, caffe,
                                                     tmp_path):
    text = _input((2, 3, size, size + 1)) + _layer(
        "pool", "Pooling", ["data"], ["pool"],
        f"pooling_param {{ pool: {method} kernel_size: {kernel} stride: {stride} pad: {pad} }}")
    net = Net(text, pb.TEST)
    assert net.blobs["pool"].shape[2] == caffe
    to_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    x = np.random.default_rng(size).standard_normal((3, 3, size, size + 1)).astype(np.float32)
    got = check.session(model, check.LEVELS["optimisations on"]).run(None, {"data": x})[0]
    want = check.run_runtime(net, {"data": x})["pool"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)   # NaN only where both are NaN
    assert not any(a.name == "ceil_mode" and a.i for n in model.graph.node for a in n.attribute)


def test_max_pooling_never_takes_nan_or_minus_inf_as_caffe(tmp_path):
    """Real Caffe's tops on this input: pool [[3, 2], [4, 4]] and gpool 4 (onnxruntime's
    MaxPool gave NaN for the first window); a window of only −inf is −FLT_MAX."""
    text = _input((1, 1, 3, 3)) + _layer(
        "pool", "Pooling", ["data"], ["pool"], "pooling_param { pool: MAX kernel_size: 2 "
                                               "stride: 1 }") + _layer(
        "gpool", "Pooling", ["data"], ["gpool"], "pooling_param { pool: MAX global_pooling: "
                                                 "true }")
    net = Net(text, pb.TEST)
    to_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    nan, inf, lowest = np.nan, np.inf, np.finfo(np.float32).min
    x = np.array([[1, nan, 2], [3, 0.5, -1], [nan, 4, 0]], np.float32).reshape(1, 1, 3, 3)
    minus_inf = np.full((1, 1, 3, 3), -inf, np.float32)
    for level in check.LEVELS.values():
        pool, gpool = check.session(model, level).run(["pool", "gpool"], {"data": x})
        np.testing.assert_array_equal(pool, [[[[3, 2], [4, 4]]]])
        np.testing.assert_array_equal(gpool, [[[[4]]]])
        pool, gpool = check.session(model, level).run(["pool", "gpool"], {"data": minus_inf})
        assert (pool == lowest).all() and (gpool == lowest).all()


def test_static_batch_opset_fp16_and_metadata(tmp_path):
    net = Net(render_net(VARIANTS["all-c"], NetOptions(deploy=True)), pb.TEST, seed=0)
    worst = to_onnx(net, tmp_path / "m.onnx", static_batch=4, opset=17, fp16=True,
                    variant="all-c", classes=list("abcdefghij"))
    assert max(worst.values()) <= check.TOL_FP16
    model = onnx.load(tmp_path / "m.onnx")
    # the file format opset 17 needs, IR 8 (onnx wrote its newest, 14, which onnxruntime 1.16
    # refuses though it runs opsets 17 and 18; helper onnx23)
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    (data,), (prob,) = model.graph.input, model.graph.output
    assert data.name == "data" and prob.name == "prob"
    assert [d.dim_value for d in data.type.tensor_type.shape.dim] == [4, 3, 32, 32]
    assert data.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    props = {p.key: p.value for p in model.metadata_props}
    assert props["allconv.net"] == "All-CNN-C" and props["allconv.variant"] == "all-c"
    assert json.loads(props["allconv.classes"]) == list("abcdefghij")
    assert json.loads(props["allconv.input"]) == {"name": "data", "layout": "NCHW",
                                                  "dtype": "float16", "shape": [4, 3, 32, 32]}
    dynamic, _ = build_model(net)
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert dynamic.opset_import[0].version == 18 and dynamic.ir_version == 8
    assert build_model(net, opset=22)[0].ir_version == 10


def test_an_input_rewritten_in_place_is_left_out_of_the_outputs_with_a_warning(tmp_path):
    """Caffe's outputs include an Input top a layer rewrites in place; ONNX names the graph
    input alike, so the export leaves it out, and now says so (it was silent; onnx23)."""
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 } } }
layer { name: "data2" type: "Input" top: "data2" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }
layer { name: "pw" type: "Power" bottom: "data2" top: "data2" power_param { scale: 2 } }
""", pb.TEST)
    assert net.outputs == ["data2", "r"]      # as Caffe lists them
    with pytest.warns(UserWarning, match=r"output blob\(s\) 'data2' of the net are Input tops "
                                         r"rewritten in place: .* leaves them out"):
        to_onnx(net, tmp_path / "m.onnx")
    assert [o.name for o in onnx.load(tmp_path / "m.onnx").graph.output] == ["r"]


def test_a_mismatch_names_the_output_and_first_blob_and_writes_nothing(tmp_path, monkeypatch):
    net = Net(HAND_NETS["caffenet_like"][0], pb.TEST, seed=1)
    relu = registry.CONVERTERS["ReLU"]

    def wrong_relu2(graph, layer, bottoms, tops, shapes):
        if layer.name == "relu2":
            graph.node("Relu", bottoms, tops)   # drops the negative slope
        else:
            relu(graph, layer, bottoms, tops, shapes)
    monkeypatch.setitem(registry.CONVERTERS, "ReLU", wrong_relu2)
    with pytest.raises(check.Mismatch, match=r"output 'prob' .* first blob that differs is "
                                             r"'conv2'; nothing was written"):
        to_onnx(net, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- preprocessing

def fast_whitening(images) -> preprocess.Whitening:
    """GCN as the harness computes it and a real whitening of those images, made fast for the
    tests: the inverse Cholesky factor of the ZCA covariance instead of the ZCA matrix (the
    3072×3072 eigh takes a minute on a small CPU). The graph applies any matrix the same way."""
    x = preprocess.global_contrast_normalize(
        torch.from_numpy(images.reshape(len(images), -1)).double())
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    cov += preprocess.FILTER_BIAS * torch.eye(len(cov), dtype=x.dtype)
    factor = torch.linalg.cholesky(cov)
    identity = torch.eye(len(cov), dtype=x.dtype)
    matrix = torch.linalg.solve_triangular(factor, identity, upper=False).T
    return preprocess.Whitening(mean.numpy(), matrix.contiguous().numpy())


def fast_gcn_zca(train_images, test_images, device=None, stage=None):
    """Stands in for preprocess.gcn_zca in the run-folder tests (see fast_whitening)."""
    whitening = fast_whitening(train_images)
    return whitening(train_images, "cpu"), whitening(test_images, "cpu"), whitening


def _deploy_net(variant="all-c", seed=0):
    return Net(render_net(VARIANTS[variant], NetOptions(deploy=True)), pb.TEST, seed=seed)


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="no shared CIFAR-10 copy")
def test_with_preprocessing_on_real_cifar10_images_matches_the_harness_and_runtime(tmp_path):
    train, _ = get_dataset("cifar10").load("train", SHARED_CIFAR10, verify=False)
    test, _ = get_dataset("cifar10").load("test", SHARED_CIFAR10, verify=False)
    whitening = fast_whitening(train[:1000])
    net = _deploy_net()
    to_onnx(net, tmp_path / "m.onnx", whitening=whitening)
    model = onnx.load(tmp_path / "m.onnx")
    (image,) = model.graph.input
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    images = test[:100]
    got = check.session(model, check.LEVELS["optimisations on"]).run(
        ["prob"], {"image": np.ascontiguousarray(images.transpose(0, 2, 3, 1))})[0]
    want = check.run_runtime(net, {"data": whitening(images, "cpu")})["prob"]
    assert np.abs(got - want).max() <= 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()
    props = {p.key: json.loads(p.value) for p in model.metadata_props if p.key == "allconv.input"}
    assert props["allconv.input"]["shape"] == ["N", 32, 32, 3]


def test_with_preprocessing_in_fp16_and_opset_17(tmp_path):
    rng = np.random.default_rng(0)
    whitening = fast_whitening(rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8))
    worst = to_onnx(_deploy_net("strided-a"), tmp_path / "m.onnx", whitening=whitening, fp16=True,
                    opset=17)
    assert max(worst.values()) <= check.TOL_FP16


def test_with_preprocessing_refuses_a_computed_blob_named_like_its_graph_input(tmp_path):
    """A layer's top named ``image`` beside the graph input ``image``: two values of one name,
    the ONNX checker's refusal after the work. The net's own input may be named so."""
    deploy = render_net(VARIANTS["all-c"], NetOptions(deploy=True))
    whitening = fast_whitening(np.zeros((4, 3, 32, 32), np.uint8))
    with pytest.raises(AllconvError, match="^--with-preprocessing names its graph input "
                                           "'image', and so does a blob of the net: rename it$"):
        to_onnx(Net(deploy.replace('"conv1"', '"image"'), pb.TEST), tmp_path / "m.onnx",
                whitening=whitening)
    assert not (tmp_path / "m.onnx").exists()
    to_onnx(Net(deploy.replace('"data"', '"image"'), pb.TEST), tmp_path / "m.onnx",
            whitening=whitening)
    assert [i.name for i in onnx.load(tmp_path / "m.onnx").graph.input] == ["image"]


# ----------------------------------------------------------------------------- run folders

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A replicate run folder of All-CNN-C from two CPU iterations on a tiny CIFAR-10 copy."""
    from harness.specs import load_spec
    from harness.train import train
    from test_harness import options, tiny_spec, write_cifar10_bin
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(preprocess, "gcn_zca", fast_gcn_zca)
        data = write_cifar10_bin(tmp_path_factory.mktemp("cifar"), n_train=32, n_test=16)
        spec = load_spec(tiny_spec(tmp_path_factory.mktemp("specs"), "all-cnn-c", batch_size=16))
        folder = tmp_path_factory.mktemp("run") / "lr-0.01-smoke"
        result = train(spec, options(data), folder)
        yield folder, result, data


def test_a_run_folder_records_its_deploy_net_and_provenance(run_dir):
    folder, _, _ = run_dir
    config = json.loads((folder / "run.json").read_text())
    provenance = config["provenance"]
    assert provenance["dataset"] == "cifar10" and provenance["commit"]
    assert Path(provenance["whitening"]["cache_entry"]).name.startswith("cifar10-")
    assert Net(folder / "deploy.prototxt", pb.TEST).inputs == ["data"]


def test_a_run_on_data_in_memory_names_no_whitening_and_export_asks_for_data(run_dir, tmp_path,
                                                                          monkeypatch):
    """A run handed its data in memory (a test, a torchrun worker, a benchmark) has no release
    to name: its run.json says so, no download is tried, and --run without --data is refused."""
    from harness import run_folder
    from runtime.errors import AllconvError
    folder, _, _ = run_dir
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("run.json", "deploy.prototxt", "checkpoint_iter_2.caffemodel", "metrics.jsonl"):
        (copy / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(cifar, "download", lambda *a: pytest.fail("no download may be tried"))
    empty = tmp_path / "no-cifar"
    empty.mkdir()
    run = run_folder.RunFolder(copy)
    run.write_record(run.settings, run_folder.provenance(
        commit=None, variant=run.variant, dataset=run.dataset, classes=run.classes,
        whitening=run_folder.whitening_identity(run.dataset, str(empty))))
    assert json.loads((copy / "run.json").read_text())["provenance"]["whitening"] is None
    with pytest.raises(AllconvError, match="names no whitening .* give --data"):
        run_folder.RunFolder.read(copy).whitening()


def test_export_a_run_folder_with_preprocessing(run_dir, tmp_path, capsys):
    folder, result, _ = run_dir
    out = tmp_path / "run.onnx"
    assert cli.main(["--run", str(folder), "-o", str(out), "--with-preprocessing"]) == 0
    model = onnx.load(out)
    props = {p.key: json.loads(p.value) if p.key != "allconv.net" and p.key != "allconv.variant"
             else p.value for p in model.metadata_props}
    assert props["allconv.variant"] == "all-c"
    assert props["allconv.classes"] == list(get_dataset("cifar10").class_names)
    assert props["allconv.input"]["name"] == "image" and props["allconv.input"]["dtype"] == "uint8"
    provenance = props["allconv.provenance"]
    assert provenance["test_error"] == result["test_error"] and provenance["seed"] == 0
    assert provenance["snapshot"] == "checkpoint_iter_2.caffemodel" and provenance["finished"]
    settings = json.loads((folder / "run.json").read_text())
    assert (provenance["epochs"], provenance["eval_limit"]) == (settings["epochs"],
                                                                settings["eval_limit"])
    assert "variant = " in provenance["spec"] and provenance["commit"]
    assert "optimisations on" in capsys.readouterr().err
    # Weights from elsewhere: the run's test error is not theirs
    other = tmp_path / "other.caffemodel"
    other.write_bytes((folder / "checkpoint_iter_2.caffemodel").read_bytes())
    assert cli.main(["--run", str(folder), "--weights", str(other), "-o", str(out)]) == 0
    provenance = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}
                            ["allconv.provenance"])
    assert provenance["test_error"] is None and provenance["snapshot"] == "other.caffemodel"
    # An unfinished run: the error of the evaluation at the snapshot's iteration
    unfinished = tmp_path / "unfinished"
    shutil.copytree(folder, unfinished)
    (unfinished / "result.json").unlink()
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    at_2 = next(r["test_error"] for r in records if r["iter"] == 2 and "test_error" in r)
    with pytest.warns(UserWarning, match="unfinished is unfinished: these weights are its "
                      r"snapshot of iteration 2 \(epoch 1 of 1\), not a trained net's"):
        assert cli.main(["--run", str(unfinished), "-o", str(out)]) == 0
    provenance = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}
                            ["allconv.provenance"])
    assert provenance["test_error"] == at_2 and not provenance["finished"]
    # a snapshot before any evaluation (Ctrl-C): its epoch from the solver's iterations per
    # epoch (before: from the first record's rounded epoch, and none without a record)
    (unfinished / "metrics.jsonl").write_text("")
    with pytest.warns(UserWarning, match=r"snapshot of iteration 2 \(epoch 1 of 1\), not a"):
        assert cli.main(["--run", str(unfinished), "-o", str(out)]) == 0
    # The exported graph, fed raw images, gives the trained net's probabilities.
    images = np.random.default_rng(1).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    net = cli.load_deploy_net(folder / "deploy.prototxt", folder / "checkpoint_iter_2.caffemodel")
    whitening = preprocess.Whitening.load(
        Path(json.loads((folder / "run.json").read_text())["provenance"]["whitening"]
             ["cache_entry"]) / "whitening.npz")
    want = check.run_runtime(net, {"data": whitening(images, "cpu")})["prob"]
    got = check.session(model, check.LEVELS["optimisations off"]).run(
        ["prob"], {"image": images.transpose(0, 2, 3, 1).copy()})[0]
    assert np.abs(got - want).max() <= 1e-4


def test_dataset_must_match_the_run_and_must_do_something(run_dir, tmp_path, capsys):
    """--dataset beside --run is the run's own or an error; beside --prototxt it names the
    dataset of --data or --with-preprocessing, and alone it does nothing: an error."""
    folder, _, _ = run_dir
    out = ["-o", str(tmp_path / "m.onnx")]
    err = _bad(tmp_path, ["--run", str(folder), "--dataset", "cifar100", "--with-preprocessing"]
               + out, capsys)
    assert f"--dataset cifar100 contradicts the run {folder}, which trained on cifar10" in err
    assert not (tmp_path / "m.onnx").exists()
    assert cli.main(["--run", str(folder), "--dataset", "cifar10", "--skip-check"] + out) == 0
    capsys.readouterr()
    err = _bad(tmp_path, ["--prototxt", str(folder / "deploy.prototxt"), "--weights",
                          str(folder / "checkpoint_iter_2.caffemodel"), "--dataset", "cifar100"]
               + ["-o", str(tmp_path / "n.onnx")], capsys)
    assert "--dataset cifar100 does nothing without --with-preprocessing or --data" in err
    assert not (tmp_path / "n.onnx").exists()


def test_class_names_must_fit_the_net_and_data_must_hold_the_release(run_dir, tmp_path,
                                                                     capsys):
    """Before: a 10-class net exported with --dataset cifar100 got 100 class names (a
    100-class net 10), and --data of a missing folder without --with-preprocessing was
    accepted unread; both exited 0."""
    folder, _, data = run_dir
    net = ["--prototxt", str(folder / "deploy.prototxt"), "--weights",
           str(folder / "checkpoint_iter_2.caffemodel"), "-o", str(tmp_path / "m.onnx")]
    err = _bad(tmp_path, net + ["--data", str(data), "--dataset", "cifar100"], capsys)
    assert err == ("export-onnx: error: cifar100 has 100 classes, and no output of the model "
                   "has 100 channels (prob (1, 10, 1, 1)): give the net's own --dataset\n")
    err = _bad(tmp_path, net + ["--data", str(tmp_path / "nowhere")], capsys)
    assert err.startswith(f"export-onnx: error: --data: CIFAR-10 train files not found in "
                          f"{tmp_path / 'nowhere'}: put data_batch_1.bin")
    assert not (tmp_path / "m.onnx").exists()
    assert cli.main(net + ["--data", str(data), "--skip-check"]) == 0
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert len(json.loads(props["allconv.classes"])) == 10
    # a model without the preprocessing says how its input is made
    assert props["allconv.input_prepared"].startswith("a CIFAR-10 image whitened as the harness "
                                                      "trains on it: GCN (scale 55) and the ZCA")


def test_export_with_data_whitens_from_the_harness_cache(run_dir, tmp_path, monkeypatch):
    folder, _, data = run_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(json.loads((folder / "run.json").read_text())
                                                  ["provenance"]["whitening"]["cache_entry"])
                                             .parents[2]))
    out = tmp_path / "m.onnx"
    assert cli.main(["--prototxt", str(folder / "deploy.prototxt"), "--weights",
                     str(folder / "checkpoint_iter_2.caffemodel"), "-o", str(out),
                     "--with-preprocessing", "--data", str(data), "--no-verify",
                     "--static-batch", "2"]) == 0
    assert onnx.load(out).graph.input[0].name == "image"


# ----------------------------------------------------------------------------- bad input

UNSUPPORTED = ('layer { name: "input" type: "Input" top: "data" top: "label" '
               'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } shape { dim: 1 } } }\n'
               + _layer("ip", "InnerProduct", ["data"], ["ip"],
                        f"inner_product_param {{ num_output: 3 {FILLED} }}")
               + _layer("accuracy", "Accuracy", ["ip", "label"], ["accuracy"]))


def _bad(tmp_path, argv, capsys) -> str:
    from runtime.cli_support import run_cli
    assert run_cli(cli.main, "export-onnx", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("export-onnx: error: "), err
    return err


def test_another_commands_spelling_of_the_output_is_said_before_the_missing_net(tmp_path,
                                                                                capsys):
    """export-onnx --outfile x.onnx: argparse's "one of the arguments --prototxt --run is
    required" came first and named no output option. (--out, the other commands' spelling,
    is an alias of --output since a new user tried it.)"""
    assert _bad(tmp_path, ["--outfile", "x.onnx"], capsys) == (
        "export-onnx: error: unrecognized arguments: --outfile x.onnx (did you mean --out?) "
        "(see --help)\n")


def test_a_command_line_run_leaves_no_name_for_later_warnings(tmp_path, capsys):
    """replicate's warning lines take the name of the command line running; after it
    returns, library code warns as itself (the name stayed: 'export-onnx: warning: ...')."""
    import contextvars

    from runtime.cli_support import warning_line

    def run_then_warn():
        _bad(tmp_path, ["--out", "x.onnx"], capsys)
        return warning_line("w")
    assert contextvars.Context().run(run_then_warn) == "warning: w"   # no earlier test's name


def _files(tmp_path, text, name="net"):
    proto = tmp_path / f"{name}.prototxt"
    proto.write_text(text)
    Net(text, pb.TEST, seed=0).save(tmp_path / f"{name}.caffemodel")
    return str(proto), str(tmp_path / f"{name}.caffemodel")


def test_an_unsupported_layer_is_named_with_what_exports(tmp_path, capsys):
    """An Accuracy names the blob to export instead; a layer of another type that does not
    export (a Silence) lists the types that do."""
    proto, weights = _files(tmp_path, UNSUPPORTED)
    err = _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o",
                          str(tmp_path / "m.onnx")], capsys)
    assert "layer 'accuracy' (Accuracy): an Accuracy layer scores predictions" in err
    assert "export the blob it reads instead (--outputs ip)" in err
    assert not (tmp_path / "m.onnx").exists()
    silence = Net(UNSUPPORTED.replace('type: "Accuracy"', 'type: "Silence"')
                  .replace('top: "accuracy"', ""), pb.TEST).layers[-1]
    with pytest.raises(AllconvError, match=re.escape(
            f"layer 'accuracy' (Silence): this layer type does not export to ONNX (exportable: "
            f"{', '.join(registry.exportable_types())})")):
        registry.converter_for(silence)
    assert {"Concat", "Convolution", "InnerProduct", "Input", "Pooling", "ReLU"} <= set(
        registry.exportable_types())


def test_stochastic_pooling_is_refused_in_one_line(tmp_path, capsys):
    """It builds (as in Caffe) but runs nowhere here: its export would have been an AVE pool."""
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
            'dim: 4 dim: 4 } } }\nlayer { name: "pool" type: "Pooling" bottom: "x" top: "y" '
            'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }\n')
    (tmp_path / "net.prototxt").write_text(text)
    for check in ([], ["--skip-check"]):
        assert "layer 'pool' (Pooling): STOCHASTIC pooling does not export" in _bad(
            tmp_path, ["--prototxt", str(tmp_path / "net.prototxt"), "-o",
                       str(tmp_path / "m.onnx")] + check, capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_im2col_off_the_channel_axis_is_refused_naming_layer_and_type(tmp_path, capsys):
    """Caffe runs it (columns of axis 2's rows); ONNX's Conv takes channels on axis 1 alone."""
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
            'dim: 3 dim: 5 } } }\nlayer { name: "i2c" type: "Im2col" bottom: "x" top: "y" '
            'convolution_param { axis: 2 kernel_size: 2 } }\n')
    (tmp_path / "net.prototxt").write_text(text)
    assert "layer 'i2c' (Im2col): only channel axis 1 exports, not axis 2" in _bad(
        tmp_path, ["--prototxt", str(tmp_path / "net.prototxt"), "-o", str(tmp_path / "m.onnx")],
        capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_missing_weights(tmp_path, capsys):
    proto, weights = _files(tmp_path, HAND_NETS["caffenet_like"][0])
    out = str(tmp_path / "m.onnx")
    assert "learn: give their weights (--weights W.caffemodel)" in _bad(
        tmp_path, ["--prototxt", proto, "-o", out], capsys)
    assert "no such file" in _bad(tmp_path, ["--prototxt", proto, "--weights",
                                             str(tmp_path / "nope.caffemodel"), "-o", out], capsys)
    _, other = _files(tmp_path, UNSUPPORTED, "other")
    assert "no weights for layer(s) conv1, conv2, fc, fc_t (the file has: ip)" in _bad(
        tmp_path, ["--prototxt", proto, "--weights", other, "-o", out], capsys)
    assert "no snapshot" in _bad(tmp_path, ["--run", str(_empty_run(tmp_path)), "-o", out], capsys)
    # before: an ONNX model written under any name
    assert ("export-onnx: error: argument -o/--output/--out: y.txt: the ONNX model must end in .onnx"
            in _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o", "y.txt"], capsys))
    assert not (tmp_path / "y.txt").exists()


def _empty_run(tmp_path) -> Path:
    from harness import run_folder
    folder = tmp_path / "run"
    folder.mkdir()
    run_folder.RunFolder(folder).write_record(
        {"row": "table3/all-cnn-c"}, run_folder.provenance(
            commit=None, variant="all-c", dataset="cifar10", classes=list("abcdefghij"), whitening=None),
        deploy=HAND_NETS["caffenet_like"][0])
    return folder


def test_unwritable_output_and_other_bad_options(tmp_path, capsys):
    proto, weights = _files(tmp_path, HAND_NETS["caffenet_like"][0])
    base = ["--prototxt", proto, "--weights", weights]
    assert "cannot write" in _bad(tmp_path, base + ["-o", str(tmp_path / "no" / "m.onnx")], capsys)
    out = ["-o", str(tmp_path / "m.onnx")]
    assert "opset 16 is too old" in _bad(tmp_path, base + out + ["--opset", "16"], capsys)
    assert "argument --static-batch: must be positive, not 0" in _bad(
        tmp_path, base + out + ["--static-batch", "0"], capsys)
    assert "argument --opset: 'x' is not an integer" in _bad(tmp_path, base + out + ["--opset", "x"],
                                                             capsys)
    # the check's random inputs at 2^31 - 1 images cannot be allocated: one line
    assert "checking at batch 2147483647 does not fit in memory: give a smaller " \
        "--static-batch, or --skip-check; nothing was written" in _bad(
            tmp_path, base + out + ["--static-batch", "2147483647"], capsys)
    # past an int (before: numpy's or onnx's ValueError traceback, with --skip-check too)
    for batch in ("9223372036854775807", "99999999999999999999"):
        assert (f"argument --static-batch: must be at most 2147483647 (Caffe's blob dimensions "
                f"are ints), not {batch}") in _bad(
            tmp_path, base + out + ["--static-batch", batch, "--skip-check"], capsys)
    assert not (tmp_path / "m.onnx").exists()
    assert f"{weights}: a file; give its run folder, {tmp_path}" in _bad(
        tmp_path, ["--run", weights] + out, capsys)
    assert "not a replicate run folder" in _bad(tmp_path, ["--run", str(tmp_path)] + out, capsys)
    for run in ("t/row/lr-0.01", "t/row/lr-0.05"):     # a row's folder: its runs are named
        (tmp_path / "rows" / run).mkdir(parents=True)
        (tmp_path / "rows" / run / "run.json").write_text("{}")
    assert (f"{tmp_path / 'rows' / 't'}: not a replicate run folder (no run.json); the run "
            "folders in it: row/lr-0.01, row/lr-0.05\n") in _bad(
        tmp_path, ["--run", str(tmp_path / "rows" / "t")] + out, capsys)
    assert f"{tmp_path / 'nope'}: no such run folder" in _bad(
        tmp_path, ["--run", str(tmp_path / "nope")] + out, capsys)
    row = tmp_path / "rows" / "t" / "row"      # a run's name mistyped: its neighbours named
    assert (f"{row / 'lr-0.01-smoke'}: no such run folder (did you mean lr-0.01, "
            "lr-0.05?)\n") in _bad(tmp_path, ["--run", str(row / "lr-0.01-smoke")] + out, capsys)
    assert (f"{row / 'seed-1'}: no such run folder (the run folders beside it: lr-0.01, "
            "lr-0.05)\n") in _bad(tmp_path, ["--run", str(row / "seed-1")] + out, capsys)


def test_with_preprocessing_needs_a_3x32x32_input(tmp_path, capsys):
    proto, weights = _files(tmp_path, HAND_NETS["caffenet_like"][0])
    err = _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o",
                          str(tmp_path / "m.onnx"), "--with-preprocessing"], capsys)
    assert "one 3×32×32 input" in err and "data (2, 3, 35, 35)" in err


def test_a_run_whose_whitening_left_the_cache_needs_the_same_data(run_dir, tmp_path, capsys):
    folder, _, data = run_dir
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("deploy.prototxt", "checkpoint_iter_2.caffemodel"):
        (copy / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "run.json").read_text())
    config["provenance"]["whitening"]["cache_entry"] = str(tmp_path / "gone" / "cifar10-0000")
    (copy / "run.json").write_text(json.dumps(config))
    err = _bad(tmp_path, ["--run", str(copy), "-o", str(tmp_path / "m.onnx"),
                          "--with-preprocessing", "--data", str(data), "--no-verify"], capsys)
    assert "the run trained on the whitening cifar10-0000" in err and "give --data" in err


def test_data_given_with_a_run_is_checked_even_when_its_whitening_is_cached(run_dir, tmp_path,
                                                                            capsys):
    """--data is never ignored: a folder without the release, or with another release than the
    run trained on, is refused though the run's whitening is in the cache."""
    folder, _, data = run_dir
    out = ["-o", str(tmp_path / "m.onnx"), "--with-preprocessing"]
    err = _bad(tmp_path, ["--run", str(folder), *out, "--data", str(tmp_path / "nope")], capsys)
    assert str(tmp_path / "nope") in err
    other = tmp_path / "other"
    shutil.copytree(data, other)
    batch = next(other.rglob("data_batch_1.bin"))
    batch.write_bytes(bytes([1]) + batch.read_bytes()[1:])
    err = _bad(tmp_path, ["--run", str(folder), *out, "--data", str(other), "--no-verify"], capsys)
    assert f"the CIFAR files in --data {other} give" in err
    assert cli.main(["--run", str(folder), *out, "--data", str(data), "--no-verify"]) == 0


@pytest.mark.parametrize("argv", [["--help"], ["--prototxt", "d.prototxt", "-o", "m.onnx"]])
def test_without_onnx_installed_the_command_says_how_to_get_it(argv):
    """In a Python where onnx and onnxruntime cannot be imported, --help still works, and an
    export says how to install them."""
    code = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, *a: None if n.startswith('onnx') else "
            "real(n, *a)\n"
            "sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
            f"sys.argv = ['export-onnx', *{argv!r}]\n"
            "from harness.export_onnx import entry_point\n"
            "entry_point()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if argv == ["--help"]:
        assert done.returncode == 0 and "--with-preprocessing" in done.stdout, done.stderr
        return
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ('export-onnx: error: export-onnx needs onnx and onnxruntime: pip '
                           'install -e ".[onnx]" in the allconv checkout (or pip install onnx '
                           'onnxruntime)\n')


# ----------------------------------------------------------------------------- issue 18

def test_outputs_give_the_scores_before_the_softmax(tmp_path):
    """--outputs global_pool,prob: the model returns the N×10 scores and the probabilities,
    each equal to the runtime's blob."""
    proto, weights = _files(tmp_path, render_net(VARIANTS["all-c"], NetOptions(deploy=True)))
    out = tmp_path / "m.onnx"
    assert cli.main(["--prototxt", proto, "--weights", weights, "-o", str(out),
                     "--outputs", "global_pool,prob"]) == 0
    model = onnx.load(out)
    assert [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
            for o in model.graph.output] == [("global_pool", ["N", 10, 1, 1]),
                                             ("prob", ["N", 10, 1, 1])]
    images = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    scores, prob = check.session(model, check.LEVELS["optimisations on"]).run(
        None, {"data": images})
    want = check.run_runtime(cli.load_deploy_net(proto, weights), {"data": images})
    assert np.abs(scores - want["global_pool"]).max() <= 1e-4
    assert np.abs(prob - want["prob"]).max() <= 1e-6
    assert not np.allclose(scores, prob)


def test_a_train_val_nets_scores_export_with_a_dynamic_batch(tmp_path):
    """--outputs ip of a net whose Accuracy and loss read a label of the prototxt's batch:
    the model (data -> ip) takes any batch, as Caffe's net does with its label reshaped too;
    the check runs the exported layers alone, so the label no longer pins the batch at 4."""
    text = (_input((4, 3, 8, 8), label=(4,))
            + _layer("conv", "Convolution", ["data"], ["conv"],
                     f"convolution_param {{ num_output: 4 kernel_size: 3 {FILLED} }}")
            + _layer("ip", "InnerProduct", ["conv"], ["ip"],
                     f"inner_product_param {{ num_output: 3 {FILLED} }}")
            + _layer("acc", "Accuracy", ["ip", "label"], ["acc"])
            + _layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"]))
    net = Net(text, pb.TEST, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no "the model's batch is fixed" warning
        to_onnx(net, tmp_path / "m.onnx", outputs=["ip"])
    model = onnx.load(tmp_path / "m.onnx")
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input] == [["N", 3, 8, 8]]
    images = np.random.default_rng(3).standard_normal((7, 3, 8, 8)).astype(np.float32)
    got, = check.session(model, check.LEVELS["optimisations off"]).run(None, {"data": images})
    want = check.run_runtime(net, {"data": images, "label": np.zeros(7, np.float32)})
    assert np.abs(got - want["ip"]).max() <= 1e-5
    assert net.blobs["data"].shape == (4, 3, 8, 8) and net.blobs["label"].shape == (4,)


def test_a_part_of_a_net_exports_its_own_layers_weights(tmp_path):
    """Two layers named 'ip' (Caffe takes it), the second a head --outputs a does not need:
    the exported part takes each layer's weights from the layer it copies (by name, it took
    the second's: 1.09 off, unseen by the check), and a net loaded from weights whose
    prototxt has no fillers warns of none."""
    text = (_input((2, 3), label=(2,))
            + _layer("ip", "InnerProduct", ["data"], ["a"],
                     f"inner_product_param {{ num_output: 3 {FILLED} }}")
            + _layer("ip", "InnerProduct", ["data"], ["b"],
                     f"inner_product_param {{ num_output: 3 {FILLED} }}")
            + _layer("loss", "SoftmaxWithLoss", ["b", "label"], ["loss"]))
    net = Net(text, pb.TEST, seed=1)
    images = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    to_onnx(net, tmp_path / "m.onnx", outputs=["a"])
    got, = check.session(onnx.load(tmp_path / "m.onnx"),
                         check.LEVELS["optimisations off"]).run(None, {"data": images})
    want = check.run_runtime(net, {"data": images, "label": np.zeros(5, np.float32)})
    assert np.abs(got - want["a"]).max() <= 1e-5 and np.abs(got - want["b"]).max() > 0.1

    plain = text.replace(FILLED, "")
    net.save(tmp_path / "w.caffemodel")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # "has no weight_filler" for the part's layers
        to_onnx(Net(plain, pb.TEST, weights=tmp_path / "w.caffemodel"), tmp_path / "m.onnx",
                outputs=["a"])


def test_unknown_or_repeated_outputs_are_one_line(tmp_path, capsys):
    proto, weights = _files(tmp_path, HAND_NETS["caffenet_like"][0])
    base = ["--prototxt", proto, "--weights", weights, "-o", str(tmp_path / "m.onnx")]
    net = Net(HAND_NETS["caffenet_like"][0], pb.TEST)
    assert (f"unknown output blob(s) 'scores' (blobs: {', '.join(net.blobs)})"
            in _bad(tmp_path, base + ["--outputs", "conv1,scores"], capsys))
    # a blob read twice: the Split tops Caffe inserts are no names the user gave (newcomer41)
    split = Net(_input((1, 3)) + _layer("s", "Sigmoid", ["data"], ["s"])
                + _layer("a", "AbsVal", ["s"], ["a"]) + _layer("b", "TanH", ["s"], ["b"]),
                pb.TEST)
    with pytest.raises(AllconvError, match=r"'nope' \(blobs: data, s, a, b\)$"):
        needed_layers(split, ["nope"])
    assert "argument --outputs: conv1 is given twice in 'conv1,conv1'" in _bad(
        tmp_path, base + ["--outputs", "conv1,conv1"], capsys)
    assert "argument --outputs: an empty blob name (in 'conv1,')" in _bad(
        tmp_path, base + ["--outputs", "conv1,"], capsys)
    assert ("output blob(s) 'data' are net inputs (an Input top names the graph input, even "
            "where a layer rewrites it in place); name a blob computed by a layer") in _bad(
        tmp_path, base + ["--outputs", "data"], capsys)      # was: "the net has no Input layer"
    assert not (tmp_path / "m.onnx").exists()


def test_an_unwritable_output_names_the_users_path_and_is_checked_first(tmp_path, capsys,
                                                                        monkeypatch):
    """Before: "/proc/tmp…: No such file or directory", a temporary folder's name."""
    proto, weights = _files(tmp_path, HAND_NETS["caffenet_like"][0])
    monkeypatch.setattr(cli, "load_deploy_net", lambda *a: pytest.fail("checked before any work"))
    err = _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o", "/proc/o.onnx"],
               capsys)
    assert err.startswith("export-onnx: error: /proc/o.onnx: cannot write: /proc takes no new "
                          "file"), err
    assert "/proc/tmp" not in err and "/proc/." not in err
    (tmp_path / "d.onnx").mkdir()
    assert "is a folder" in _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o",
                                            str(tmp_path / "d.onnx")], capsys)


def _outputs(path, images):
    return check.session(path, check.LEVELS["optimisations off"]).run(None, {"data": images})


def test_a_small_model_is_written_directly_and_a_large_one_beside_its_data(tmp_path,
                                                                          monkeypatch):
    """Under 2 GB: no temporary folder, one file written atomically. Over it (the limit set to
    0 here): the model and ``<name>.<8 hex>.data`` beside it, checked by onnxruntime from the
    saved files, no temporary folder left behind; written again, the old data file goes."""
    from runtime.export import model as export_model
    net = Net(HAND_NETS["caffenet_like"][0], pb.TEST, seed=3)
    with monkeypatch.context() as mp:
        mp.setattr(export_model.tempfile, "TemporaryDirectory",
                   lambda *a, **k: pytest.fail("no temporary folder for a small model"))
        to_onnx(net, tmp_path / "small.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.onnx"]
    monkeypatch.setattr(export_model, "PROTOBUF_LIMIT", 0)
    images = np.random.default_rng(0).standard_normal((2, 3, 35, 35)).astype(np.float32)
    small = _outputs(tmp_path / "small.onnx", images)
    for _ in range(2):
        worst = to_onnx(net, tmp_path / "large.onnx")
        assert max(worst.values()) <= check.TOL_FP32
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 3 and re.fullmatch(r"large\.onnx\.[0-9a-f]{8}\.data", names[1])
        assert names[::2] == ["large.onnx", "small.onnx"]
        for a, b in zip(small, _outputs(tmp_path / "large.onnx", images)):
            np.testing.assert_array_equal(a, b)
    (tmp_path / "sub").mkdir()                 # a link within its folder: written through
    (tmp_path / "sub" / "real.onnx").write_bytes(b"old")
    (tmp_path / "sub" / "link.onnx").symlink_to("real.onnx")
    to_onnx(net, tmp_path / "sub" / "link.onnx")
    assert (tmp_path / "sub" / "link.onnx").is_symlink()
    assert len(list((tmp_path / "sub").iterdir())) == 3
    for name in ("real.onnx", "link.onnx"):
        for a, b in zip(small, _outputs(tmp_path / "sub" / name, images)):
            np.testing.assert_array_equal(a, b)
    (tmp_path / "far.onnx").symlink_to(tmp_path / "sub" / "real.onnx")     # into another:
    with pytest.raises(AllconvError, match="far.onnx: a link into another folder"):  # unreadable
        to_onnx(net, tmp_path / "far.onnx")


@pytest.mark.parametrize("stop_at", [1, 2])
def test_a_large_model_stopped_while_moved_in_keeps_a_model_and_its_own_data(stop_at, tmp_path,
                                                                             monkeypatch):
    """Before: the new ``.data`` replaced the old one first, so a kill before the model's own
    move left the old model reading the new net's weights, with the old net's metadata."""
    from runtime.export import model as export_model
    monkeypatch.setattr(export_model, "PROTOBUF_LIMIT", 0)
    images = np.random.default_rng(0).standard_normal((2, 3, 35, 35)).astype(np.float32)
    first, second = (Net(HAND_NETS["caffenet_like"][0], pb.TEST, seed=s) for s in (3, 4))
    to_onnx(first, tmp_path / "m.onnx")
    expected = _outputs(tmp_path / "m.onnx", images)
    moves, replace = [], os.replace

    def stopped(*args):
        moves.append(args)
        if len(moves) == stop_at:
            raise KeyboardInterrupt
        replace(*args)
    monkeypatch.setattr(export_model.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        to_onnx(second, tmp_path / "m.onnx")
    for a, b in zip(expected, _outputs(tmp_path / "m.onnx", images)):
        np.testing.assert_array_equal(a, b)


def test_a_train_test_net_is_refused_before_its_data_source_is_opened(tmp_path, capsys):
    """Before: a Data layer's missing source was the error (from another folder), hiding that
    a train/test net does not export at all."""
    from generator.render import render_net
    from generator.variants import get_variant
    proto = tmp_path / "all_c.prototxt"
    proto.write_text(render_net(get_variant("all-c")))
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    err = _bad(tmp_path, ["--prototxt", str(proto), "--weights", str(weights), "-o",
                          str(tmp_path / "m.onnx")], capsys)
    assert err == (f"export-onnx: error: {proto}: the net has no Input layer (its data comes "
                   "from 'data' (Data)): export a deploy net (gen-prototxt --deploy)\n")


def test_options_that_do_nothing_beside_run_are_refused(run_dir, tmp_path, capsys):
    """Before: --data beside --run without --with-preprocessing did nothing and exited 0."""
    folder, _, data = run_dir
    out = ["-o", str(tmp_path / "m.onnx")]
    assert ("--data does nothing with --run without --with-preprocessing" in
            _bad(tmp_path, ["--run", str(folder), "--data", str(data)] + out, capsys))
    assert ("--no-verify does nothing without --with-preprocessing" in
            _bad(tmp_path, ["--run", str(folder), "--no-verify"] + out, capsys))
    assert not (tmp_path / "m.onnx").exists()


def test_a_scalar_output_exports_and_is_checked(tmp_path):
    """A Reduction over every axis gives a 0-d blob: a graph output of no dimensions (the input
    keeps its dynamic batch), checked against the runtime at batch 2 and 6."""
    net = Net(_input((2, 3)) + _layer("r", "Reduction", ["data"], ["r"],
                                      "reduction_param { axis: 0 operation: SUMSQ }"),
              pb.TEST)
    worst = to_onnx(net, tmp_path / "r.onnx")
    assert set(worst) == {"optimisations off", "optimisations on"}
    assert max(worst.values()) < 1e-6
    model = onnx.load(tmp_path / "r.onnx")
    assert len(model.graph.output[0].type.tensor_type.shape.dim) == 0
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    (got,) = check.session(model, check.LEVELS["optimisations on"]).run(None, {"data": x})
    assert got.shape == () and float(got) == float((x ** 2).sum())


def test_a_net_without_learnable_layers_exports_without_weights_or_with_caffes_file(tmp_path):
    """Caffe saves such a net's .caffemodel with layers and no blobs: both ways export."""
    from harness.export_onnx import main
    from runtime import caffemodel
    proto = tmp_path / "geo.prototxt"
    proto.write_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 '
                     'dim: 3 dim: 6 dim: 6 } } }\nlayer { name: "p" type: "Pooling" bottom: "x" '
                     'top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n')
    caffemodel.write_weights(tmp_path / "geo.caffemodel", [("x", "Input", []),
                                                            ("p", "Pooling", [])])
    assert main(["--prototxt", str(proto), "-o", str(tmp_path / "a.onnx")]) == 0
    assert main(["--prototxt", str(proto), "--weights", str(tmp_path / "geo.caffemodel"),
                 "-o", str(tmp_path / "b.onnx")]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = Net(str(proto), pb.TEST).forward(x=torch.from_numpy(x))["p"].numpy()
    models = [onnx.load(tmp_path / name) for name in ("a.onnx", "b.onnx")]
    assert models[0].graph == models[1].graph       # the weightless file adds nothing
    for model in models:
        assert [o.name for o in model.graph.output] == ["p"]
        (got,) = check.session(model, check.LEVELS["optimisations on"]).run(None, {"x": x})
        np.testing.assert_array_equal(got, want)    # Caffe's 3x3 stride 2 windows: 3x3
        assert got.shape == (2, 3, 3, 3)


def test_the_check_is_relative_for_large_outputs():
    assert check.tolerance(np.array([1e5, -3.0]), fp16=False) == pytest.approx(10.0)
    assert check.tolerance(np.array([0.5, np.nan, np.inf]), fp16=False) == check.TOL_FP32
    assert check.tolerance(np.array([], dtype=np.float32), fp16=True) == check.TOL_FP16


@pytest.mark.parametrize("static_batch, declared", [(None, [None, 4]), (3, [6, 4])])
def test_a_concat_over_the_batch_declares_its_own_extent(tmp_path, static_batch, declared):
    """Concat on axis 0 gives 2N rows: a static batch declares them; a dynamic one leaves the
    dimension unnamed (it was declared N, and a static export crashed in the checker)."""
    net = Net("""
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 3 dim: 7 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "sm" type: "Softmax" bottom: "ip" top: "sm" }
layer { name: "cat0" type: "Concat" bottom: "ip" bottom: "sm" top: "cat0"
        concat_param { axis: 0 } }""", pb.TEST, seed=0)
    to_onnx(net, tmp_path / "m.onnx", static_batch=static_batch)
    [output] = onnx.load(tmp_path / "m.onnx").graph.output
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
            for d in output.type.tensor_type.shape.dim]
    assert dims == declared


def test_an_input_no_layer_reads_is_no_default_output(tmp_path):
    """A deploy net's leftover label Input: Caffe lists it among the net's outputs; the model
    neither returns nor takes it (it was refused as an output that is a net input)."""
    net = Net(_input((2, 3)).replace('top: "data"', 'top: "data" top: "label"').replace(
        "} } }", "} shape { dim: 2 } } }") + _layer("prob", "Softmax", ["data"], ["prob"]),
        pb.TEST)
    assert net.outputs == ["label", "prob"] or net.outputs == ["prob", "label"]
    to_onnx(net, tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert [v.name for v in graph.input] == ["data"]
    assert [v.name for v in graph.output] == ["prob"]


def test_onnxruntime_failing_on_the_model_is_one_line():
    """What onnxruntime raises while the check runs the model becomes one error naming the
    batch."""
    class Failing:
        def run(self, outputs, feeds):
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : cannot be\nreshaped")
    with pytest.raises(check.Mismatch, match=r"^onnxruntime \(optimisations on\) cannot run "
                                              r"the model at batch 3 \(\[ONNXRuntimeError\] : 1 : "
                                              r"FAIL : cannot be reshaped\); nothing was written$"):
        check.run(Failing(), ["y"], {}, "optimisations on", 3)
    assert check.largest_difference(np.zeros((1, 6)), np.zeros((3, 2))) == float("inf")


def test_the_same_infinity_or_nan_on_both_sides_is_no_difference():
    """A Reduction's coeff of inf gives inf in the runtime and in onnxruntime: equal, with no
    numpy warning (inf − inf); an infinity or NaN on one side only is a difference."""
    inf, nan = np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check.largest_difference(np.array([inf, -inf, nan, 1.0], np.float32),
                                        np.array([inf, -inf, nan, 1.5], np.float32)) == 0.5
        assert check.largest_difference(np.array([inf]), np.array([-inf])) == inf
        assert np.isnan(check.largest_difference(np.array([nan]), np.array([1.0])))
        assert check.largest_difference(np.array([inf]), np.array([1.0])) == inf
        assert check.largest_difference(np.ones(2), np.ones(2)) == 0


def test_a_net_that_runs_only_at_its_prototxts_batch_is_fixed_there(tmp_path):
    """A Parameter of the batch's size added to the input: the check's second batch, three
    times the prototxt's, cannot run; the model's batch is the prototxt's, with a warning,
    and another static batch is refused in one line naming it."""
    net = Net("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 4 } } }
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 3 dim: 4 } } }
layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "p" top: "s" }""", pb.TEST, seed=0)
    assert_fixed_at_the_prototxts_batch(
        net, tmp_path, r"at batch 9 the net does not run \(.*\)", [3, 4],
        r"at batch 2 the net does not run \(.*\)", 2)
    to_onnx(net, tmp_path / "m.onnx", static_batch=3)


def test_values_wrong_at_three_times_the_batch_are_not_blamed_on_the_batch(tmp_path):
    """A float16 Softmax of inputs near 128, beside other readers of them, that differs past
    the tolerance at the check's larger batch differs on those rows at the prototxt's batch
    too: refused, nothing written (it was written at the prototxt's batch with a warning
    blaming the batch)."""
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "px" type: "Power" bottom: "data" top: "px" power_param { scale: 60 shift: 128 } }
layer { name: "mvn" type: "MVN" bottom: "px" top: "mvn" }
layer { name: "lrn" type: "LRN" bottom: "px" top: "lrn" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "sm" type: "Softmax" bottom: "px" top: "sm" }""", pb.TEST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no "exact only at the prototxt's batch"
        with pytest.raises(AllconvError, match=r"\(optimisations off, batch 6\) differs from "
                                               r"the runtime on output 'sm' by .*; nothing was "
                                               r"written$"):
            to_onnx(net, tmp_path / "m.onnx", fp16=True)
    assert not (tmp_path / "m.onnx").exists()


def test_a_static_batch_that_gives_another_input_no_whole_size_is_refused(tmp_path):
    """A second input of batch 2 beside a first of 3 scales to 10/3 at --static-batch 5: its
    axis was left dynamic and an output declared 10 rows (15 at a batch of 5); at a multiple
    of 3 it scales to a whole size."""
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 5 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 dim: 3 dim: 4 } } }
layer { name: "f" type: "Flatten" bottom: "data" top: "f" }
layer { name: "h" type: "Flatten" bottom: "y" top: "h" flatten_param { axis: 0 end_axis: 1 } }""",
              pb.TEST)
    with pytest.raises(AllconvError, match=r"^--static-batch 5: input 'y' has 2 on its batch "
                                           r"axis where the first input has 3, which scales to "
                                           r"no whole size at 5: give a multiple of 3; nothing "
                                           r"was written$"):
        to_onnx(net, tmp_path / "m.onnx", static_batch=5, check_model=False)
    assert not (tmp_path / "m.onnx").exists()
    assert max(to_onnx(net, tmp_path / "m.onnx", static_batch=6).values()) == 0


def assert_fixed_at_the_prototxts_batch(net, tmp_path, why, dims, why_other, other):
    """Exported by default at the prototxt's batch ``dims[0]`` with a warning matching
    ``why``; at the static batch ``other`` refused in one line (``why_other``) naming it,
    nothing written. Returns the export's largest onnxruntime differences."""
    with pytest.warns(UserWarning, match=why + r": the model's batch is fixed at the "
                                                 rf"prototxt's, {dims[0]}"):
        worst = to_onnx(net, tmp_path / "m.onnx")
    shape = onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in shape] == dims
    with pytest.raises(AllconvError, match=why_other + r": nothing was written; it exports at "
                                                       rf"the prototxt's batch: give "
                                                       rf"--static-batch {dims[0]}$"):
        to_onnx(net, tmp_path / "n.onnx", static_batch=other)
    assert not (tmp_path / "n.onnx").exists()
    return worst


def _mask_net(side: int) -> str:
    return ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
            f'dim: {side} dim: {side} }} }} }}\nlayer {{ name: "pool" type: "Pooling" bottom: "x" '
            'top: "p" top: "mask" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n')


def test_a_max_pooling_mask_top_exports_at_any_batch(tmp_path):
    """Caffe's mask (h·W + w of each first maximum; the real-Caffe cases are in the fixtures)
    from MaxPool's indices, at another batch than the prototxt's, with ties."""
    proto, weights = _files(tmp_path, _mask_net(7))
    out = tmp_path / "m.onnx"
    assert cli.main(["--prototxt", proto, "--weights", weights, "-o", str(out)]) == 0
    x = np.random.default_rng(0).integers(-2, 3, (3, 2, 7, 7)).astype(np.float32)
    level = check.LEVELS["optimisations off"]
    values, mask = check.session(onnx.load(out), level).run(["p", "mask"], {"x": x})
    net = Net(proto, pb.TEST, seed=0)
    net.blobs["x"].reshape(*x.shape)
    net.reshape()
    tops = net.forward(x=x)
    np.testing.assert_array_equal(values, tops["p"].numpy())
    np.testing.assert_array_equal(mask, tops["mask"].numpy())
    assert mask.max() > 40 and mask.min() == 0


def test_a_mask_past_float16s_integers_is_refused_in_one_line(tmp_path, capsys):
    proto, weights = _files(tmp_path, _mask_net(46))       # indices up to 46² − 1 = 2115
    err = _bad(tmp_path, ["--prototxt", proto, "--weights", weights, "-o",
                          str(tmp_path / "m.onnx"), "--fp16"], capsys)
    assert "the mask of Pooling 'pool' holds indices up to 2115; float16 holds" in err
    assert not (tmp_path / "m.onnx").exists()


def test_a_blob_named_empty_is_refused_in_one_line(tmp_path, capsys):
    """Found by tools/fuzz.py (seed 18): a top named "" runs in Caffe and the runtime, and the
    export died in the ONNX checker ("Field 'name' of 'value_info' is required to be non-empty",
    counted as an exporter bug); it is one line that names the layer."""
    proto, weights = _files(tmp_path, _input((2, 3)) + _layer("r", "ReLU", ["data"], [""]))
    err = _bad(tmp_path, ["--prototxt", proto, "-o", str(tmp_path / "m.onnx")], capsys)
    assert err == ("export-onnx: error: layer 'r' writes a blob named \"\", which ONNX cannot "
                   "name (it means a missing input): give the top a name\n")
    assert not (tmp_path / "m.onnx").exists()


def test_a_net_whose_every_top_is_read_asks_for_outputs(tmp_path, capsys):
    """Every top silenced: the error says there is no output and how to name one (it said the
    net had no Input layer)."""
    proto, weights = _files(tmp_path, _input((2, 3)) + _layer("r", "ReLU", ["data"], ["r"])
                            + _layer("s", "Silence", ["r"], []))
    err = _bad(tmp_path, ["--prototxt", proto, "-o", str(tmp_path / "m.onnx")], capsys)
    assert "the net has no output blob: a layer reads every top (layer 's' (Silence) among " \
           "the last): name the blobs to export (--outputs)" in err
    assert cli.main(["--prototxt", proto, "-o", str(tmp_path / "m.onnx"), "--outputs", "r"]) == 0
    capsys.readouterr()
    # outputs from a data layer: it is named (the message said only "no Input layer")
    proto, _ = _files(tmp_path, _layer("d", "DummyData", [], ["x"],
                                       "dummy_data_param { shape { dim: 2 dim: 3 } }")
                      + _layer("r", "ReLU", ["x"], ["r"]))
    err = _bad(tmp_path, ["--prototxt", proto, "-o", str(tmp_path / "m.onnx")], capsys)
    assert err.endswith("the net has no Input layer (its data comes from 'd' (DummyData)): "
                        "export a deploy net (gen-prototxt --deploy)\n")


def test_input_preparation_names_each_pipelines_input():
    from harness.export_onnx import input_preparation
    from harness.net_source import NetSource
    from runtime.data.datasets import get_dataset

    def prepared(dataset, side):
        return input_preparation(NetSource("net", None, get_dataset(dataset), None), net(side))

    def net(side):
        return Net(f'layer {{ name: "d" type: "Input" top: "data" input_param {{ shape {{ dim: 1 '
                   f'dim: 3 dim: {side} dim: {side} }} }} }}', pb.TEST)
    assert prepared("imagenet", 227).startswith(
        "Caffe's ImageNet test transform: the image resized to 256x256, BGR")
    assert "centred in a 126x126 frame" in prepared("cifar10", 126)
    assert prepared("cifar100", 32).startswith("a CIFAR-100 image")
