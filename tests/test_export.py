"""ONNX export (runtime/export, export-onnx): onnxruntime against real Caffe's fixture values,
against the runtime on hand-written nets and on real CIFAR-10 images through the in-graph
GCN+ZCA, run folders, and each bad input as one line with exit status 2."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import fixture_format as ff
from test_caffe_fixtures import METAS, TOL_LAYER, TOL_NETWORK, load, make_inputs, set_weights

from generator.render import NetOptions, render_net
from generator.variants import VARIANTS
from runtime.data import cifar, preprocess
from runtime.errors import AllconvError
from runtime.export import build_model, check, cli, registry, to_onnx
from runtime.export.walker import needed_layers
from runtime.net import Net
from runtime.proto import pb

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")

SHARED_CIFAR10 = Path(__file__).resolve().parents[1] / ".." / "shared/data/cifar-10-batches-bin"
LARGEST = {}   # fixture case -> {level: largest relative error}, printed by -s


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


@pytest.mark.parametrize("name,outputs", _fixture_cases())
def test_onnxruntime_computes_what_real_caffe_computed(name, outputs):
    """Every fixture net (the 14 generated networks, each layer case: pooling corner cases,
    LRN, groups, Concat, Eltwise, InnerProduct, in-place layers) whose blobs export: the
    exported model, run by onnxruntime with optimisations off and on, against Caffe's values."""
    meta = METAS[name]
    net = Net(meta["prototxt"], pb.TEST, seed=0)
    set_weights(net, meta)
    model, _ = build_model(net, outputs=outputs)
    inputs = make_inputs(meta)
    feeds = {i.name: inputs[i.name] for i in model.graph.input}
    tol = TOL_NETWORK if meta["scale"] == "network" else TOL_LAYER
    with load(name) as z:
        for label, level in check.LEVELS.items():
            got = check.session(model, level).run(outputs, feeds)
            errors = {o: ff.rel_error(v, z, f"fwd:{o}") for o, v in zip(outputs, got)}
            LARGEST.setdefault(name, {})[label] = max(errors.values())
            bad = {o: e for o, e in errors.items() if not e <= tol}
            assert not bad, f"{name} ({label}): relative errors {bad} > {tol:g}"


def test_all_fourteen_generated_networks_are_compared():
    names = {p.id for p in _fixture_cases()}
    assert {f"net_{v}" for v in VARIANTS} <= names


# ----------------------------------------------------------------------------- hand-written nets

def _input(shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "input" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'


def _layer(name, type_, bottoms, tops, body="") -> str:
    links = "".join(f' bottom: "{b}"' for b in bottoms) + "".join(f' top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_}"{links} {body} }}\n'


FILLED = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 }'
HAND_NETS = {
    # AlexNet/CaffeNet's first stage on an odd size: conv 11/4, in-place ReLU, LRN across,
    # max pool 3/2 rounding up, grouped conv, LRN within, dropout in place, inner products.
    "caffenet_like": _input((2, 3, 35, 35))
    + _layer("conv1", "Convolution", ["data"], ["conv1"],
             f"convolution_param {{ num_output: 8 kernel_size: 11 stride: 4 {FILLED} }}")
    + _layer("relu1", "ReLU", ["conv1"], ["conv1"])
    + _layer("norm1", "LRN", ["conv1"], ["norm1"], "lrn_param { local_size: 5 alpha: 0.1 beta: 0.75 k: 2 }")
    + _layer("pool1", "Pooling", ["norm1"], ["pool1"], "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    + _layer("conv2", "Convolution", ["pool1"], ["conv2"],
             f"convolution_param {{ num_output: 6 kernel_size: 3 pad: 1 group: 2 {FILLED} }}")
    + _layer("relu2", "ReLU", ["conv2"], ["conv2"], "relu_param { negative_slope: 0.1 }")
    + _layer("norm2", "LRN", ["conv2"], ["norm2"],
             "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }")
    + _layer("fc", "InnerProduct", ["norm2"], ["fc"], f"inner_product_param {{ num_output: 7 {FILLED} }}")
    + _layer("drop", "Dropout", ["fc"], ["fc"], "dropout_param { dropout_ratio: 0.5 }")
    + _layer("fc_t", "InnerProduct", ["fc"], ["fc_t"],
             f"inner_product_param {{ num_output: 4 transpose: true {FILLED} }}")
    + _layer("prob", "Softmax", ["fc_t"], ["prob"]),
    # GoogLeNet-like: an inception block (Concat of branches), padded AVE pooling rounding up,
    # an Eltwise of each kind, Flatten, global max pooling.
    "inception_like": _input((2, 4, 9, 9))
    + _layer("a", "Convolution", ["data"], ["a"], f"convolution_param {{ num_output: 3 kernel_size: 1 {FILLED} }}")
    + _layer("b", "Convolution", ["data"], ["b"], f"convolution_param {{ num_output: 5 kernel_size: 3 pad: 1 {FILLED} }}")
    + _layer("c", "Pooling", ["data"], ["c"], "pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 }")
    + _layer("cat", "Concat", ["a", "b", "c"], ["cat"])
    + _layer("ave", "Pooling", ["cat"], ["ave"], "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }")
    + _layer("s1", "Convolution", ["ave"], ["s1"], f"convolution_param {{ num_output: 4 kernel_size: 1 {FILLED} }}")
    + _layer("s2", "Convolution", ["ave"], ["s2"], f"convolution_param {{ num_output: 4 kernel_size: 1 {FILLED} }}")
    + _layer("sum", "Eltwise", ["s1", "s2"], ["sum"], "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }")
    + _layer("prod", "Eltwise", ["s1", "s2", "sum"], ["prod"], "eltwise_param { operation: PROD }")
    + _layer("max", "Eltwise", ["sum", "prod"], ["max"], "eltwise_param { operation: MAX }")
    + _layer("gmax", "Pooling", ["max"], ["gmax"], "pooling_param { pool: MAX global_pooling: true }")
    + _layer("flat", "Flatten", ["gmax"], ["flat"]),
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
    net = Net(HAND_NETS[name], pb.TEST, seed=1)
    worst = to_onnx(net, tmp_path / "m.onnx")
    assert set(worst) == {"optimisations off", "optimisations on"}
    assert max(worst.values()) <= check.TOL_FP32
    model = onnx.load(tmp_path / "m.onnx")
    ops = {node.op_type for node in model.graph.node}
    assert {"LRN", "Conv", "MaxPool", "MatMul", "Softmax"} <= ops or \
        {"Concat", "AveragePool", "Sum", "Mul", "Max", "GlobalMaxPool", "Reshape"} <= ops


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


def test_static_batch_opset_fp16_and_metadata(tmp_path):
    net = Net(render_net(VARIANTS["all-c"], NetOptions(deploy=True)), pb.TEST, seed=0)
    worst = to_onnx(net, tmp_path / "m.onnx", static_batch=4, opset=17, fp16=True,
                    metadata={"allconv.classes": ["a"] * 10})
    assert max(worst.values()) <= check.TOL_FP16
    model = onnx.load(tmp_path / "m.onnx")
    assert model.opset_import[0].version == 17
    (data,), (prob,) = model.graph.input, model.graph.output
    assert data.name == "data" and prob.name == "prob"
    assert [d.dim_value for d in data.type.tensor_type.shape.dim] == [4, 3, 32, 32]
    assert data.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    props = {p.key: p.value for p in model.metadata_props}
    assert props["allconv.net"] == "All-CNN-C" and props["allconv.variant"] == "all-c"
    assert json.loads(props["allconv.classes"]) == ["a"] * 10
    assert json.loads(props["allconv.input"]) == {"name": "data", "layout": "NCHW",
                                                  "dtype": "float16", "shape": [4, 3, 32, 32]}
    dynamic, _ = build_model(net)
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert dynamic.opset_import[0].version == 18


def test_a_mismatch_names_the_output_and_first_blob_and_writes_nothing(tmp_path, monkeypatch):
    net = Net(HAND_NETS["caffenet_like"], pb.TEST, seed=1)
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
