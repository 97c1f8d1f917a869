"""harness/pipelines.py behaviours no other test pinned (a mutation round):
- the flip-translate feed draws a batch's shifts and flips for the whole batch, so a process's
  slice of it (`TrainFeed(...)(batch, part)`, --batch-per-process / torchrun) gets exactly the
  distortions its samples get in the unsplit batch;
- a pipeline that trains on the GCN+ZCA-whitened CIFAR does not read a CIFAR-layout dataset
  registered without whitening (`Pipeline.reads`); the raw-pixel Large pipeline does."""
import dataclasses

import torch

from harness.datasets import Data, row_data
from harness.pipelines import PIPELINES
from harness.specs import SPECS_DIR, load_spec
from runtime.data.datasets import DATASETS, get_dataset


def test_flip_translate_slices_keep_their_distortions():
    spec = load_spec(SPECS_DIR / "table4" / "all-cnn-c-augmented.toml")
    assert spec.pipeline.name == "flip-translate"
    g = torch.Generator().manual_seed(0)
    data = Data(torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % 10,
                torch.randn(4, 3, 32, 32, generator=g), torch.arange(4))
    rows = row_data(spec, data, torch.device("cpu"))
    whole, labels = rows.feed(0)(8)
    first, second = rows.feed(0), rows.feed(0)
    head, head_labels = first(8, slice(0, 4))
    tail, tail_labels = second(8, slice(4, 8))
    torch.testing.assert_close(head, whole[:4])
    torch.testing.assert_close(tail, whole[4:])
    assert torch.equal(head_labels, labels[:4]) and torch.equal(tail_labels, labels[4:])


def test_whitened_pipelines_do_not_read_an_unwhitened_cifar(monkeypatch):
    raw = dataclasses.replace(get_dataset("cifar10"), name="cifar10-raw", whitening=False)
    monkeypatch.setitem(DATASETS, raw.name, raw)
    assert raw.layout == get_dataset("cifar10").layout
    assert not PIPELINES["none"].reads(raw) and not PIPELINES["flip-translate"].reads(raw)
    assert PIPELINES["large"].reads(raw)
    assert "cifar10-raw" not in PIPELINES["none"].datasets
    assert "cifar10-raw" in PIPELINES["large"].datasets
