"""`visualize` as a user runs it: figures and --npz arrays, the --run reader, one-line errors."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime import TEST, Net
from runtime.cli_support import run_cli
from runtime.data import cifar, imagenet
from runtime.data.datasets import get_dataset
from runtime.data.source import save_npz_source
from runtime.reconstruction import METHODS, reconstruct, switched_net
import visualize.cli
from visualize.cli import main
from visualize.inputs import rescaled
from generator.render import NetOptions, render_net
from generator.variants import get_variant
from harness import run_folder
from harness.net_source import NetSource
import os

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
    out = capsys.readouterr().out
    assert f"unit 3,{y},{xx}:" in out and out.endswith(f"wrote {d / 'unit.png'}\n")
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


def test_filters_of_a_data_layer_net_equal_its_input_nets(files, tmp_path):
    """Before: a net with a Data layer (the train/test prototxt) was refused as if the Data
    layer's backward depended on the image."""
    d, _ = files
    source = d / "data.npz"
    data_net = NET.replace(
        'type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }',
        f'type: "Data" top: "data" top: "label" data_param {{ source: "{source}" '
        'batch_size: 2 }')
    (tmp_path / "data.prototxt").write_text(data_net)
    assert run_cli(main, "visualize", ["filters", "--prototxt", str(tmp_path / "data.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--device", "cpu",
                                       "--blob", "conv2", "--filters", "1-3", "-o",
                                       str(tmp_path / "f.png"), "--npy",
                                       str(tmp_path / "f.npz")]) == 0
    assert cli(files, "filters", "--blob", "conv2", "--filters", "1-3", "-o", tmp_path / "g.png",
               "--npy", tmp_path / "g.npz") == 0
    with np.load(tmp_path / "f.npz") as ours, np.load(tmp_path / "g.npz") as theirs:
        assert np.abs(theirs["deconvnet"]).sum() > 0
        np.testing.assert_array_equal(ours["deconvnet"], theirs["deconvnet"])


def test_filters_refuses_max_pooling(files, tmp_path, capsys):
    d, net = files
    pooled = NET + ('layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool" '
                    'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    (tmp_path / "p.prototxt").write_text(pooled)
    code = run_cli(main, "visualize", ["filters", "--prototxt", str(tmp_path / "p.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--blob", "pool",
                                       "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert ("the deconvnet reconstruction of 'pool' passes pool (Pooling), whose backward "
            "depends on the image (a max-pool's on its switches); use `unit` with an image") in err


@pytest.mark.parametrize("extra,blob,refused", [
    # a max-pool on a side branch is not below conv2: it was refused
    ('layer { name: "side" type: "Pooling" bottom: "conv1" top: "side" '
     'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }', "conv2", None),
    # LRN's backward depends on the image: a zero image drew another picture, silently
    ('layer { name: "norm" type: "LRN" bottom: "conv2" top: "norm" }', "norm", "norm (LRN)"),
    ('layer { name: "p" type: "Power" bottom: "conv2" top: "p" power_param { power: 2 } }',
     "p", "p (Power)"),
    ('layer { name: "avg" type: "Pooling" bottom: "conv2" top: "avg" '
     'pooling_param { pool: AVE kernel_size: 2 } }', "avg", None),
])
def test_filters_refuses_only_layers_below_whose_backward_needs_the_image(
        files, tmp_path, capsys, extra, blob, refused):
    d, net = files
    (tmp_path / "p.prototxt").write_text(NET + extra)
    code = run_cli(main, "visualize", ["filters", "--prototxt", str(tmp_path / "p.prototxt"),
                                       "--weights", str(d / "net.caffemodel"), "--blob", blob,
                                       "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    if refused is None:
        assert code == 0 and (tmp_path / "f.png").exists()
    else:
        assert code == 2 and f"passes {refused}, whose backward depends on the image; use" in err
        assert not (tmp_path / "f.png").exists()        # no max-pool: no word of switches


def test_a_net_whose_input_is_not_an_image_is_one_line(tmp_path, capsys):
    """A 1×10 input: --input of its own shape was refused, and of shape (10,) crashed in
    matplotlib after the work."""
    text = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 10 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
            'inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }\n')
    (tmp_path / "n.prototxt").write_text(text)
    Net(text, TEST, seed=0).save(tmp_path / "n.caffemodel")
    np.save(tmp_path / "x.npy", np.ones((10,), np.float32))
    code = run_cli(main, "visualize", ["unit", "--prototxt", str(tmp_path / "n.prototxt"),
                                       "--weights", str(tmp_path / "n.caffemodel"), "--blob",
                                       "ip", "--input", str(tmp_path / "x.npy"),
                                       "-o", str(tmp_path / "u.png")])
    assert code == 2 and capsys.readouterr().err == (
        "visualize unit: error: the net's input blob 'x' has shape (1, 10); visualize draws "
        "images and needs an N×C×H×W input\n")


@pytest.mark.parametrize("argv, near", [
    (["unitt"], "argument command: invalid choice: 'unitt' (did you mean unit?) (choose from "),
    (["unit", "--dataset", "cifar1"], "argument --dataset: invalid choice: 'cifar1' (did you "
                                      "mean cifar10, cifar100?) (choose from "),
    (["filtres"], "argument command: invalid choice: 'filtres' (did you mean filters?)"),
    (["unit", "-o", "a\nb.pdf"], "a\\nb.pdf")])     # found by fuzzing: two lines
def test_a_misspelt_command_or_choice_gets_the_nearest_ones_in_one_line(argv, near, capsys):
    """An unknown name lists the valid ones and the nearest, as a row's or a variant's does:
    argparse's choices gave the list alone. A line break in a value is escaped."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and near in err and err.count("\n") == 1


def test_switches_on_a_deploy_file_without_fillers_warns_of_nothing(tmp_path, capsys):
    """The switched net takes the trained weights: its fillers' warnings were printed."""
    text = NET.replace('weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: '
                       '"gaussian" std: 0.3 }', "")
    assert "filler" not in text
    (tmp_path / "n.prototxt").write_text(text)
    Net(NET, TEST, seed=2).save(tmp_path / "n.caffemodel")
    np.save(tmp_path / "x.npy", np.ones((1, 3, 8, 8), np.float32))
    code = run_cli(main, "visualize", ["unit", "--prototxt", str(tmp_path / "n.prototxt"),
                                       "--weights", str(tmp_path / "n.caffemodel"), "--blob",
                                       "conv2", "--switches", "--input", str(tmp_path / "x.npy"),
                                       "-o", str(tmp_path / "u.png")])
    assert code == 0 and capsys.readouterr().err == ""


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
            commit=None, variant="all-c", dataset="cifar10", classes=list("abcdefghij"),
            whitening=None), deploy=ALL_C_DEPLOY)
    for it in (8, 40, 12):
        (tmp_path / f"checkpoint_iter_{it}.caffemodel").write_bytes(b"")
    run = run_folder.RunFolder.read(tmp_path)
    assert run.weights().name == "checkpoint_iter_40.caffemodel" and run.dataset == "cifar10"
    assert 'type: "Input"' in run.deploy().read_text() and "conv9" in run.deploy().read_text()


@pytest.mark.parametrize("argv, message", [
    (["unit", "--blob", "conv7", "--input", "{d}/x.npy"],
     "unknown blob 'conv7' (blobs: data, conv1, conv2)"),
    (["unit", "--blob", "conv2", "--unit", "5", "--input", "{d}/x.npy"],
     "unit 5 is out of range for blob 'conv2' of shape (5, 4, 4)"),
    (["unit", "--blob", "conv2", "--unit", "1,4,0", "--input", "{d}/x.npy"], "out of range"),
    (["unit", "--blob", "conv2", "--image", "{d}/big.png"],
     "--image: the cifar10 whitening takes 3×32×32 images, and this net's input is 3×8×8"),
    (["unit", "--blob", "conv2", "--input", "{d}/data.npz"], "not a .npy array"),
    (["unit", "--blob", "conv2"], "give one input"),
    (["top-patches", "--blob", "conv2", "--filters", "7", "--data", "{d}/data.npz"],
     "--filters: 7 is not a channel of the blob: it has channels 0-4"),
    (["top-patches", "--blob", "conv2", "--filters", "3,1-3", "--data", "{d}/data.npz"],
     "argument --filters: 3 is given twice in '3,1-3'"),
    (["top-patches", "--blob", "conv2", "--filters", "1,x", "--data", "{d}/data.npz"],
     "argument --filters: '1,x': give ranges and numbers, like 0-15 or 0,4,9"),
    (["top-patches", "--blob", "conv2", "--k", "31", "--data", "{d}/data.npz"],
     "k must be between 1 and the 30 images"),
    (["unit", "--blob", "conv2", "--methods", "guided,guided", "--input", "{d}/x.npy"],
     "argument --methods: guided is given twice in 'guided,guided'"),
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


@pytest.fixture(scope="module")
def all_c(tmp_path_factory):
    """All-CNN-C's deploy net (3×32×32 input, filler weights) and a 40×30 picture."""
    from PIL import Image
    d = tmp_path_factory.mktemp("all_c")
    (d / "deploy.prototxt").write_text(ALL_C_DEPLOY)
    net = Net(ALL_C_DEPLOY, TEST, seed=0)
    net.save(d / "w.caffemodel")
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(d / "big.png")
    return d, net


def test_image_is_whitened_with_the_runs_whitening_and_shown_raw(all_c, monkeypatch):
    from PIL import Image
    from runtime.data.preprocess import Whitening
    import visualize.inputs
    d, net = all_c
    rng = np.random.RandomState(3)
    pixels = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(d / "image.png")
    whitening = Whitening(rng.randn(3072), np.eye(3072) + 0.01 * rng.randn(3072, 3072))
    monkeypatch.setattr(visualize.inputs, "prepared_whitening",
                        lambda dataset, data, verify: whitening)
    args = visualize.cli.build_parser().parse_args(
        ["unit", "--blob", "conv1", "--image", str(d / "image.png"), "-o", "u.png"])
    source = NetSource(d / "deploy.prototxt", d / "w.caffemodel",
                                     get_dataset("cifar10"), None)
    picture = visualize.inputs.load_picture(args, net, source)
    np.testing.assert_array_equal(picture.shown, pixels / 255.0)
    np.testing.assert_allclose(picture.whitened, whitening(np.moveaxis(pixels, -1, 0)[None])[0])


def test_a_16_bit_image_is_refused_not_clipped_to_white(all_c, capsys):
    """Found by fuzzing: Pillow's RGB conversion clipped 99.5 % of the pixels to 255, and the
    figure was drawn from that."""
    from PIL import Image
    d, _ = all_c
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(d / "deep.png")
    code = run_cli(main, "visualize", ["unit", "--prototxt", str(d / "deploy.prototxt"),
                                       "--weights", str(d / "w.caffemodel"), "--blob", "conv6",
                                       "--image", str(d / "deep.png"), "-o", str(d / "u.png")])
    assert code == 2 and capsys.readouterr().err == (
        f"visualize unit: error: {d}/deep.png: an image of mode I;16 (16 or 32 bits a value); "
        "visualize --image reads 8-bit images\n")
    assert not (d / "u.png").exists()


def test_image_of_another_size_for_a_cifar_net_is_refused(all_c, capsys):
    d, _ = all_c
    code = run_cli(main, "visualize", ["unit", "--prototxt", str(d / "deploy.prototxt"),
                                       "--weights", str(d / "w.caffemodel"), "--blob", "conv6",
                                       "--image", str(d / "big.png"), "-o", str(d / "u.png")])
    assert code == 2 and capsys.readouterr().err == (
        f"visualize unit: error: --image {d}/big.png has shape (3, 40, 30); the net's input blob "
        "'data' takes (3, 32, 32) (C, H, W) (a CIFAR net's image must have its input size; "
        "only --dataset imagenet resizes)\n")


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
        commit=None, variant="all-c", dataset="cifar10", classes=list("abcdefghij"), whitening=None),
        deploy=ALL_C_DEPLOY)
    code = run_cli(main, "visualize", ["top-patches", "--run", str(tmp_path), "--dataset",
                                       "cifar100",
                                       "--blob", "conv1", "-o", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--dataset cifar100 contradicts the run {tmp_path}, which trained on cifar10" in err



# ----------------------------------------------------------------------------- issue 18

IMAGENET_NET = """
name: "tiny-imagenet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 227 dim: 227 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 11 stride: 4
    weight_filler { type: "gaussian" std: 0.05 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 3 kernel_size: 3 stride: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
"""


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory):
    """A net with the ImageNet net's 3×227×227 input, and a 300×400 photo, also as the one
    JPEG of an ImageFolder tree's val split."""
    from PIL import Image
    d = tmp_path_factory.mktemp("imagenet")
    (d / "net.prototxt").write_text(IMAGENET_NET)
    Net(IMAGENET_NET, TEST, seed=0).save(d / "net.caffemodel")
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    (d / "val" / "n0001").mkdir(parents=True)
    Image.fromarray(photo).save(d / "val" / "n0001" / "photo.JPEG", quality=90)
    Image.fromarray(photo[:227, :227]).save(d / "photo227.png")
    (d / "photo.jpg").write_bytes((d / "val" / "n0001" / "photo.JPEG").read_bytes())
    return d


def _imagenet_cli(d, *argv):
    return run_cli(main, "visualize", ["unit", "--prototxt", str(d / "net.prototxt"), "--weights",
                                       str(d / "net.caffemodel"), "--device", "cpu", "--blob",
                                       "conv2", *map(str, argv)])


def test_image_for_imagenet_is_the_test_feeds_crop_and_needs_no_cifar(imagenet_files,
                                                                     monkeypatch, capsys):
    """--dataset imagenet: any size, prepared exactly as the harness's ImageNet TEST feed
    (resize to 256×256, BGR, centre 227 crop, less 104/117/123); CIFAR is never touched."""
    d = imagenet_files
    monkeypatch.setattr(cifar, "download", lambda *a: pytest.fail("no CIFAR download"))
    monkeypatch.setattr("runtime.files.cache_dir", lambda: pytest.fail("no CIFAR cache"))
    assert _imagenet_cli(d, "--dataset", "imagenet", "--image", d / "photo.jpg",
                         "-o", d / "u.png", "--npy", d / "u.npz") == 0
    assert (d / "u.png").read_bytes()[:4] == b"\x89PNG"
    args = visualize.cli.build_parser().parse_args(
        ["unit", "--blob", "conv2", "--image", str(d / "photo.jpg"), "-o", "u.png"])
    source = NetSource(d / "net.prototxt", d / "net.caffemodel",
                                     get_dataset("imagenet"), None)
    net = Net(IMAGENET_NET, TEST, weights=d / "net.caffemodel")
    picture = visualize.inputs.load_picture(args, net, source)
    feed = imagenet.ImageNetFeed(imagenet.scan(d, "val"), train=False,
                                 mean=imagenet.MEAN_VALUES, threads=1)
    want, _ = feed(1)
    assert picture.whitened.shape == (3, 227, 227)
    np.testing.assert_array_equal(picture.whitened, want[0].numpy())
    with np.load(d / "u.npz") as saved:
        x = torch.from_numpy(picture.whitened[None])
        conv2 = net.blob_values(data=x)["conv2"][0].detach()
        unit = np.unravel_index(int(conv2.argmax()), conv2.shape)
        np.testing.assert_allclose(saved["guided"], reconstruct(
            net, "conv2", x, "guided", [tuple(map(int, unit))]).numpy(), rtol=1e-5, atol=1e-7)


def test_image_for_imagenet_is_shown_in_rgb_and_fed_in_bgr(imagenet_files, tmp_path):
    from PIL import Image
    d = imagenet_files
    pixels = np.zeros((256, 256, 3), np.uint8)
    pixels[:, :128] = (255, 0, 0)        # red left half
    pixels[:, 128:] = (0, 0, 255)        # blue right half
    Image.fromarray(pixels).save(tmp_path / "halves.png")
    args = visualize.cli.build_parser().parse_args(
        ["unit", "--blob", "conv2", "--image", str(tmp_path / "halves.png"), "-o", "u.png"])
    source = NetSource(d / "net.prototxt", d / "net.caffemodel",
                                     get_dataset("imagenet"), None)
    picture = visualize.inputs.load_picture(args, Net(IMAGENET_NET, TEST), source)
    left, right = picture.whitened[:, :, 0], picture.whitened[:, :, -1]    # crop starts at 14
    assert (left == np.array([[-104], [-117], [255 - 123]])).all()          # B, G, R
    assert (right == np.array([[255 - 104], [-117], [-123]])).all()
    np.testing.assert_array_equal(picture.shown[:, 0], [[1.0, 0.0, 0.0]] * 227)
    np.testing.assert_array_equal(picture.shown[:, -1], [[0.0, 0.0, 1.0]] * 227)


def _drawn(monkeypatch) -> list[np.ndarray]:
    """Keep each panel's image as visualize draws it."""
    import visualize.figures
    panels = []
    draw = visualize.figures._panel

    def keep(ax, image, *args, **kwargs):
        panels.append(image)
        draw(ax, image, *args, **kwargs)
    monkeypatch.setattr(visualize.figures, "_panel", keep)
    return panels


def _as_rgb(bgr: np.ndarray) -> np.ndarray:
    """A BGR reconstruction (3, H, W) as its panel should show it: RGB, 0 at 0.5."""
    return np.moveaxis(0.5 + 0.5 * bgr / np.abs(bgr).max(), 0, -1)[:, :, ::-1]


def test_an_imagenet_nets_reconstructions_are_drawn_in_rgb(imagenet_files, tmp_path,
                                                            monkeypatch):
    """Its reconstructions are in the net's BGR order, as its input is; they were drawn as
    RGB, blue as red, beside the input drawn in RGB (unit), and so were its filters'."""
    d = imagenet_files
    panels = _drawn(monkeypatch)
    assert _imagenet_cli(d, "--dataset", "imagenet", "--image", d / "photo.jpg", "--methods",
                         "guided", "-o", tmp_path / "u.png", "--npz", tmp_path / "u.npz") == 0
    with np.load(tmp_path / "u.npz") as saved:
        np.testing.assert_allclose(panels[1], _as_rgb(saved["guided"][0]), rtol=1e-6)
    panels.clear()
    assert run_cli(main, "visualize", [
        "filters", "--prototxt", str(d / "net.prototxt"), "--weights", str(d / "net.caffemodel"),
        "--dataset", "imagenet", "--blob", "conv1", "--filters", "0", "-o",
        str(tmp_path / "f.png"), "--npz", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz") as saved:
        signal = saved["deconvnet"][0]
    rows, columns = np.nonzero(np.abs(signal).sum(0))          # its 11×11 receptive field
    field = signal[:, rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    assert field.shape == (3, 11, 11)
    np.testing.assert_allclose(panels[0], _as_rgb(field), rtol=1e-6)
    # top-patches of a .npz of the net's inputs: --dataset imagenet says their order (refused)
    panels.clear()
    save_npz_source(tmp_path / "x.npz", np.random.default_rng(1).normal(
        size=(2, 3, 227, 227)).astype(np.float32), np.zeros(2))
    assert run_cli(main, "visualize", [
        "top-patches", "--prototxt", str(d / "net.prototxt"), "--weights",
        str(d / "net.caffemodel"), "--dataset", "imagenet", "--data", str(tmp_path / "x.npz"),
        "--blob", "conv1", "--filters", "0", "--k", "1", "-o", str(tmp_path / "t.png"),
        "--npz", str(tmp_path / "t.npz")]) == 0
    with np.load(tmp_path / "t.npz") as saved:
        signal = saved["guided"][0, 0]
    rows, columns = np.nonzero(np.abs(signal).sum(0))
    field = signal[:, rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    np.testing.assert_allclose(panels[1], _as_rgb(field), rtol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--image", "{d}/photo227.png", "--data", "{d}"],
     "--image: the cifar10 whitening takes 3×32×32 images, and this net's input is 3×227×227 "
     "(for the ImageNet net give --dataset imagenet; any net takes --input X.npy)"),
    (["--dataset", "imagenet", "--image", "{d}/photo.jpg", "--data", "{d}"],
     "--data does nothing with --image for imagenet"),
    (["--dataset", "imagenet", "--cifar-index", "0"],
     "--cifar-index takes a CIFAR test image; imagenet is an ImageFolder tree"),
    (["--dataset", "imagenet", "--image", "{d}/net.prototxt"], "could not load the image"),
    (["--cifar-index", "-1"], "argument --cifar-index: must be 0 or more, not -1"),
])
def test_image_for_the_imagenet_net_bad_input_is_one_line(imagenet_files, capsys, argv,
                                                          message):
    """Before: the CIFAR whitening applied to a 227×227 image (RuntimeError, 154587 against
    3072), or a CIFAR-10 download."""
    d = imagenet_files
    code = _imagenet_cli(d, *[a.format(d=d) for a in argv], "-o", d / "bad.png")
    err = capsys.readouterr().err
    assert code == 2 and message.format(d=d) in err and err.count("\n") == 1, err
    assert not (d / "bad.png").exists()


def _figure_of(monkeypatch):
    """Keep the figures that visualize writes, to count their panels."""
    import visualize.figures
    figures = []
    save = visualize.figures.save_figure

    def keep(fig, path, **options):
        figures.append(fig)
        save(fig, path, **options)
    monkeypatch.setattr(visualize.figures, "save_figure", keep)
    return figures


def test_methods_choose_the_panels_and_arrays(files, monkeypatch):
    d, net = files
    figures = _figure_of(monkeypatch)
    assert cli(files, "unit", "--blob", "conv2", "--methods", "guided,backprop", "--switches",
               "--input", d / "x.npy", "-o", d / "m.png", "--npy", d / "m.npz") == 0
    assert len(figures[0].axes) == 2 * 3                    # 2 rows: input, guided, backprop
    assert [ax.get_title() for ax in figures[0].axes[1:3]] == ["guided", "backprop"]
    with np.load(d / "m.npz") as saved:
        assert list(saved) == ["guided", "backprop", "guided_switches", "backprop_switches"]
    assert cli(files, "top-patches", "--blob", "conv2", "--filters", "0,4", "--k", "3",
               "--methods", "backprop,guided", "--data", d / "data.npz", "-o", d / "t.png",
               "--npy", d / "t.npz") == 0
    visible = [ax for ax in figures[1].axes if ax.axison]
    assert len(visible) == 2 * 3 * 3                        # 2 filters x 3 images x 3 panels
    with np.load(d / "t.npz") as saved:
        assert saved["backprop"].shape == saved["guided"].shape == (2, 3, 3, 8, 8)
        assert not np.array_equal(saved["backprop"], saved["guided"])


SWITCH_NET = """
name: "switch-dead"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 1 kernel_size: 1 stride: 2
    weight_filler { type: "constant" value: 1 } bias_filler { type: "constant" value: 0 } } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 1 kernel_size: 1
    weight_filler { type: "constant" value: -1 } bias_filler { type: "constant" value: 1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
"""


def test_grey_panels_with_switches_are_explained(tmp_path, monkeypatch, capsys):
    """The strided conv samples the zeros at even positions (conv2 = 1 - 0 > 0); the max-pool
    that replaces it takes the 3s beside them (conv2 = 1 - 3 < 0), so the unit is 0 with
    switches and backprop and guided pass nothing: the figure and stderr say so."""
    (tmp_path / "n.prototxt").write_text(SWITCH_NET)
    Net(SWITCH_NET, TEST, seed=0).save(tmp_path / "n.caffemodel")
    x = np.ones((1, 3, 8, 8), np.float32)
    x[..., ::2, ::2] = 0
    np.save(tmp_path / "x.npy", x)
    figures = _figure_of(monkeypatch)
    code = run_cli(main, "visualize", [
        "unit", "--prototxt", str(tmp_path / "n.prototxt"), "--weights",
        str(tmp_path / "n.caffemodel"), "--blob", "conv2", "--unit", "0,1,1", "--switches",
        "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "u.png"), "--npy",
        str(tmp_path / "u.npz")])
    out, err = capsys.readouterr()
    assert code == 0 and "activation 1" in out
    assert err == ("visualize unit: note: with switches: backprop and guided are 0 everywhere "
                   "(grey), since the unit's value there is 0 and these rules pass nothing back "
                   "through a ReLU whose input is not positive\n")
    with np.load(tmp_path / "u.npz") as saved:
        assert not saved["backprop_switches"].any() and not saved["guided_switches"].any()
        assert saved["deconvnet_switches"].any() and saved["backprop"].any()
    fig = figures[0]
    assert "with switches: backprop and guided are 0 everywhere" in fig._suptitle.get_text()
    marked = [i for i, ax in enumerate(fig.axes) if any(t.get_text() == "0 everywhere"
                                                        for t in ax.texts)]
    assert marked == [5, 7]                                 # row 2: backprop, guided
    assert fig.axes[4].get_ylabel() == "with switches\nactivation 0"


def test_grey_note_gives_deconvnet_its_own_reason():
    """deconvnet's rule ignores the ReLU's input, so a unit of value 0 does not explain its grey
    panel (a diverged run's underflowing weights do); a positive unit's grey guided panel comes
    from the ReLUs below (all paths blocked on this image)."""
    note = visualize.cli.grey_note("net as given", ["backprop", "deconvnet", "guided"], 0.0)
    assert note == ("net as given: backprop and deconvnet and guided are 0 everywhere (grey); "
                    "backprop and guided since the unit's value there is 0 and these rules pass "
                    "nothing back through a ReLU whose input is not positive; deconvnet since no "
                    "signal reaches the input through the layers below (a ReLU blocks each path by "
                    "the rule, or the weights are zero or underflow)")
    assert visualize.cli.grey_note("x", ["deconvnet"], 0.0) == (
        "x: deconvnet is 0 everywhere (grey), since no signal reaches the input through the "
        "layers below (a ReLU blocks each path by the rule, or the weights are zero or "
        "underflow)")
    assert visualize.cli.grey_note("x", ["guided"], 0.5) == (          # a positive unit
        "x: guided is 0 everywhere (grey), since no signal reaches the input through the "
        "layers below (a ReLU blocks each path by the rule, or the weights are zero or "
        "underflow)")
    assert visualize.cli.grey_note("x", ["guided"], -1.0).endswith(
        "since the unit's value there is -1 and this rule passes nothing back through a ReLU "
        "whose input is not positive")


PROD_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 7 dim: 7 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.2 } } }
layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "a" type: "Convolution" bottom: "c1" top: "a"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.2 } } }
layer { name: "ra" type: "ReLU" bottom: "a" top: "a" }
layer { name: "b" type: "Convolution" bottom: "c1" top: "b"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.2 } } }
layer { name: "rb" type: "ReLU" bottom: "b" top: "b" }
layer { name: "p" type: "Eltwise" bottom: "a" bottom: "b" top: "p"
  eltwise_param { operation: PROD stable_prod_grad: false } }
layer { name: "c2" type: "Convolution" bottom: "p" top: "c2"
  convolution_param { num_output: 2 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.4 } bias_filler { type: "gaussian" std: 0.2 } } }
"""


def test_a_reconstruction_that_is_not_finite_is_refused_with_nothing_written(tmp_path, capsys):
    """Caffe's unstable PROD backward, top·diff / bottom, is 0/0 where a ReLU zeroed a bottom:
    the arrays would be NaN and the panels white, with exit status 0."""
    (tmp_path / "p.prototxt").write_text(PROD_NET)
    net = Net(PROD_NET, TEST, seed=0)
    net.save(tmp_path / "p.caffemodel")
    x = np.random.RandomState(0).randn(1, 3, 7, 7).astype(np.float32)
    values = net.blob_values(data=torch.from_numpy(x))
    assert (values["a"] == 0).any() and (values["b"] == 0).any()
    np.save(tmp_path / "x.npy", x)
    code = run_cli(main, "visualize", [
        "unit", "--prototxt", str(tmp_path / "p.prototxt"), "--weights",
        str(tmp_path / "p.caffemodel"), "--blob", "c2", "--input", str(tmp_path / "x.npy"),
        "-o", str(tmp_path / "u.png"), "--npy", str(tmp_path / "u.npz"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (
        "visualize unit: error: blob 'c2' unit 1,0,4: the reconstruction by backprop (147 of 147 "
        "values), deconvnet (147 of 147 values), guided (147 of 147 values) is not finite: a "
        "layer's backward divides by zero or overflows on this input (Caffe's formulas, e.g. "
        "Eltwise PROD without stable_prod_grad at a zero, or Power's fractional power at 0); "
        "nothing written")
    assert not (tmp_path / "u.png").exists() and not (tmp_path / "u.npz").exists()


def test_top_patches_refuses_a_reconstruction_that_is_not_finite(tmp_path, capsys):
    (tmp_path / "p.prototxt").write_text(PROD_NET)
    Net(PROD_NET, TEST, seed=0).save(tmp_path / "p.caffemodel")
    rng = np.random.RandomState(0)
    save_npz_source(tmp_path / "d.npz", rng.randn(6, 3, 7, 7), np.zeros(6))
    code = run_cli(main, "visualize", [
        "top-patches", "--prototxt", str(tmp_path / "p.prototxt"), "--weights",
        str(tmp_path / "p.caffemodel"), "--blob", "c2", "--data", str(tmp_path / "d.npz"),
        "--k", "2", "-o", str(tmp_path / "t.png"), "--npy", str(tmp_path / "t.npz"),
        "--device", "cpu"])
    last = capsys.readouterr().err.strip().splitlines()[-1]     # after the scan's bar
    assert code == 2
    assert last.startswith("visualize top-patches: error: blob 'c2' filter 0: the "
                           "reconstruction by guided (") and last.endswith("nothing written")
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "t.npz").exists()


def _run_with_cached_whitening(files, tmp_path, monkeypatch):
    """A run folder of NET whose whitened CIFAR (4 random test images) is in the cache."""
    from runtime.data.preprocess import Whitening
    d, _ = files
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    entry = tmp_path / "cache" / "allconv" / "prepared" / "cifar10-0123"
    entry.mkdir(parents=True)
    images = np.random.default_rng(5).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.save(entry / "test_images.npy", images)
    Whitening(np.zeros(192), np.eye(192)).save(entry / "whitening.npz")
    run = tmp_path / "run"
    run.mkdir()
    run_folder.RunFolder(run).write_record({"row": "table3/all-cnn-c"}, run_folder.provenance(
        commit=None, variant="all-c", dataset="cifar10", classes=list("abcdefghij"),
        whitening={"cache_entry": str(entry)}), deploy=NET)
    (run / "checkpoint_iter_1.caffemodel").write_bytes((d / "net.caffemodel").read_bytes())
    return run, images


def test_run_without_data_reads_the_runs_whitened_copy_and_never_downloads(files, tmp_path,
                                                                           monkeypatch):
    """--cifar-index with --run and no --data: the run's whitened test set in the cache."""
    d, net = files
    monkeypatch.setattr(cifar, "download", lambda *a: pytest.fail("no download may be tried"))
    run, images = _run_with_cached_whitening(files, tmp_path, monkeypatch)
    assert run_cli(main, "visualize", ["unit", "--run", str(run), "--blob", "conv2",
                                       "--unit", "1", "--cifar-index", "2", "-o",
                                       str(tmp_path / "u.png"), "--npy",
                                       str(tmp_path / "u.npz")]) == 0
    x = torch.from_numpy(images[2:3])
    conv2 = net.blob_values(data=x)["conv2"][0, 1].detach()
    y, xx = divmod(int(conv2.argmax()), conv2.shape[1])
    with np.load(tmp_path / "u.npz") as saved:
        np.testing.assert_allclose(saved["guided"], reconstruct(
            net, "conv2", x, "guided", [(1, y, xx)]).numpy(), rtol=1e-6)


def test_a_bad_result_json_is_refused_before_the_figure_is_drawn(files, tmp_path, monkeypatch,
                                                                 capsys):
    """The run's result was read for the snapshot's warning after "wrote u.png": the error
    came with the figure left behind (mutation fuzzer); export-onnx reads it first too."""
    run, _ = _run_with_cached_whitening(files, tmp_path, monkeypatch)
    (run / "result.json").write_text("{")
    assert run_cli(main, "visualize", ["unit", "--run", str(run), "--blob", "conv2",
                                       "--cifar-index", "2", "-o",
                                       str(tmp_path / "u.png")]) == 2
    out, err = capsys.readouterr()
    assert "result.json: cannot read it as JSON" in err and "wrote" not in out
    assert not (tmp_path / "u.png").exists()


def test_weights_beside_run_replace_its_snapshot_as_in_export_onnx(files, tmp_path,
                                                                    monkeypatch, capsys):
    """A run folder without a snapshot says "give --weights": --run with --weights then draws
    from those weights (export-onnx takes the same pair); --run with --prototxt is refused."""
    d, _ = files
    run, _ = _run_with_cached_whitening(files, tmp_path, monkeypatch)
    argv = ["unit", "--run", str(run), "--blob", "conv2", "--unit", "1", "--cifar-index", "2"]
    assert run_cli(main, "visualize", argv + ["--npy", str(tmp_path / "a.npz"), "-o",
                                              str(tmp_path / "a.png")]) == 0
    (run / "checkpoint_iter_1.caffemodel").unlink()
    assert run_cli(main, "visualize", argv + ["-o", str(tmp_path / "b.png")]) == 2
    assert "no snapshot" in capsys.readouterr().err
    assert run_cli(main, "visualize", argv + ["--weights", str(d / "net.caffemodel"), "--npy",
                                              str(tmp_path / "b.npz"), "-o",
                                              str(tmp_path / "b.png")]) == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["guided"], b["guided"])
    assert run_cli(main, "visualize", argv + ["--prototxt", str(d / "net.prototxt"), "-o",
                                              str(tmp_path / "c.png")]) == 2
    assert "give --run or --prototxt, not both" in capsys.readouterr().err


def test_data_beside_run_must_hold_the_release_the_run_trained_on(files, tmp_path, monkeypatch,
                                                                  capsys):
    """--run with --data: the release is checked against the run's whitening, never used in its
    place (it would whiten the images with another fit)."""
    from test_harness import write_cifar10_bin
    run, _ = _run_with_cached_whitening(files, tmp_path, monkeypatch)
    data = write_cifar10_bin(tmp_path / "cifar", n_train=8, n_test=4)
    code = run_cli(main, "visualize", ["unit", "--run", str(run), "--blob", "conv2", "--cifar-index",
                                       "2", "--data", str(data), "--no-verify", "-o",
                                       str(tmp_path / "u.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"the CIFAR files in --data {data} give cifar10-" in err, err
    assert not (tmp_path / "u.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["unit", "--blob", "conv2", "--input", "{d}/nan.npy"],
     "--input {d}/nan.npy: 2 of its 192 values are not finite (NaN or infinite)"),
    (["top-patches", "--blob", "conv2", "--data", "{d}/nan.npz"],
     "{d}/nan.npz: 1 of its 5760 values are not finite"),
    (["unit", "--blob", "conv2", "--input", "{d}/x.npy", "--npy", "{d}/no/x.npz"],
     "{d}/no/x.npz: cannot write: no folder {d}/no"),
    (["unit", "--blob", "conv2", "--input", "{d}/x.npy", "--npy", "{d}/x.npy"],
     "argument --npz/--npy: {d}/x.npy: the arrays file must end in .npz"),
    (["filters", "--blob", "conv2", "--filters", "3-1"],
     "argument --filters: the range 3-1 is reversed in '3-1'; write 1-3"),
    # a negative end is not an index, whichever way the range runs: no reversed suggestion
    (["filters", "--blob", "conv2", "--filters", "3--1"],
     "argument --filters: 3--1 is not an index (0 or more) in '3--1'"),
    # a misspelt option: the subcommand's own nearest is suggested (--output is an alias)
    (["filters", "--blob", "conv2", "--outfile", "{d}/f.png"],
     "visualize filters: error: unrecognized arguments: --outfile {d}/f.png (did you mean "
     "--out?)"),
    (["unit", "--blob", "conv2", "--input", "{d}/x.npy", "--data", "{d}/data.npz"],
     "--data does nothing with --input"),
    (["top-patches", "--blob", "conv2", "--data", "{d}/data.npz", "--no-verify"],
     "--no-verify does nothing here: no CIFAR file is read"),
    (["top-patches", "--blob", "conv2", "--data", "{d}/data.npz", "--split", "train"],
     "--split does nothing with --data {d}/data.npz"),
    (["unit", "--blob", "conv2", "--input", "{d}/x.npy", "--methods", "guided,grad"],
     "argument --methods: unknown method 'grad'; valid: backprop, deconvnet, guided "
     "(in 'guided,grad')"),
])
def test_issue_18_bad_input_is_one_line_exit_2_and_writes_nothing(files, capsys, argv, message):
    """Before: a figure of NaNs ("activation nan", exit 0); the figure written, then exit 2
    on --npy; "the blob has channels 0-4" for a reversed range; options that did nothing."""
    d, _ = files
    x = np.load(d / "x.npy")
    x[0, 1, 2, 3] = np.nan
    x[0, 0, 0, 0] = np.inf
    np.save(d / "nan.npy", x)
    data = np.random.default_rng(0).standard_normal((30, 3, 8, 8))
    data[4, 0, 0, 0] = np.nan
    save_npz_source(d / "nan.npz", data, np.zeros(30))
    out = d / "never.png"
    code = cli(files, *[a.format(d=d) for a in argv], "-o", out)
    err = capsys.readouterr().err
    assert code == 2 and message.format(d=d) in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["unit", "--blob", "conv2", "--input", "{d}/junk.npy"],
     "visualize unit: error: {d}/junk.npy: not a .npy array: the magic string is not correct; "
     "expected b'\\x93NUMPY', got b'a text'"),
    (["unit", "--blob", "conv2", "--input", "{d}/x.npy", "--weights", "{d}/lstm.caffemodel"],
     "visualize unit: error: {d}/lstm.caffemodel: no weights for layer(s) conv1, conv2 (the "
     "file has: lstm)"),
    (["filters", "--blob", "conv2", "--weights", "{d}/lstm.caffemodel"],
     "visualize filters: error: {d}/lstm.caffemodel: no weights for layer(s) conv1, conv2"),
    (["top-patches", "--blob", "conv2", "--data", "{d}/data.npz", "-o", "{d}/t.jpg"],
     "visualize top-patches: error: argument -o/--out/--output: {d}/t.jpg: the figure must end in .png"),
])
def test_new_user_errors_name_the_subcommand_and_the_file(files, capsys, argv, message):
    """Before: numpy's "pickled (object) data" for a text file; a .caffemodel sharing no layer
    with the net drawn from filler weights, exit 0; "visualize: error:" beside argparse's
    "visualize unit: error:"."""
    from runtime.caffemodel import write_weights
    d, _ = files
    (d / "junk.npy").write_text("a text file, not an array\n")
    write_weights(d / "lstm.caffemodel", [("lstm", "LSTM", [np.zeros((8, 2), np.float32)])])
    out = d / "never.png"
    code = cli(files, *[a.format(d=d) for a in argv], "-o", out)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message.format(d=d)) and err.count("\n") == 1, err
    assert not out.exists()


def test_a_large_all_cnn_net_reads_cifar_images_in_its_frame(tmp_path, capsys):
    """A CIFAR net of Large All-CNN's 126×126 input: --cifar-index and --image are its test
    input (the pixels scaled and centred in the frame), not the GCN+ZCA whitening, which
    asked for a whitened copy and then refused the 32×32 image."""
    from runtime.data.large_augment import LargeAugment, large_batch
    net, pixels, data = _large_net_and_test_images(tmp_path)
    framed = large_batch(torch.tensor(pixels[2:3]), LargeAugment.off(), None)
    conv2 = net.blob_values(data=framed)["conv2"][0, 1].detach()
    unit = (1,) + divmod(int(conv2.argmax()), conv2.shape[1])
    want = reconstruct(net, "conv2", framed, "guided", [unit])
    assert want.abs().sum() > 0
    common = ["unit", "--prototxt", str(tmp_path / "large.prototxt"), "--weights",
              str(tmp_path / "large.caffemodel"), "--device", "cpu", "--blob", "conv2",
              "--unit", "1", "--methods", "guided", "-o", str(tmp_path / "u.png")]
    assert run_cli(main, "visualize", common + ["--cifar-index", "2", "--data", str(data),
                                                "--no-verify", "--npy", str(tmp_path / "a.npz")]) == 0
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.moveaxis(pixels[2], 0, -1)).save(tmp_path / "two.png")
    assert run_cli(main, "visualize", common + ["--image", str(tmp_path / "two.png"),
                                                "--npy", str(tmp_path / "b.npz")]) == 0
    for name in ("a.npz", "b.npz"):
        with np.load(tmp_path / name) as saved:
            np.testing.assert_array_equal(saved["guided"], want.numpy())
    capsys.readouterr()
    assert run_cli(main, "visualize", common + ["--image", str(tmp_path / "two.png"),
                                                "--data", str(data)]) == 2
    assert "--data does nothing with --image for a Large All-CNN net" in capsys.readouterr().err


def test_a_large_all_cnn_run_without_cached_cifar_asks_for_data(tmp_path, monkeypatch, capsys):
    """A run's images come from the cache only when its files lie there (never a download)."""
    text = NET.replace("dim: 8 dim: 8", "dim: 126 dim: 126")
    spec = (ROOT / "reproductions" / "table4" / "large-all-cnn.toml").read_text()
    run = tmp_path / "run"
    run.mkdir()
    run_folder.RunFolder(run).write_record(
        {"row": "table4/large-all-cnn", "spec": spec}, run_folder.provenance(
            commit=None, variant="large-all-cnn", dataset="cifar10", classes=list("abcdefghij"),
            whitening=None), deploy=text)
    Net(text, TEST, seed=2).save(run / "checkpoint_iter_1.caffemodel")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert run_cli(main, "visualize", ["unit", "--run", str(run), "--device", "cpu", "--blob",
                                       "conv2", "--cifar-index", "0", "-o",
                                       str(tmp_path / "u.png")]) == 2
    assert capsys.readouterr().err == (f"visualize unit: error: {run}: cifar10's test files are "
                                       "not in this machine's cache; give --data with the CIFAR "
                                       "release\n")


@pytest.mark.parametrize("channels, shape", [(1, (2, 3)), (3, (2, 3, 3)), (2, (2, 7)),
                                             (4, (2, 15))])
def test_a_reconstruction_of_any_channel_count_is_drawn(channels, shape):
    """RGB for 3 channels, grey for 1, and the channels side by side otherwise (a net on
    2-channel input made matplotlib's imshow raise "Invalid shape (3, 3, 2)")."""
    from visualize.figures import shown
    signal = np.arange(channels * 6, dtype=np.float32).reshape(channels, 2, 3) - 5
    image = shown(signal)
    assert image.shape == shape and image.min() >= 0 and image.max() <= 1
    if channels == 2:
        assert np.all(image[:, 3] == 0.5)           # the gap between the channels
        np.testing.assert_allclose(image[:, 4:], 0.5 + 0.5 * signal[1] / 6)


def test_an_input_across_float32s_range_is_drawn_without_overflowing():
    """±3e38 in one input: its picture spans 0 to 1, where float32 arithmetic gave numpy's
    overflow warnings and NaN."""
    array = np.full((3, 2, 2), 3e38, np.float32)
    array[0, 0, 0] = -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = rescaled(array)
    assert picture.dtype == np.float32 and picture.shape == (2, 2, 3)
    assert picture[0, 0, 0] == 0 and picture.max() == 1 and (picture[1:] == 1).all()


def test_filters_equal_to_the_channel_count_is_one_line(files, capsys):
    """conv2 has 5 channels, 0-4: --filters 5 is the first past them."""
    d, _ = files
    code = cli(files, "top-patches", "--blob", "conv2", "--filters", "5", "--data",
               d / "data.npz", "-o", d / "bad.png")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--filters: 5 is not a channel of the blob: it has channels 0-4" in err


def test_npz_that_is_the_figure_through_a_link_is_refused_before_anything_is_written(
        files, tmp_path, capsys):
    d, _ = files
    (tmp_path / "same.npz").symlink_to(tmp_path / "fig.png")
    code = cli(files, "unit", "--blob", "conv2", "--input", d / "x.npy", "-o",
               tmp_path / "fig.png", "--npz", tmp_path / "same.npz")
    assert code == 2 and "--npz and -o name the same file" in capsys.readouterr().err
    assert not (tmp_path / "fig.png").exists()


def test_top_patches_searches_the_test_split_by_default(tmp_path):
    """--split's help: default test. A Large All-CNN-sized net (its images framed, no
    whitening) over a CIFAR release of 10 train and 4 test images: the top 4 of filter 0 are
    the 4 test images' values."""
    from runtime.data.large_augment import LargeAugment, large_batch
    net, pixels, data = _large_net_and_test_images(tmp_path)
    framed = large_batch(torch.tensor(pixels), LargeAugment.off(), None)
    best = net.blob_values(data=framed)["conv2"][:, 0].detach().flatten(1).max(1).values
    assert run_cli(main, "visualize", [
        "top-patches", "--prototxt", str(tmp_path / "large.prototxt"), "--weights",
        str(tmp_path / "large.caffemodel"), "--device", "cpu", "--blob", "conv2", "--filters",
        "0", "--k", "4", "--data", str(data), "--no-verify", "-o", str(tmp_path / "t.png"),
        "--npz", str(tmp_path / "t.npz")]) == 0
    with np.load(tmp_path / "t.npz") as saved:
        np.testing.assert_allclose(saved["values"][0], best.sort(descending=True).values.numpy(),
                                   rtol=1e-5)


def test_filters_of_a_blob_that_is_not_square_take_its_centre_row_and_column(tmp_path, capsys):
    """An 8 x 12 input: conv2 is 4 x 6, its centre unit (2, 3) (row, column)."""
    text = NET.replace("dim: 8 dim: 8", "dim: 8 dim: 12")
    (tmp_path / "wide.prototxt").write_text(text)
    net = Net(text, TEST, seed=2)
    net.save(tmp_path / "wide.caffemodel")
    assert run_cli(main, "visualize", [
        "filters", "--prototxt", str(tmp_path / "wide.prototxt"), "--weights",
        str(tmp_path / "wide.caffemodel"), "--device", "cpu", "--blob", "conv2", "--filters",
        "1", "-o", str(tmp_path / "f.png"), "--npz", str(tmp_path / "f.npz")]) == 0
    assert "centre unit (2, 3)" in capsys.readouterr().out
    want = reconstruct(net, "conv2", torch.zeros(1, 3, 8, 12), "deconvnet", [(1, 2, 3)])
    with np.load(tmp_path / "f.npz") as saved:
        np.testing.assert_allclose(saved["deconvnet"], want.numpy(), rtol=1e-6)


def _large_net_and_test_images(tmp_path):
    """A Large All-CNN-sized net (large.prototxt, large.caffemodel in ``tmp_path``), the test
    pixels of a CIFAR release of 10 train and 4 test images, and that release's folder."""
    from test_harness import write_cifar10_bin
    text = NET.replace("dim: 8 dim: 8", "dim: 126 dim: 126")
    (tmp_path / "large.prototxt").write_text(text)
    net = Net(text, TEST, seed=2)
    net.save(tmp_path / "large.caffemodel")
    data = write_cifar10_bin(tmp_path / "cifar", n_train=10, n_test=4)
    return net, get_dataset("cifar10").load("test", data, verify=False)[0], data
