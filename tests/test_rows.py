"""Every row of `replicate --list` trains: the datasets and pipelines of harness/datasets.py on
small data the tests write in the official formats (CIFAR-10 binary, CIFAR-100 python,
an ImageFolder of JPEGs), and the spec checks that tie a row to the variant registry."""
from __future__ import annotations

import dataclasses
import json
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from harness import cli
from runtime.cli_support import run_cli
from harness.feed import TrainFeed
from harness.datasets import Data, ImageFolders, load_data, row_data
from harness.specs import SPECS_DIR, load_spec, load_tables
from runtime.data import get_dataset
from runtime.data.imagenet import ImageNetFeed, scan
from runtime.data.large_augment import LargeAugment, large_batch
from runtime.errors import AllconvError
from same_weights import assert_same_weights
from test_harness import cache, write_cifar10_bin  # noqa: F401  (fixtures)

LARGE = SPECS_DIR / "table4" / "large-all-cnn.toml"
CIFAR100 = SPECS_DIR / "table4" / "all-cnn-c-cifar100.toml"
IMAGENET = SPECS_DIR / "table6" / "imagenet.toml"
WNIDS = tuple(f"n{i:08d}" for i in range(1000))
COARSE = """aquatic_mammals fish flowers food_containers fruit_and_vegetables
household_electrical_devices household_furniture insects large_carnivores
large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores
medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
vehicles_2""".split()


def write_cifar100_python(root, n_train: int, n_test: int) -> None:
    """root/cifar-100-python/{train,test,meta}: the official pickles, random pixels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = (np.arange(n) * 7) % 100
        entry = {b"filenames": [f"{i}.png".encode() for i in range(n)],
                 b"batch_label": f"{split} batch".encode(), b"fine_labels": fine.tolist(),
                 b"coarse_labels": (fine // 5).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    names = [name.encode() for name in get_dataset("cifar100").class_names]
    coarse = [name.encode() for name in COARSE]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names,
                                                b"coarse_label_names": coarse}))


def write_image_folders(root, n_train: int, n_val: int, classes=WNIDS) -> None:
    """root/{train,val}/<wnid>/: a folder per class, JPEGs of odd sizes in the first few."""
    rng = np.random.default_rng(2)
    for split, n in (("train", n_train), ("val", n_val)):
        for wnid in classes:
            (root / split / wnid).mkdir(parents=True)
        for i in range(n):
            h, w = (40, 30) if i % 2 else (24, 50)
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / classes[i % 8] / f"{i}.JPEG")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, cache):  # noqa: F811
    """One --data folder for every row: tiny CIFAR-10, CIFAR-100 and ImageNet side by side."""
    root = write_cifar10_bin(tmp_path_factory.mktemp("data"), n_train=32, n_test=8)
    write_cifar100_python(root, n_train=32, n_test=8)
    write_image_folders(root, n_train=32, n_val=8)
    return root


def test_every_listed_row_starts_a_smoke_run(tmp_path, data_root, capsys):
    """All 16 rows, one iteration of batch 1 each (Large All-CNN is ~26 GMAC per image),
    evaluated on the first 2 test images; each is recorded as SMOKE."""
    out = tmp_path / "out"
    code = cli.main(["table3", "table4", "table6", "--data", str(data_root), "--no-verify",
                     "--epochs", str(1 / 32), "--batch-size", "1", "--eval-limit", "2",
                     "--device", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0
    # a never-predicted warning names at most 10 classes (ImageNet has 1000)
    warning = next(line for line in capsys.readouterr().err.splitlines()
                   if line.startswith("replicate: warning: table6/imagenet")
                   and "never predicted" in line)
    assert re.search(r"never predicted: (n\d{8}, ){9}n\d{8} and 9\d\d more "
                     r"\(warned again when this changes\)$", warning)
    specs = [s for rows in load_tables().values() for s in rows]
    assert len(specs) == 16
    for spec in specs:
        result = json.loads((out / spec.table / f"{spec.name}.json").read_text())
        assert result["status"] == "SMOKE" and result["smoke"], spec.key
        assert (result["iterations"], result["batch_size"], result["test_size"]) == (1, 1, 2)
        assert result["params_counted"] == spec.paper.counted_params
        assert result["train_size"] == 32
        classes = list(result["measured"]["per_class_accuracy"])
        assert len(classes) == spec.num_classes
    cifar100 = json.loads((out / "table4" / "all-cnn-c-cifar100.json").read_text())
    assert list(cifar100["measured"]["per_class_accuracy"])[:2] == ["apple", "aquarium_fish"]
    imagenet = json.loads((out / "table6" / "imagenet.json").read_text())
    assert list(imagenet["measured"]["per_class_accuracy"])[:2] == list(WNIDS[:2])
    assert 0 <= imagenet["measured"]["top5_error"] <= imagenet["measured"]["error"] <= 100
    assert "top-5 error" in (out / "table6" / "README.md").read_text()
    record = json.loads((out / "table6" / "imagenet" / "lr-0.01-smoke" / "metrics.jsonl")
                        .read_text().splitlines()[-1])
    assert record["top5_error"] == imagenet["measured"]["top5_error"]
    cifar = json.loads((out / "table3" / "all-cnn-c.json").read_text())
    assert cifar["measured"]["top5_error"] is None and "top5_error" not in cifar


def test_large_feed_frames_training_and_test_images(data_root):
    """Large All-CNN reads raw CIFAR: training batches distorted in the 126 frame, test batches
    the plain centred frame; a process's slice of a global batch keeps its distortions."""
    spec = load_spec(LARGE)
    data = load_data(spec, str(data_root), False, torch.device("cpu"))
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (32, 3, 32, 32)
    rows = row_data(spec, data, torch.device("cpu"))
    assert rows.sample_shape == (3, 126, 126) and rows.classes[0] == "airplane"
    (x, y), = rows.test_batches(4, 3)
    assert x.shape == (3, 3, 126, 126) and y.tolist() == data.test_labels[:3].tolist()
    torch.testing.assert_close(x, large_batch(data.test_images[:3], LargeAugment.off(), None))
    whole, _ = rows.feed(0)(4)
    assert whole.shape == (4, 3, 126, 126)
    first, second = rows.feed(0), rows.feed(0)
    torch.testing.assert_close(first(4, slice(0, 2))[0], whole[:2])
    torch.testing.assert_close(second(4, slice(2, 4))[0], whole[2:])
    plain, _ = TrainFeed(data.train_images, data.train_labels, 0)(4)
    framed = large_batch(plain, LargeAugment.off(), None)
    assert not torch.allclose(whole, framed)


def test_imagenet_feed_slices_keep_their_crops(data_root):
    train = scan(data_root, "train")
    mean = torch.tensor([104.0, 117.0, 123.0])
    whole, labels = ImageNetFeed(train, True, mean, seed=3, threads=2)(4)
    half, half_labels = ImageNetFeed(train, True, mean, seed=3, threads=2)(4, slice(2, 4))
    torch.testing.assert_close(half, whole[2:])
    assert half_labels.tolist() == labels[2:].tolist()


def test_imagenet_rows_read_the_tree_with_the_registry_mean(data_root):
    spec = load_spec(IMAGENET)
    folders = load_data(spec, str(data_root), True, torch.device("cpu"))
    assert isinstance(folders, ImageFolders) and folders.mean.tolist() == [104, 117, 123]
    rows = row_data(spec, folders, torch.device("cpu"))
    assert (rows.train_size, rows.test_size, rows.topk) == (32, 8, (1, 5))
    first = [y for _, y in rows.test_batches(3, 5)]
    again = [y for _, y in rows.test_batches(3, 5)]
    assert [len(y) for y in first] == [3, 2] and all(map(torch.equal, first, again))


def test_an_imagenet_tree_of_another_class_count_is_one_line(tmp_path):
    write_image_folders(tmp_path, n_train=4, n_val=2, classes=WNIDS[:8])
    with pytest.raises(AllconvError, match=r"train has 8 class folders; table6/imagenet trains "
                                           r"1000 classes$"):
        load_data(load_spec(IMAGENET), str(tmp_path), True, torch.device("cpu"))


def test_smoke_options_label_a_run():
    spec = load_spec(LARGE)
    assert not spec.is_smoke(None) and not spec.is_smoke(350, 64, 10_000)
    assert spec.is_smoke(None, batch_size=2) and spec.is_smoke(None, eval_limit=100)
    assert spec.is_smoke(349.0) and spec.is_smoke(400.0)     # before: 400 could PASS
    imagenet = load_spec(IMAGENET)   # 450,000 iterations of 64 over 1,281,167 images
    assert imagenet.epochs == pytest.approx(450_000 * 64 / 1_281_167)
    assert imagenet.is_smoke(1.0) and not imagenet.is_smoke(None)


def test_cli_smoke_options_must_be_positive(capsys):
    for flag in ("--batch-size", "--eval-limit"):
        assert run_cli(cli.main, "replicate", ["all-cnn-c", flag, "0"]) == 2
        assert capsys.readouterr().err == (f"replicate: error: argument {flag}: must be "
                                           "positive, not 0 (see --help)\n")


def _edited(tmp_path, source, *edits):
    text = source.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / source.name
    path.write_text(text)
    return path


@pytest.mark.parametrize("source, edits, message", [
    (LARGE, [("max_shift = 16 ", "max_shift = 8 ")], LargeAugment(max_shift=8)),
    (LARGE, [("\nalpha = 0.2 ", "\n#")], "missing key 'augment.alpha'"),
    (LARGE, [("\nflip = \"recalled", "\n#")], "missing key 'sources.augment.flip'"),
    (LARGE, [('stretch = "recalled: ', 'stretch = "looked up: ')],
     "'sources.augment.stretch' must read 'KIND: reason' with KIND one of quoted, recalled"),
    (LARGE, [('stretch = "recalled: ', 'stretch = "recalled:')], LargeAugment()),
    (LARGE, [('stretch = "recalled: ', 'stretch = "recalled')], "must read 'KIND: reason'"),
    (LARGE, [("[sources.augment]", "[sources.augment]\nrotate = \"chosen: x\"")],
     "unknown key 'sources.augment.rotate'; valid keys: stretch, flip"),
    (LARGE, [("max_shift = 16 ", "max_shift = -1 ")], "'max_shift' must not be negative"),
    (LARGE, [('dataset = "cifar10"', 'dataset = "cifar100"')],
     "'dataset' 'cifar100' has 100 classes; variant 'large-all-cnn' takes 10"),
    (LARGE, [('dataset = "cifar10"', 'dataset = "imagenet"')],
     "'augmentation' 'large' reads cifar10, cifar100, not 'dataset' 'imagenet'"),
    (LARGE, [('augmentation = "large"', 'augmentation = "none"')],
     "'augmentation' 'none' makes 32x32 inputs; variant 'large-all-cnn' takes 126x126"),
    (CIFAR100, [("[sources]", "[augment]\nflip = true\n\n[sources]")],
     "augmentation 'none' takes no [augment] table"),
    (IMAGENET, [('variant = "imagenet"', 'variant = "all-cnn-b"')],
     "'dataset' 'imagenet' has 1000 classes; variant 'all-b' takes 10 or 100"),
])
def test_specs_fit_the_variant_registry_and_source_every_augment_parameter(
        tmp_path, source, edits, message):
    path = _edited(tmp_path, source, *edits)
    if isinstance(message, LargeAugment):   # loads, with these parameters
        assert load_spec(path).augment == message
        return
    with pytest.raises(AllconvError, match=re.escape(message)) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_large_row_states_every_parameter_with_its_source():
    spec = load_spec(LARGE)
    assert spec.augment == LargeAugment()   # the spec writes out the pipeline's defaults
    fields = [f.name for f in dataclasses.fields(LargeAugment)]
    assert list(spec.sources["augment"]) == fields
    assert all(load_spec(p).augment is None for p in (CIFAR100, IMAGENET))


def test_in_memory_tensors_still_train_a_cifar_row():
    """Data handed in memory (tests, benchmarks, torchrun workers) keeps working."""
    spec = load_spec(SPECS_DIR / "table4" / "all-cnn-c-augmented.toml")
    g = torch.Generator().manual_seed(0)
    data = Data(torch.randn(8, 3, 32, 32, generator=g), torch.arange(8) % 10,
                torch.randn(4, 3, 32, 32, generator=g), torch.arange(4))
    rows = row_data(spec, data, torch.device("cpu"))
    x, y = rows.feed(0)(6)
    plain, plain_y = TrainFeed(data.train_images, data.train_labels, 0)(6)
    assert x.shape == (6, 3, 32, 32) and torch.equal(y, plain_y) and y.dtype == torch.float32
    assert not torch.equal(x, plain)   # flipped and shifted


def test_an_imagenet_run_resumes_with_the_same_batches(tmp_path, data_root):
    """The ImageNet feed's order, position and generator go into the loop's checkpoint: a run
    stopped after its first evaluation and resumed ends with the weights of one trained
    straight through."""
    from harness.train import RunOptions, train
    spec = load_spec(IMAGENET)
    opts = RunOptions(lr=0.001, epochs=3 / 32, eval_every=1 / 32, batch_size=1, eval_limit=2,
                      data_dir=str(data_root), device="cpu", progress=False, checkpoint_every=1)
    straight = train(spec, opts, tmp_path / "straight")
    assert straight["iterations"] == 3 and "top5_error" in straight
    stopped = train(spec, dataclasses.replace(opts, time_limit=0), tmp_path / "resumed")
    assert stopped["finished"] is False and stopped["iter"] == 1
    resumed = train(spec, dataclasses.replace(opts, resume=True), tmp_path / "resumed")
    assert resumed["test_loss"] == straight["test_loss"]
    assert_same_weights(tmp_path / "straight" / "checkpoint_iter_3.caffemodel",
                        tmp_path / "resumed" / "checkpoint_iter_3.caffemodel")
