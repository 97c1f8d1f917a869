"""What a row trains and tests on: the one place the harness turns a row's dataset and
augmentation (its `Pipeline`, harness/pipelines.py) into data on the device, a training feed and
test batches.

- ``none``, ``flip-translate``: the GCN+ZCA-whitened CIFAR held on the device, `TrainFeed`
  (with flips and shifts of at most 5 px), test images as they are;
- ``large``: raw uint8 CIFAR on the device, `TrainFeed` through `large_batch` (the 126 frame,
  distorted), test images centred in the frame, unscaled, one pass;
- ``imagenet-crop-mirror``: the ImageFolder's file lists, `ImageNetFeed` (random 227 crop,
  mirror) for training, the centre 227 crop of ``val/`` for testing.

`load_data` reads what a row needs (rows with the same `data_key` share it); `row_data` gives a
run its `RowData`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import torch

from harness.feed import TrainFeed
from runtime import files
from runtime.data import cifar, prepared_cifar
from runtime.data.datasets import IMAGE_FOLDER
from runtime.data.imagenet import Folder, ImageNetFeed, scan
from runtime.data.preprocess import quiet
from runtime.errors import AllconvError

if TYPE_CHECKING:
    from harness.specs import Spec


class Data(NamedTuple):
    """A dataset held in tensors on the device (CIFAR, whitened or raw, or any given in memory)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


class ImageFolders(NamedTuple):
    """An ImageFolder tree's two splits and the per-channel mean subtracted from them."""

    train: Folder
    val: Folder
    mean: torch.Tensor


@dataclass(frozen=True)
class RowData:
    """What a run needs of its data. ``feed(seed)`` makes the training feed
    (``feed(batch, part) -> (data, labels)`` with ``state_dict``); ``test_batches(batch, limit)``
    yields the first ``limit`` test images in order as (data, labels); ``topk`` are the
    top-k errors the run reports."""

    classes: tuple[str, ...]
    train_size: int
    test_size: int
    sample_shape: tuple[int, int, int]
    feed: Callable[[int], object]
    test_batches: Callable[[int, int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    topk: tuple[int, ...] = (1,)


def check_trainable(spec: Spec, data_dir: str | None) -> None:
    """A row whose data cannot be had is an AllconvError before anything trains: CIFAR files
    named by ``data_dir`` must be there (without it they come from the cache, or are
    downloaded); an ImageFolder tree is never downloaded, so it needs ``data_dir``."""
    spec.dataset.check_files(data_dir, spec.key)


def train_size(spec: Spec, data_dir: str | None, verify: bool = True) -> int | None:
    """The training split's image count from its files' sizes, without reading them (a CIFAR
    binary release in ``data_dir`` or the cache; ``verify``: each of the official size); None
    where only reading tells (pickles, an ImageFolder tree, files not there yet)."""
    if spec.dataset.layout == IMAGE_FOLDER:
        return None
    split = spec.dataset.splits[0]
    found = cifar.search_release(spec.dataset.releases, split,
                                 Path(data_dir) if data_dir else files.cache_dir())
    if found is None or not found[0].binary:
        return None
    release, paths = found
    if verify:
        for path in paths:
            cifar.checked_size(release, path)
    return sum(cifar.record_count(release, p) for p in paths)


def data_key(spec: Spec) -> tuple[str, bool]:
    """Rows with the same key train on the same loaded data."""
    return spec.dataset.name, spec.pipeline.whitened


def load_data(spec: Spec, data_dir: str | None, verify: bool, device: torch.device,
              progress: bool = True) -> Data | ImageFolders:
    """The data ``spec`` trains on: CIFAR on ``device`` (GCN+ZCA-whitened and cached on disk by
    runtime.data, or raw uint8 for the Large pipeline), or the ImageFolder tree's file lists.
    ``progress``: the whitening's stage bar, on a terminal."""
    check_trainable(spec, data_dir)
    pipeline = spec.pipeline
    if pipeline.layout == IMAGE_FOLDER:
        return _image_folders(spec, data_dir)
    if pipeline.whitened:
        arrays = prepared_cifar(spec.dataset.name, data_dir, device=device, verify=verify,
                                stage=None if progress else quiet)[:4]
    else:
        arrays = [a for split in spec.dataset.splits
                  for a in spec.dataset.load(split, data_dir, verify)]
    return Data(*(torch.from_numpy(a).to(device) for a in arrays))


def _image_folders(spec: Spec, data_dir: str) -> ImageFolders:
    """Both splits of the tree; it must have the row's class count. The mean is the variant's
    per-channel ``mean_value`` (BGR), as the generated prototxt's transform_param has it."""
    train_split, test_split = spec.dataset.splits
    train = scan(data_dir, train_split)
    if len(train.classes) != spec.num_classes:
        raise AllconvError(f"{train.root} has {len(train.classes)} class folders; {spec.key} "
                           f"trains {spec.num_classes} classes")
    mean = torch.tensor(spec.variant.transform.mean_values, dtype=torch.float32)
    return ImageFolders(train, scan(data_dir, test_split, train.classes), mean)


def row_data(spec: Spec, data: Data | ImageFolders, device: torch.device) -> RowData:
    """The run's view of ``data`` through the row's augmentation."""
    if isinstance(data, ImageFolders):
        return _folder_rows(data, spec.dataset.topk, device)
    pipeline = spec.pipeline
    train, test = pipeline.transforms(spec.augment)
    size = pipeline.input_size
    shape = (3, size, size) if pipeline.frames else tuple(data.train_images.shape[1:])
    return _tensor_rows(data, spec.dataset, train, test, shape)


def _tensor_rows(data: Data, dataset, transform, test_transform, sample_shape) -> RowData:
    def test_batches(batch: int, limit: int):
        for start in range(0, limit, batch):
            images = data.test_images[start:min(start + batch, limit)]
            if test_transform is not None:
                images = test_transform(images, None, len(images), slice(0, len(images)))
            yield images, data.test_labels[start:start + len(images)]

    return RowData(dataset.class_names, len(data.train_images), len(data.test_images),
                   sample_shape,
                   lambda seed: TrainFeed(data.train_images, data.train_labels, seed, transform),
                   test_batches, dataset.topk)


def _folder_rows(data: ImageFolders, topk: tuple[int, ...], device: torch.device) -> RowData:
    val = ImageNetFeed(data.val, train=False, mean=data.mean, device=device)

    def test_batches(batch: int, limit: int):
        val.rewind()
        for start in range(0, limit, batch):
            yield val(min(batch, limit - start))

    return RowData(data.train.classes, len(data.train), len(data.val), val.sample_shape,
                   lambda seed: ImageNetFeed(data.train, train=True, mean=data.mean,
                                             device=device, seed=seed),
                   test_batches, topk)
