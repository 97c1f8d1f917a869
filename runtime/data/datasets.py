"""The registry of datasets: one `Dataset` entry per dataset with everything that defines it
(class count and names, splits, where its files come from and how they are read, whether the
paper's GCN+ZCA whitens it), as generator/variants.py's `Variant` is for nets. Specs, run
folders and every command line name a dataset by its entry's ``name`` and look it up here;
nothing else tests a dataset's name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.data import cifar, imagenet
from runtime.errors import AllconvError
from runtime.registry import add_once

CIFAR_RELEASE = "a CIFAR release"
IMAGE_FOLDER = "an ImageFolder tree"


@dataclass(frozen=True)
class Dataset:
    """One dataset. ``splits`` are its (training, test) splits as its files name them;
    ``class_names`` are in label order, or None where the data names them (an ImageFolder's
    sorted wnids); ``releases`` are its official CIFAR archives (binary first), none for an
    ImageFolder tree; ``whitening``: the paper's GCN+ZCA, fitted on the training split
    (runtime/data/preprocess.py), is how it feeds the CIFAR nets; ``topk``: the top-k errors
    its runs report (top-1 is the test error); ``colours``: the order of the colour channels
    its nets take (ImageNet's: Caffe's BGR)."""

    name: str
    title: str
    num_classes: int
    splits: tuple[str, str]
    class_names: tuple[str, ...] | None = None
    releases: tuple[cifar.Release, ...] = ()
    whitening: bool = False
    topk: tuple[int, ...] = (1,)
    colours: str = "RGB"

    @property
    def layout(self) -> str:
        """How its files lie: ``CIFAR_RELEASE`` (read into arrays, downloaded when absent) or
        ``IMAGE_FOLDER`` (``<split>/<class>/*.JPEG``, never downloaded)."""
        return CIFAR_RELEASE if self.releases else IMAGE_FOLDER

    def find(self, split: str, data_dir: str | os.PathLike | None = None):
        """A CIFAR split's release and files in ``data_dir`` (None: the cache, downloaded into
        when absent)."""
        return cifar.find_release(self._releases(), split, data_dir)

    def load(self, split: str, data_dir: str | os.PathLike | None = None,
             verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """A CIFAR split's uint8 images (N, 3, 32, 32) and int64 labels, in file order."""
        return cifar.load(self._releases(), split, data_dir, verify)

    def check_files(self, data_dir: str | os.PathLike | None, who: str) -> None:
        """``who`` (a row) can read this dataset from ``data_dir``: a CIFAR release's split files
        lie there (None: the cache, or a download); an ImageFolder tree, which is never
        downloaded, needs ``data_dir`` holding both split folders."""
        if self.releases:
            if data_dir is not None:
                for split in self.splits:
                    try:
                        self.find(split, data_dir)
                    except AllconvError as err:
                        raise AllconvError(f"{who}: {err}") from None
            return
        want = " and ".join(f"{split}/<wnid>/*.JPEG" for split in self.splits)
        if data_dir is None:
            raise AllconvError(f"{who} needs --data DIR: an ImageFolder tree with {want} "
                               f"({self.title} is not downloaded)")
        for split in self.splits:
            if not (Path(data_dir) / split).is_dir():
                raise AllconvError(f"{who}: {Path(data_dir) / split}: no such folder (--data "
                                   f"must hold {want})")

    def _releases(self) -> tuple[cifar.Release, ...]:
        if not self.releases:
            raise AllconvError(f"{self.name} is {self.layout}, not {CIFAR_RELEASE}")
        return self.releases


DATASETS: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to the registry; a second entry of the same name is refused."""
    return add_once(DATASETS, dataset.name, dataset, "dataset")


def get_dataset(name: str) -> Dataset:
    """The entry named ``name``; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise AllconvError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_names(*, whitening: bool | None = None, layout: str | None = None) -> list[str]:
    """The registered names, those with (or without) the paper's whitening or of one layout."""
    return [d.name for d in DATASETS.values()
            if (whitening is None or d.whitening == whitening)
            and (layout is None or d.layout == layout)]


register(Dataset("cifar10", "CIFAR-10", 10, cifar.SPLITS, cifar.CIFAR10_CLASSES,
                 cifar.CIFAR10_RELEASES, whitening=True))
register(Dataset("cifar100", "CIFAR-100", 100, cifar.SPLITS, cifar.CIFAR100_CLASSES,
                 cifar.CIFAR100_RELEASES, whitening=True))
register(Dataset("imagenet", "ImageNet", 1000, imagenet.SPLITS, topk=(1, 5), colours="BGR"))
