"""Data sources for the Caffe ``Data`` layer: read in order, wrapping around, never reshuffled."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from runtime.data import cifar
from runtime.data.datasets import CIFAR_RELEASE, DATASETS
from runtime.data.datum import DatumFeed
from runtime.data.leveldb_file import LevelDbFile
from runtime.data.lmdb_file import LmdbFile
from runtime.errors import AllconvError
from runtime.files import atomic_writer, missing, read_npz
from runtime.proto import pb

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


def open_source(source: str, phase: int, backend: int | None = None, transform=None):
    """Open a Data layer's ``source``: a ``.npz`` from save_npz_source, a folder holding a
    CIFAR release's files (TRAIN phase reads its train split, TEST its test split; raw pixel
    values 0-255 as floats, the layout of Caffe's convert_cifar_data), or an LMDB or LevelDB
    of Caffe Datum records (`runtime.data.datum`; ``backend`` is data_param's, checked as
    Caffe opens the database; ``transform``, the layer's transform_param, says how an encoded record
    decodes and whether a crop lets records differ in size). The files are read as they are,
    official or a subset made by hand in their format, as Caffe's Data layer reads any
    database: nothing here is whitened or cached by their md5s.
    """
    if phase not in PHASE_SPLITS:
        raise AllconvError(f"data source {source}: unknown phase {phase} (0=TRAIN, 1=TEST)")
    path = Path(source)
    if is_npz_source(path) and path.is_file():
        data, labels = read_npz_source(path)
        return Source(torch.from_numpy(data), torch.from_numpy(labels))
    database = _caffe_database(path)
    if database:
        return _open_database(path, database, backend, transform)
    if path.is_dir():
        return _open_cifar(path, PHASE_SPLITS[phase])
    if not path.exists():
        hint = ("; allconv-prep-cifar --lmdb writes it" if path.name.endswith("_gcn_zca_train_lmdb")
                or path.name.endswith("_gcn_zca_test_lmdb") else
                "; allconv-prep-cifar writes it" if "_gcn_zca_" in path.name else
                f"; {NO_LARGE_FILE}" if re.fullmatch(r"cifar10_large_(train|test)\.npz",
                                                     path.name) else "")
        raise AllconvError(f"data source {source}: {missing(path)}{hint}")
    if path.name == "data.mdb":
        raise AllconvError(f"data source {source}: name the LMDB's folder, {path.parent}, "
                           "as Caffe does")
    raise AllconvError(f"data source {source} is neither a .npz file, an LMDB folder nor a "
                       "folder holding an official CIFAR release")


NO_LARGE_FILE = ("no command writes Large All-CNN's data: `replicate large-all-cnn` trains it "
                 "on CIFAR-10 with its augmentation drawn per batch (README, Data pipelines); "
                 "give --train-source and --test-source a .npz of N×3×126×126 images "
                 "(runtime.data.source.save_npz_source), or the data itself")


# data_param.backend: (its name in a sentence, its reader)
DATABASES = {"LMDB": ("an LMDB", LmdbFile), "LEVELDB": ("a LevelDB", LevelDbFile)}


def _caffe_database(path: Path) -> str | None:
    """Which Caffe database backend the folder ``path`` holds, if any."""
    if (path / "data.mdb").is_file():
        return "LMDB"
    if (path / "CURRENT").is_file() and any(path.glob("MANIFEST-*")):
        return "LEVELDB"
    return None


def _open_database(path: Path, found: str, backend: int | None, transform):
    """A DatumFeed over the LMDB or LevelDB at ``path`` (``found``: its backend); a
    ``backend`` of the other kind is refused, as Caffe fails to open the database."""
    given = None if backend is None else pb.DataParameter.DB.Name(backend)
    if given not in (None, found):
        default = " (Caffe's default)" if given == "LEVELDB" else ""
        raise AllconvError(f"data source {path} is {DATABASES[found][0]} database, but "
                           f"data_param.backend is {given}{default}: set backend: {found}")
    db = DATABASES[found][1](path)
    if transform is None:
        return DatumFeed(db, path)
    return DatumFeed(db, path, transform.force_color, transform.force_gray,
                     cropped=bool(transform.crop_size))


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
    if len(found) > 1:
        raise AllconvError(f"data source {path} holds {' and '.join(d.title for d in found)}: "
                           "point it at one release's folder (e.g. cifar-10-batches-bin)")
    if not found:
        for dataset in DATASETS.values():
            if dataset.layout == CIFAR_RELEASE and cifar.holds_part(dataset.releases, split,
                                                                    path):
                dataset.find(split, path)   # part of a release: it names what is lacking
        # (a LevelDB that Caffe failed to open leaves its folder and LOCK)
        raise AllconvError(f"data source {path} is a folder holding no database (an LMDB's "
                           "data.mdb, a LevelDB's CURRENT and MANIFEST) and no CIFAR "
                           f"{split} files (a release's folder, e.g. cifar-10-batches-bin)")
    images, labels = found[0].load(split, path, verify=False)
    return Source(torch.from_numpy(images), torch.from_numpy(labels))
