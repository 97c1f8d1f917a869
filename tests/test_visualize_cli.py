"""`visualize` as a user runs it: figures and --npy arrays, the --run reader, one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime import TEST, Net
from runtime.cli_support import run_cli
from runtime.data.preprocess import save_npz_source
from runtime.reconstruction import METHODS, reconstruct, switched_net
import visualize.cli
from visualize.cli import main
from generator.render import NetOptions, render_net
from generator.variants import get_variant
from harness import run_folder

ROOT = Path(__file__).resolve().parent.parent
ALL_C_DEPLOY = render_net(get_variant("all-c"), NetOptions(deploy=True))
NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 5 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("viz")
    (d / "net.prototxt").write_text(NET)
    net = Net(NET, TEST, seed=2)
    net.save(d / "net.caffemodel")
    rng = np.random.RandomState(0)
    np.save(d / "x.npy", rng.randn(1, 3, 8, 8).astype(np.float32))
    save_npz_source(d / "data.npz", rng.randn(30, 3, 8, 8), np.zeros(30))
    return d, net


def cli(files, command, *argv):
    d, _ = files
    return run_cli(main, "visualize", [command, "--prototxt", str(d / "net.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--device", "cpu",
                                       *map(str, argv)])


def test_unit_writes_the_figure_and_the_raw_reconstructions(files, capsys):
    d, net = files
    assert cli(files, "unit", "--blob", "conv2", "--unit", "3", "--switches", "--input",
               d / "x.npy", "-o", d / "unit.png", "--npy", d / "unit.npz") == 0
    x = torch.from_numpy(np.load(d / "x.npy"))
    conv2 = net.blob_values(data=x)["conv2"][0, 3].detach()
    y, xx = divmod(int(conv2.argmax()), conv2.shape[1])
    assert f"unit (3, {y}, {xx})" in capsys.readouterr().out
    switched, _ = switched_net(net)
    with np.load(d / "unit.npz") as saved:
        assert sorted(saved) == sorted(METHODS + tuple(m + "_switches" for m in METHODS))
        for method in METHODS:
            assert saved[method].shape == (1, 3, 8, 8)
            np.testing.assert_allclose(saved[method], reconstruct(
                net, "conv2", x, method, [(3, y, xx)]).numpy(), rtol=1e-6)
            np.testing.assert_allclose(saved[method + "_switches"], reconstruct(
                switched, "conv2", x, method, [(3, y, xx)]).numpy(), rtol=1e-6)
    assert (d / "unit.png").read_bytes()[:4] == b"\x89PNG"


def test_filters_reconstructs_each_centre_unit_without_an_image(files):
    d, net = files
    assert cli(files, "filters", "--blob", "conv2", "--filters", "1-3", "-o", d / "f.png",
               "--npy", d / "f.npz") == 0
    with np.load(d / "f.npz") as saved:
        assert saved["filters"].tolist() == [1, 2, 3]
        want = reconstruct(net, "conv2", torch.zeros(3, 3, 8, 8), "deconvnet",
                           [(f, 2, 2) for f in (1, 2, 3)])
        np.testing.assert_allclose(saved["deconvnet"], want.numpy(), rtol=1e-6)
        assert np.abs(saved["deconvnet"]).sum() > 0


def test_filters_refuses_max_pooling(files, tmp_path, capsys):
    d, net = files
    pooled = NET + ('layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool" '
                    'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    (tmp_path / "p.prototxt").write_text(pooled)
    code = run_cli(main, "visualize", ["filters", "--prototxt", str(tmp_path / "p.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--blob", "pool",
                                       "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and "max-pooling (pool)" in err and err.count("\n") == 1


def test_top_patches_finds_the_top_k_of_the_dataset(files):
    d, net = files
    assert cli(files, "top-patches", "--blob", "conv2", "--filters", "0,4", "--k", "3",
               "--data", d / "data.npz", "--batch-size", "7", "-o", d / "t.png",
               "--npy", d / "t.npz") == 0
    data = np.load(d / "data.npz")["data"]
    acts = net.blob_values(data=torch.from_numpy(data))["conv2"].detach()
    with np.load(d / "t.npz") as saved:
        for row, f in enumerate([0, 4]):
            best = acts[:, f].flatten(1).max(1).values
            assert saved["images"][row].tolist() == best.argsort(descending=True)[:3].tolist()
        assert saved["guided"].shape == (2, 3, 3, 8, 8)


def test_read_run_takes_the_newest_checkpoint(tmp_path):
    spec = (ROOT / "reproductions" / "table3" / "all-cnn-c.toml").read_text()
    run_folder.RunFolder(tmp_path).write_record(
        {"row": "table3/all-cnn-c", "spec": spec}, run_folder.provenance(
            commit=None, variant="all-c", dataset="cifar10", classes=["a"] * 10,
            whitening=None), deploy=ALL_C_DEPLOY)
    for it in (8, 40, 12):
        (tmp_path / f"checkpoint_iter_{it}.caffemodel").write_bytes(b"")
    run = run_folder.RunFolder.read(tmp_path)
    assert run.weights().name == "checkpoint_iter_40.caffemodel" and run.dataset == "cifar10"
    assert 'type: "Input"' in run.deploy() and "conv9" in run.deploy()


@pytest.mark.parametrize("argv, message", [
    (["unit", "--blob", "conv7", "--input", "{d}/x.npy"],
     "unknown blob 'conv7' (blobs: data, conv1, conv2)"),
    (["unit", "--blob", "conv2", "--unit", "5", "--input", "{d}/x.npy"],
     "unit (5,) is out of range for blob 'conv2' of shape (5, 4, 4)"),
    (["unit", "--blob", "conv2", "--unit", "1,4,0", "--input", "{d}/x.npy"], "out of range"),
    (["unit", "--blob", "conv2", "--image", "{d}/big.png"],
     "has shape (3, 9, 8); the net's input blob 'data' takes (3, 8, 8)"),
    (["unit", "--blob", "conv2", "--input", "{d}/data.npz"], "not a .npy array"),
    (["unit", "--blob", "conv2"], "give one input"),
    (["top-patches", "--blob", "conv2", "--filters", "7", "--data", "{d}/data.npz"],
     "the blob has channels 0-4"),
    (["top-patches", "--blob", "conv2", "--k", "31", "--data", "{d}/data.npz"],
     "k must be between 1 and the 30 images"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    d, _ = files
    from PIL import Image
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(d / "big.png")
    code = cli(files, *[a.format(d=d) for a in argv], "-o", d / "bad.png")
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_bad_weights_source_is_one_line(tmp_path, capsys):
    code = run_cli(main, "visualize", ["unit", "--run", str(tmp_path), "--blob", "conv1",
                                       "--input", "x.npy", "-o", str(tmp_path / "u.png")])
    err = capsys.readouterr().err
    assert code == 2 and "not a replicate run folder (no run.json)" in err


def test_image_is_whitened_with_the_runs_whitening_and_shown_raw(files, monkeypatch, capsys):
    from PIL import Image
    from runtime.data.preprocess import Whitening
    import visualize.inputs
    d, net = files
    rng = np.random.RandomState(3)
    pixels = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(d / "image.png")
    whitening = Whitening(rng.randn(192), np.eye(192) + 0.01 * rng.randn(192, 192))
    monkeypatch.setattr(visualize.inputs, "prepared_whitening", lambda dataset, data: whitening)
    args = visualize.cli.build_parser().parse_args(
        ["unit", "--blob", "conv1", "--image", str(d / "image.png"), "-o", "u.png"])
    picture = visualize.inputs.load_picture(args, net, "cifar10")
    np.testing.assert_array_equal(picture.shown, pixels / 255.0)
    np.testing.assert_allclose(picture.whitened, whitening(np.moveaxis(pixels, -1, 0)[None])[0])


@pytest.mark.parametrize("command", ["unit", "filters", "top-patches"])
@pytest.mark.parametrize("device, message", [
    ("tpu", "unknown device 'tpu'; valid: cpu, cuda, cuda:N"),
    ("cuda", "device 'cuda' asked for, but torch sees no CUDA device"),
    ("cuda:0", "device 'cuda:0' asked for, but torch sees no CUDA device"),
])
def test_a_device_this_machine_lacks_is_one_line(files, capsys, monkeypatch, command, device,
                                                 message):
    d, _ = files
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = run_cli(main, "visualize", [command, "--prototxt", str(d / "net.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--device", device,
                                       "--blob", "conv2", "-o", str(d / "dev.png")])
    assert code == 2 and capsys.readouterr().err == (
        f"visualize {command}: error: argument --device: {message} (see --help)\n")
    assert not (d / "dev.png").exists()


def test_dataset_beside_run_must_be_the_runs(tmp_path, capsys):
    run_folder.RunFolder(tmp_path).write_record({"row": "table3/all-cnn-c"}, run_folder.provenance(
        commit=None, variant="all-c", dataset="cifar10", classes=["a"] * 10, whitening=None),
        deploy=ALL_C_DEPLOY)
    code = run_cli(main, "visualize", ["filters", "--run", str(tmp_path), "--dataset", "cifar100",
                                       "--blob", "conv1", "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--dataset cifar100 contradicts the run {tmp_path}, which trained on cifar10" in err
