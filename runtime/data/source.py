"""Data sources for the Caffe ``Data`` layer: read in order, wrapping around, never reshuffled."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from runtime.data import cifar
from runtime.data.datasets import CIFAR_RELEASE, DATASETS
from runtime.errors import AllconvError
from runtime.files import atomic_writer, missing, read_npz

PHASE_SPLITS = {0: "train", 1: "test"}   # Caffe's Phase: TRAIN, TEST


class Source:
    """An in-memory dataset served in fixed order like Caffe's Data layer reading a DB.

    A batch that runs past the end continues from the first sample.
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor):
        self._data, self._labels, self._cursor = data, labels, 0
        self.sample_shape = tuple(data.shape[1:])
        self.num_samples = len(data)

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: data float32 (B, *sample_shape) and labels float32 (B,)."""
        index = (self._cursor + torch.arange(batch_size)) % self.num_samples
        self._cursor = (self._cursor + batch_size) % self.num_samples
        return self._data[index].float(), self._labels[index].float()

    def state_dict(self) -> dict:
        """The read position, saved in snapshots so a resumed run reads the same batches."""
        return {"cursor": self._cursor}

    def load_state_dict(self, state: dict) -> None:
        self._cursor = int(state["cursor"])


def open_source(source: str, phase: int) -> Source:
    """Open a Data layer's ``source``: a ``.npz`` from save_npz_source, or a folder holding a
    CIFAR release's files (TRAIN phase reads its train split, TEST its test split; raw pixel
    values 0-255 as floats, the layout of Caffe's convert_cifar_data). The files are read as
    they are, official or a subset made by hand in their format, as Caffe's Data layer reads
    any database: nothing here is whitened or cached by their md5s.
    """
    if phase not in PHASE_SPLITS:
        raise AllconvError(f"data source {source}: unknown phase {phase} (0=TRAIN, 1=TEST)")
    path = Path(source)
    if is_npz_source(path) and path.is_file():
        data, labels = read_npz_source(path)
        return Source(torch.from_numpy(data), torch.from_numpy(labels))
    database = _caffe_database(path)
    if database:
        raise AllconvError(f"data source {source} is {database}; {NO_DATABASES}")
    if path.is_dir():
        return _open_cifar(path, PHASE_SPLITS[phase])
    if not path.exists():
        hint = ("; allconv-prep-cifar writes it" if "_gcn_zca_" in path.name else
                f"; {NO_LARGE_FILE}" if re.fullmatch(r"cifar10_large_(train|test)\.npz",
                                                     path.name) else
                f"; {NO_DATABASES}" if re.search(r"lmdb|leveldb", path.name, re.I) else "")
        raise AllconvError(f"data source {source}: {missing(path)}{hint}")
    raise AllconvError(f"data source {source} is neither a .npz file nor a folder "
                       "holding an official CIFAR release")


NO_DATABASES = ("the runtime reads no LMDB or LevelDB: give a .npz of data and labels "
                "(allconv-prep-cifar writes CIFAR's, runtime.data.source.save_npz_source "
                "any), a folder of an official CIFAR release, or the data itself "
                "(net.forward(data=...)); replicate imagenet trains from an ImageFolder tree")


NO_LARGE_FILE = ("no command writes Large All-CNN's data: `replicate large-all-cnn` trains it "
                 "on CIFAR-10 with its augmentation drawn per batch (README, Data pipelines); "
                 "give --train-source and --test-source a .npz of N×3×126×126 images "
                 "(runtime.data.source.save_npz_source), or the data itself")


def _caffe_database(path: Path) -> str | None:
    """What Caffe database the folder ``path`` holds (convert_imageset's output), if any."""
    if (path / "data.mdb").is_file():
        return "an LMDB database"
    if (path / "CURRENT").is_file() and any(path.glob("MANIFEST-*")):
        return "a LevelDB database"
    return None


def is_npz_source(source) -> bool:
    """Whether ``source`` (a Data layer's source, a --data value) names a .npz source file."""
    return source is not None and Path(source).suffix == ".npz"


def save_npz_source(path, data, labels) -> None:
    """Write a .npz source: float32 ``data`` (N, C, H, W) and int64 ``labels`` (N,), atomically."""
    data, labels = np.asarray(data, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    if data.ndim != 4 or labels.shape != (len(data),):
        raise ValueError(f"need data (N, C, H, W) and labels (N,), "
                         f"got {data.shape} and {labels.shape}")
    with atomic_writer(path) as f:
        np.savez(f, data=data, labels=labels)


def read_npz_source(path, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A .npz source's float32 data (N, C, H, W), N > 0, and its labels (N,), or None without
    ``labels`` (then the file needs none); anything else is an AllconvError naming the path."""
    keys = ("data", "labels") if labels else ("data",)
    arrays = read_npz(path, keys, "a save_npz_source file (data source)")
    data = arrays["data"]
    if data.ndim != 4 or len(data) == 0:
        raise AllconvError(f"data source {path}: need data (N, C, H, W) with N > 0, "
                           f"got {data.shape}")
    if labels and arrays["labels"].shape != (len(data),):
        raise AllconvError(f"data source {path}: need labels (N,) for its {len(data)} images, "
                           f"got {arrays['labels'].shape}")
    return data.astype(np.float32), arrays.get("labels")


def _open_cifar(path: Path, split: str) -> Source:
    found = [d for d in DATASETS.values() if d.layout == CIFAR_RELEASE
             and cifar.search_release(d.releases, split, path) is not None]
    if len(found) != 1:
        what = " and ".join(d.title for d in found) if found else f"no CIFAR {split} files"
        raise AllconvError(f"data source {path} holds {what}: point it at one release's folder "
                           "(e.g. cifar-10-batches-bin)")
    images, labels = found[0].load(split, path, verify=False)
    return Source(torch.from_numpy(images), torch.from_numpy(labels))
