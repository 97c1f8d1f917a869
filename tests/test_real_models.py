"""Real-world Caffe models against real Caffe (issue 17): ResNet-50, SqueezeNet v1.1, FCN-8s,
MobileNet v1, DenseNet-121 and NIN (CIFAR-10), each read from its authors' prototxt under
tests/fixtures/models/ (the first line names the source), with seeded weights that real Caffe
read from .caffemodel files the runtime wrote (tools/caffe_reference/cases_models.py).

Per model: Caffe's layer list and every blob shape after the input reshape (pycaffe's
``blobs[...].reshape`` + ``reshape()``); the runtime's forward against Caffe's recorded blobs;
the ONNX export run by onnxruntime (optimisations off and on) against Caffe's blobs and the
runtime's, for nets with BatchNorm + Scale both fused into BatchNormalization and one node
group per layer. Relative error max|a - b| / max|b| <= 1e-4, the whole-network tolerance.
NIN's net is V1: Caffe's own upgrade of it is compared layer by layer with the runtime's.
DenseNet's file carries a Caffe fork's ``ceil_mode: false``: the runtime refuses it as BVLC
Caffe does and reads it with master's ``round_mode: FLOOR`` (the fixture's ``runtime_edits``).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import fixture_format as ff
from test_caffe_fixtures import (FIXTURES, METAS, TOL_NETWORK, compare, load, make_inputs,
                                 record, set_weights)
from test_export import _exportable

from runtime.errors import AllconvError
from runtime.export import build_model, check
from runtime.net import Net
from runtime.proto import pb
from runtime.prototxt import parse_net

# The fixture nets set every weight themselves; the runtime's "no weight_filler" notice is noise.
pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")

MODELS = FIXTURES / "models"
NAMES = [name for name, meta in METAS.items() if meta["kind"] == "model"]


def _has_batch_norm(name: str) -> bool:
    return any(type_ == "BatchNorm" for _, type_ in METAS[name]["layers"])


def _checks(name: str) -> list[str]:
    return ["forward"] + (["onnx fused", "onnx unfused"] if _has_batch_norm(name) else ["onnx"])


def _source(meta: dict) -> Path:
    return MODELS / meta["source"]


def runtime_text(meta: dict) -> str:
    """What the runtime reads: the committed file (or the V1 conversion Caffe ran), with the
    case's edits."""
    text = meta.get("prototxt") or _source(meta).read_text()
    for old, new in meta["runtime_edits"]:
        text = text.replace(old, new)
    return text


@functools.lru_cache(maxsize=1)
def loaded(name: str):
    """The model's Net after a forward on the fixture's inputs (one at a time: FCN-8s holds
    134 M weights), and the inputs."""
    meta = METAS[name]
    net = Net(runtime_text(meta), pb.TEST)
    for blob, spec in meta["inputs"].items():
        net.blobs[blob].reshape(*spec["shape"])
    net.reshape()
    set_weights(net, meta)
    inputs = make_inputs(meta)
    with torch.no_grad():
        net.forward(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return net, inputs


def _relative(got: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(got - reference).max() / max(np.abs(reference).max(), ff.TINY))


def check_forward(name: str, net) -> None:
    meta = METAS[name]
    assert [[layer.name, layer.type_name] for layer in net.layers] == meta["layers"]
    assert {b: list(net.blobs[b].shape) for b in net.blobs} == meta["blob_shapes"]
    with load(name) as z:
        failures = compare(z, "fwd:", lambda b: net.blobs[b].data, "real model forward", name,
                           TOL_NETWORK)
    assert not failures, f"{name}: " + "; ".join(failures)


def check_onnx(name: str, net, inputs: dict, form: str, path: Path) -> None:
    fuse = form != "onnx unfused"
    with load(name) as z:
        recorded = [key[4:] for key in ff.entry_keys(z.files, "fwd:")]
        outputs = [b for b in recorded if _exportable(net, b)]
        assert outputs, name
        model, _ = build_model(net, outputs=outputs, fuse_batchnorm=fuse)
        if _has_batch_norm(name):       # fused: no Scale of its own; unfused: one Mul each
            scales = {layer.name for layer in net.layers if layer.type_name == "Scale"}
            nodes = [node.op_type for node in model.graph.node]
            own = [node for node in model.graph.node if node.name in scales]
            assert nodes.count("BatchNormalization") == sum(
                layer.type_name == "BatchNorm" for layer in net.layers)
            assert len(own) == (0 if fuse else len(scales)), (form, len(own), len(scales))
        feeds = {i.name: inputs[i.name] for i in model.graph.input}
        path.write_bytes(model.SerializeToString())     # one copy of FCN-8s's 538 MB
        del model
        failures = []
        for label, level in check.LEVELS.items():
            got = check.session(path, level).run(outputs, feeds)
            for blob, value in zip(outputs, got):
                for who, err in (("Caffe", ff.rel_error(value, z, f"fwd:{blob}")),
                                 ("runtime", _relative(value, net.blobs[blob].data.numpy()))):
                    record(f"real model onnxruntime vs {who}", name, f"{form}, {label}: {blob}",
                           err, TOL_NETWORK)
                    if not err <= TOL_NETWORK:
                        failures.append(f"{blob} ({label}) vs {who}: {err:.3e}")
    assert not failures, f"{name} ({form}): " + "; ".join(failures)


@pytest.mark.parametrize("name,form", [pytest.param(n, c, id=f"{n}-{c}")
                                       for n in NAMES for c in _checks(n)])
def test_model_against_caffe(name, form, tmp_path):
    """Model-major order, so that ``loaded`` builds each model once."""
    net, inputs = loaded(name)
    if form == "forward":
        check_forward(name, net)
    else:
        check_onnx(name, net, inputs, form, tmp_path / "model.onnx")


def test_all_six_models_are_compared():
    assert {METAS[n]["source"] for n in NAMES} == {p.name for p in MODELS.glob("*.prototxt")}
    assert len(NAMES) == 6


@pytest.mark.parametrize("name", NAMES)
def test_source_file_is_the_fixtures(name):
    """The committed prototxt is the one Caffe ran, and names where it comes from."""
    meta = METAS[name]
    data = _source(meta).read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["source_sha256"], (
        f"{meta['source']} changed since the fixture was made; re-run "
        "tools/caffe_reference/make_fixtures.sh --only model_")
    assert data.startswith(b"# Source: https://github.com/")


def test_densenet_fork_field_is_refused_as_bvlc_caffe_does():
    """shicai's DenseNet-121 writes ``ceil_mode: false`` (a Caffe fork's field, which BVLC
    Caffe never had): one line naming the file, line and column; master's ``round_mode:
    FLOOR`` reads, and gives pool1 the floored size Caffe computed (36 -> 18, not 19)."""
    meta = METAS["model_densenet121"]
    path = _source(meta)
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines, 1) if "ceil_mode" in line)
    column = lines[row - 1].index("ceil_mode:") + len("ceil_mode") + 1    # C++: after the name
    with pytest.raises(AllconvError, match=rf"{path.name}:{row}:{column}: .*ceil_mode"):
        Net(str(path), pb.TEST)
    assert meta["runtime_edits"] == [["ceil_mode: false", "round_mode: FLOOR"]]
    assert meta["blob_shapes"]["pool1"][2:] == [18, 18]


def test_nin_v1_net_is_the_published_one_with_data_layers_as_inputs():
    """The V1 net Caffe ran is the committed train/val net less its two DATA layers, whose
    tops became net inputs of the fixture's shapes."""
    meta = METAS["model_nin_cifar10"]
    source = parse_net(_source(meta).read_text(), upgrade=False)
    ran = parse_net(meta["prototxt"], upgrade=False)
    data = pb.V1LayerParameter.DATA
    assert sum(layer.type == data for layer in source.layers) == 2
    assert list(ran.layers) == [layer for layer in source.layers if layer.type != data]
    assert list(ran.input) == ["data", "label"]
    assert [list(s.dim) for s in ran.input_shape] == [
        meta["inputs"][n]["shape"] for n in ran.input]


def test_nin_v1_upgrade_equals_caffes():
    """Every layer the runtime builds from the V1 net (upgraded, filtered for TEST, Splits
    inserted) equals the layer Caffe built, as Caffe's net.save wrote it: Caffe adds only
    the phase to each layer and a loss layer's default loss_weight."""
    meta = METAS["model_nin_cifar10"]
    net, _ = loaded("model_nin_cifar10")
    caffe = text_format.Parse(meta["caffe_net"], pb.NetParameter())
    assert caffe.name == net.name
    assert len(caffe.layer) == len(net.layers)
    for theirs, layer in zip(caffe.layer, net.layers):
        assert theirs.phase == pb.TEST
        theirs.ClearField("phase")
        if layer.type_name == "SoftmaxWithLoss" and not len(layer.param.loss_weight):
            assert list(theirs.loss_weight) == [1.0]
            theirs.ClearField("loss_weight")
        assert theirs == layer.param, f"layer {layer.name!r}: Caffe's {theirs} vs {layer.param}"
