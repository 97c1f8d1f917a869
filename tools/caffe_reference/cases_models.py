"""Fixture cases for real-world Caffe models (issue 17), kind ``model``: ResNet-50, SqueezeNet
v1.1, FCN-8s, MobileNet v1, DenseNet-121 and NIN (CIFAR-10), each from its authors' published
prototxt, committed verbatim under tests/fixtures/models/ below a first comment line that names
its source (repository, path, commit).

Weights: the venv step fills the runtime's ``Net`` with seeded weights (``make_weight``, the
mode of each blob by its layer's type: ``weight_modes``) and writes them with the runtime's
.caffemodel writer (``Net.save``'s; in parts, see make_fixtures.MODEL_PART_BYTES); Caffe
loads those files, checks that every blob equals ``make_weight``'s, reshapes the
inputs as pycaffe does (``net.blobs[name].reshape``, ``net.reshape()``), feeds seeded inputs
and records the blobs ``record`` names (large ones sampled).

Two models need a word:

* NIN's only published net is a V1 train/val file (``layers { type: DATA }``). Its DATA layers
  become net-level inputs of the same tops (``v1_data_as_inputs``) and both Caffe and the
  runtime upgrade the rest themselves; Caffe's upgraded layers are recorded for comparison.
* DenseNet-121 (shicai/DenseNet-Caffe) writes ``ceil_mode: false`` in pool1, a field of the
  Caffe fork it was made for (and of the reference build) that BVLC Caffe has never had; BVLC
  master's ``round_mode: FLOOR`` (the same field number, 13) means the same. Caffe reads the
  file as published, the runtime with that one edit (``runtime_edits``), and refuses it
  unedited as BVLC Caffe would.
"""
from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

from case_kit import NET_SAMPLE_SIZE, labels, normal

MODELS_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"

# make_weight's mode of blob i of a layer, by layer type; every other blob "msra" (biases
# U(-0.1, 0.1)). BatchNorm: mean N(0, 1), variance and scale factor U(0.5, 1.5) (a nonzero
# factor, so the statistics count); Scale: gamma U(0.5, 1.5), beta N(0, 1).
TYPE_MODES = {"BatchNorm": ("normal", "positive", "positive"), "Scale": ("positive", "normal")}


def weight_modes(case: dict, layers) -> dict:
    """make_weight's mode dict for ``layers`` ((name, type, number of learnable blobs)): the
    case's ``weight_overrides`` ((fnmatch pattern of "layer:index", mode)) first, then by type."""
    modes = {"*": "msra"}
    for name, type_, count in layers:
        by_type = TYPE_MODES.get(type_, ())
        for i in range(count):
            key = f"{name}:{i}"
            for pattern, mode in case["weight_overrides"]:
                if fnmatch.fnmatchcase(key, pattern):
                    modes[key] = mode
                    break
            else:
                if i < len(by_type):
                    modes[key] = by_type[i]
    return modes


def source_text(case: dict) -> str:
    return (MODELS_DIR / case["source"]).read_text()


def source_sha256(case: dict) -> str:
    return hashlib.sha256((MODELS_DIR / case["source"]).read_bytes()).hexdigest()


def v1_data_as_inputs(text: str, inputs: dict, pb, text_format) -> str:
    """A V1 net's DATA layers removed and their tops declared as net inputs (``input`` +
    ``input_shape``, of ``inputs``' shapes), still V1: the reader upgrades both. ``pb`` is a
    caffe_pb2 module (Caffe's or the runtime's)."""
    net = pb.NetParameter()
    text_format.Merge(text, net)
    data = pb.V1LayerParameter.DATA
    tops = list(dict.fromkeys(t for layer in net.layers if layer.type == data for t in layer.top))
    kept = [layer for layer in net.layers if layer.type != data]
    del net.layers[:]
    net.layers.extend(kept)
    for top in tops:
        net.input.append(top)
        net.input_shape.add().dim.extend(inputs[top]["shape"])
    return text_format.MessageToString(net)


def caffe_text(case: dict, pb, text_format) -> str:
    """The prototxt Caffe runs: the committed file, or its V1 conversion."""
    text = source_text(case)
    if case["v1_data_as_inputs"]:
        text = v1_data_as_inputs(text, case["inputs"], pb, text_format)
    return text


def apply_edits(text: str, edits) -> str:
    """``text`` with each (old, new) of ``edits`` replaced; each old string must occur."""
    for old, new in edits:
        assert old in text, f"{old!r} not in the prototxt"
        text = text.replace(old, new)
    return text


def model_case(name, source, inputs, record, note, runtime_edits=(), v1=False,
               weight_overrides=()):
    return {"kind": "model", "name": f"model_{name}", "group": "real models",
            "source": source, "inputs": inputs, "record": list(record),
            "runtime_edits": [list(e) for e in runtime_edits], "v1_data_as_inputs": v1,
            "weight_overrides": [list(o) for o in weight_overrides],
            "sample_size": NET_SAMPLE_SIZE, "note": note}


def cases():
    return [
        model_case(
            "resnet50", "resnet50_deploy.prototxt", {"data": normal(1, 3, 224, 224)},
            ["conv1", "pool1", "res2c", "res3d", "res4f", "res5c", "pool5", "fc1000", "prob"],
            "224x224 as published: pool5 is a 7x7 AVE pool (not global) before fc1000; net-level "
            "input_dim upgraded to an Input layer; 53 BatchNorm + Scale pairs in place; the "
            "last Scale of each residual branch has a small gamma, U(-0.1, 0.1), as trained "
            "ResNets do (else the 16 sums grow the trunk ~1e5-fold and softmax is one-hot)",
            weight_overrides=[("scale*_branch2c:0", "msra")]),
        model_case(
            "squeezenet_v1_1", "squeezenet_v1.1_deploy.prototxt", {"data": normal(2, 3, 65, 65)},
            ["conv1", "pool1", "fire3/concat", "pool3", "fire5/concat", "fire9/concat",
             "conv10", "pool10", "prob"],
            "65x65 (global pooling allows any size): every max pool rounds up to a partial "
            "window (32->16->8->4)"),
        model_case(
            "fcn8s", "fcn8s_voc_deploy.prototxt", {"data": normal(1, 3, 64, 64)},
            ["pool3", "pool4", "pool5", "fc7", "score_fr", "upscore2", "score_pool4c",
             "fuse_pool4", "upscore_pool4", "score_pool3c", "fuse_pool3", "upscore8", "score"],
            "voc-fcn8s deploy at 64x64 (conv1_1's pad 100, fc6 as a 7x7 conv on 9x9): "
            "Deconvolution x2, x2, x8 and Crop offsets 5, 9, 31 back to the input"),
        model_case(
            "mobilenet", "mobilenet_deploy.prototxt", {"data": normal(2, 3, 70, 70)},
            ["conv1", "conv2_2/dw", "conv2_2/sep", "conv4_2/sep", "conv5_6/sep", "conv6/sep",
             "pool6", "fc7", "prob"],
            "70x70 (global pooling; stride-2 depthwise convs 35->18->9->5->3); BatchNorm with "
            "three lr_mult 0 params, which the upgrade drops"),
        model_case(
            "densenet121", "densenet121_deploy.prototxt", {"data": normal(1, 3, 72, 72)},
            ["conv1/bn", "pool1", "concat_2_6", "pool2", "concat_3_12", "pool3", "pool4",
             "concat_5_16", "pool5", "fc6"],
            "72x72 (global pooling): pool1 floors 36->18 (ceil would give 19), the transition "
            "AVE pools round up 9->5->3 with partial windows",
            runtime_edits=[("ceil_mode: false", "round_mode: FLOOR")]),
        model_case(
            "nin_cifar10", "nin_cifar10_train_val.prototxt",
            {"data": normal(2, 3, 32, 32), "label": labels(2, classes=10)},
            ["cccp2", "pool1", "cccp4", "pool2", "cccp6", "pool3", "accuracy", "loss"],
            "V1 train/val net in TEST phase, DATA layers as net inputs: Dropout passes, pool2 "
            "AVE rounds up 16->8 with a partial window, Accuracy and SoftmaxWithLoss on top",
            v1=True),
    ]
