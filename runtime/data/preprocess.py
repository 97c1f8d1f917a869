"""The paper's preprocessing: pylearn2's make_cifar10_gcn_whitened (GCN, then ZCA fit on train).

pylearn2 (``expr/preprocessing.py: global_contrast_normalize`` called by ``CIFAR10(gcn=55.)``;
``datasets/preprocessing.py: ZCA`` with its default ``filter_bias=0.1``) computes, on the flat
3072-vector of each image:

- GCN: ``x -= x.mean()``; ``x /= sqrt(sqrt_bias + sum(x**2)) / scale`` (the L2 norm, not the
  std: ``use_std=False``), ``scale=55``, ``sqrt_bias=0``, divisors below ``min_divisor=1e-8``
  replaced by 1. Each image ends with norm 55 (RMS ~ 0.99 per value).
- ZCA fit: ``mean = X.mean(0)``; ``C = (X-mean).T @ (X-mean) / N + filter_bias * I`` (divides by
  N); ``eigs, V = eigh(C)``; ``P = V diag(1/sqrt(eigs)) V.T``. Apply: ``(X - mean) @ P``.

pylearn2 worked in float32; we fit and apply in float64 (on the GPU when there is one) and store
float32 results.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from runtime.data import cifar
from runtime.data.datasets import dataset_names, get_dataset
from runtime.data.stage_bar import StageBar
from runtime.errors import AllconvError
from runtime import files
from runtime.files import read_npy, read_npz, sync_folder, sync_tree

GCN_SCALE = 55.0
SQRT_BIAS = 0.0
MIN_DIVISOR = 1e-8
FILTER_BIAS = 0.1
_CACHE_FORMAT = 1
WHITENING_FILE = "whitening.npz"    # in each cache entry, beside the .npy arrays


def global_contrast_normalize(x: torch.Tensor, scale: float = GCN_SCALE,
                              sqrt_bias: float = SQRT_BIAS,
                              min_divisor: float = MIN_DIVISOR) -> torch.Tensor:
    """pylearn2's GCN of each row of x (N, D), use_std=False; returns a new tensor."""
    x = x - x.mean(dim=1, keepdim=True)
    norm = torch.sqrt(sqrt_bias + (x * x).sum(dim=1, keepdim=True)) / scale
    return x.div_(torch.where(norm < min_divisor, torch.ones_like(norm), norm))


def fit_zca(x: torch.Tensor, filter_bias: float = FILTER_BIAS) -> tuple[torch.Tensor, torch.Tensor]:
    """pylearn2's ZCA.fit on rows of x (N, D): (mean (D,), symmetric whitening matrix (D, D))."""
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / x.shape[0]
    cov += filter_bias * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    eigs, vecs = torch.linalg.eigh(cov)
    return mean, (vecs * eigs.rsqrt()) @ vecs.T


@dataclass(frozen=True)
class Whitening:
    """GCN settings plus the fitted ZCA mean and matrix (float64): everything to whiten an image."""

    mean: np.ndarray
    matrix: np.ndarray
    scale: float = GCN_SCALE
    sqrt_bias: float = SQRT_BIAS
    min_divisor: float = MIN_DIVISOR
    filter_bias: float = FILTER_BIAS

    def __call__(self, images, device=None) -> np.ndarray:
        """Whitened float32 copy of images (N, C, H, W), any numeric dtype."""
        x = _flat64(images, device)
        mean = torch.from_numpy(self.mean).to(x.device)
        matrix = torch.from_numpy(self.matrix).to(x.device)
        return _whiten(self._gcn(x), mean, matrix, tuple(images.shape))

    def _gcn(self, x: torch.Tensor) -> torch.Tensor:
        return global_contrast_normalize(x, self.scale, self.sqrt_bias, self.min_divisor)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, matrix=self.matrix, scale=self.scale,
                 sqrt_bias=self.sqrt_bias, min_divisor=self.min_divisor,
                 filter_bias=self.filter_bias)

    @classmethod
    def load(cls, path: Path) -> Whitening:
        f = read_npz(path, ("mean", "matrix", "scale", "sqrt_bias", "min_divisor",
                            "filter_bias"), "a whitening (allconv-prep-cifar writes it)")
        return cls(f["mean"], f["matrix"], float(f["scale"]), float(f["sqrt_bias"]),
                   float(f["min_divisor"]), float(f["filter_bias"]))


# What prepared_cifar does, in order; its ``stage`` callback is called with each as it starts.
STAGES = ("md5 sums of the files", "reading the release", "global contrast normalisation",
          "fitting ZCA", "whitening", "writing the cache", "loading the cache")


def quiet(stage: str) -> None:
    """A ``stage`` callback that reports nothing (gcn_zca's default)."""


def gcn_zca(train_images, test_images, scale: float = GCN_SCALE,
            filter_bias: float = FILTER_BIAS, device=None, stage=quiet
            ) -> tuple[np.ndarray, np.ndarray, Whitening]:
    """GCN both sets, fit ZCA on train, whiten both: (train float32, test float32, Whitening)."""
    stage("global contrast normalisation")
    x = global_contrast_normalize(_flat64(train_images, device), scale)
    stage("fitting ZCA")
    mean, matrix = fit_zca(x, filter_bias)
    whitening = Whitening(mean.cpu().numpy(), matrix.cpu().numpy(), scale=scale,
                          filter_bias=filter_bias)
    stage("whitening")
    train = _whiten(x, mean, matrix, tuple(train_images.shape))
    del x
    return train, whitening(test_images, device), whitening


class Prepared(NamedTuple):
    """A whitened dataset: float32 images (N, 3, 32, 32), int64 labels, and the Whitening."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    whitening: Whitening


def whitened_dataset(name: str):
    """The registry entry ``name``, which must be one the paper's GCN+ZCA whitens."""
    dataset = get_dataset(name)
    if not dataset.whitening:
        raise AllconvError(f"{name} has no GCN+ZCA whitening; the whitened datasets: "
                           f"{', '.join(dataset_names(whitening=True))}")
    return dataset


def prepared_root(cache_dir=None) -> Path:
    """The folder of the cache entries: ``cache_dir``, or ``<XDG cache>/allconv/prepared``."""
    return Path(cache_dir or files.cache_dir() / "prepared")


def prepared_entry(name: str, data_dir=None, cache_dir=None, verify: bool = True) -> Path:
    """The cache folder of the whitened dataset (which ``prepared_cifar`` fills): its name
    hashes the input files' md5s and the settings, so it identifies the whitening."""
    dataset = whitened_dataset(name)
    found = {split: dataset.find(split, data_dir) for split in dataset.splits}
    md5s = [[split, p.name, cifar.checked_md5(r, p) if verify else cifar.file_md5(p)]
            for split, (r, paths) in found.items() for p in paths]
    settings = dict(format=_CACHE_FORMAT, name=name, files=md5s, scale=GCN_SCALE,
                    sqrt_bias=SQRT_BIAS, min_divisor=MIN_DIVISOR, filter_bias=FILTER_BIAS)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    return prepared_root(cache_dir) / f"{name}-{key}"


def prepared_cifar(name: str, data_dir=None, cache_dir=None, device=None,
                   verify: bool = True, stage=None) -> Prepared:
    """GCN+ZCA-whitened CIFAR, cached as a folder of .npy files under ``cache_dir``
    (default ``<XDG cache>/allconv/prepared``). ``data_dir`` and ``verify`` as in
    ``Dataset.load``;
    ``stage(name)`` is called as each of ``STAGES`` starts (a cache hit skips some); by
    default a ``StageBar`` on a terminal shows them (the whitening takes a minute or more).

    The cache key hashes the input files' md5s and the settings (not the device the fit ran on);
    entries are written atomically.
    """
    if stage is None:
        with StageBar(STAGES) as bar:
            return prepared_cifar(name, data_dir, cache_dir, device, verify, bar)
    stage("md5 sums of the files")     # the cache key's; checked against the release's (verify)
    entry = prepared_entry(name, data_dir, cache_dir, verify)
    if not entry.is_dir():
        dataset = get_dataset(name)
        stage("reading the release")
        train_images, train_labels, test_images, test_labels = (
            array for split in dataset.splits
            for array in cifar.read_release(*dataset.find(split, data_dir)))
        train, test, whitening = gcn_zca(train_images, test_images, device=device, stage=stage)
        stage("writing the cache")
        _write_entry(entry, dict(train_images=train, train_labels=train_labels,
                                 test_images=test, test_labels=test_labels), whitening)
    stage("loading the cache")
    arrays = {k: _cached(entry, lambda: read_npy(entry / f"{k}.npy", _WHAT))
              for k in Prepared._fields[:4]}
    return Prepared(**arrays, whitening=entry_whitening(entry))


def prepared_images(entry: Path, split: str) -> np.ndarray:
    """The whitened float32 images (N, 3, 32, 32) of ``split`` ('train' or 'test') in the
    cache entry ``entry`` (a folder ``prepared_cifar`` filled), memory-mapped."""
    return _cached(entry, lambda: read_npy(Path(entry) / f"{split}_images.npy", _WHAT,
                                           mmap=True))


def prepared_folder(name: str, data_dir=None, cache_dir=None, device=None,
                    verify: bool = True) -> Path:
    """The cache entry of ``prepared_cifar`` (made first when absent)."""
    entry = prepared_entry(name, data_dir, cache_dir, verify)
    if not entry.is_dir():
        prepared_cifar(name, data_dir, cache_dir, device, verify)
    return entry


def prepared_whitening(name: str, data_dir=None, cache_dir=None, device=None,
                       verify: bool = True) -> Whitening:
    """The Whitening of ``prepared_cifar``, from its cache entry (made first when absent)."""
    return entry_whitening(prepared_folder(name, data_dir, cache_dir, device, verify))


def entry_whitening(entry: Path) -> Whitening:
    """The Whitening kept in the cache entry ``entry``."""
    return _cached(entry, lambda: Whitening.load(Path(entry) / WHITENING_FILE))


_WHAT = "an array of the whitened CIFAR (allconv-prep-cifar writes it)"


def _cached(entry: Path, read):
    """``read()`` of a file of the cache entry ``entry``; its error says how to make the
    entry again (a damaged entry is not rebuilt by itself: its name is the key of the files
    it came from)."""
    try:
        return read()
    except AllconvError as err:
        raise AllconvError(f"{err}; delete the cache entry {entry} to make it again from the "
                           "CIFAR files") from None


def is_entry(entry: Path) -> bool:
    """Whether ``entry`` is a cache entry that `prepared_cifar` finished (entries are written
    atomically, whitening included)."""
    return (Path(entry) / WHITENING_FILE).is_file()


def _write_entry(entry: Path, arrays: dict[str, np.ndarray], whitening: Whitening) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    try:
        for key, array in arrays.items():
            np.save(tmp / f"{key}.npy", array)
        whitening.save(tmp / WHITENING_FILE)
        sync_tree(tmp)
        os.rename(tmp, entry)
        sync_folder(entry.parent)
    except OSError:
        if not entry.is_dir():   # not a concurrent writer that got there first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _flat64(images, device) -> torch.Tensor:
    x = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    return x.reshape(len(x), -1).to(device=device or _default_device(), dtype=torch.float64)


def _whiten(x: torch.Tensor, mean: torch.Tensor, matrix: torch.Tensor, shape) -> np.ndarray:
    return ((x - mean) @ matrix).to(torch.float32).cpu().numpy().reshape(shape)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
