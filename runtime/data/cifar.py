"""Readers for the official CIFAR-10/100 releases (binary and python), with md5 checks and download.

Each dataset has two official releases we read (``CIFAR10_RELEASES``, ``CIFAR100_RELEASES``): the
binary one (preferred; nothing is unpickled) and the python-pickle one. A folder "holds" a
release when it, or its sub-folder named like the archive's top folder (e.g.
``cifar-10-batches-bin``), holds the split's files. The functions here take a dataset's
releases; the dataset registry (runtime/data/datasets.py) names them.

Verification (``verify=True``) compares each file with the published release: md5 where the
authors or torchvision publish one, byte size for ``cifar-100-binary`` (no md5 of its members is
published; its archive md5 is checked on download). Tests build tiny files in the official
formats and read them with ``verify=False``; the record layout is checked either way.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import numpy as np
from tqdm import tqdm

from runtime import files
from runtime.errors import AllconvError

BASE_URL = "https://www.cs.toronto.edu/~kriz/"
SPLITS = ("train", "test")
IMAGE_SHAPE = (3, 32, 32)      # C, H, W of every CIFAR image

# (md5 or None, size in bytes) of every official file. Sources: the dataset page
# (archive md5s), ../shared/data/README.md (CIFAR-10 binary members), torchvision's
# CIFAR10/CIFAR100 classes (python members), datalad's MD5E keys (sizes).
OFFICIAL = {
    "cifar-10-binary.tar.gz": ("c32a1d4ab5d03f1284b67883e8d87530", 170052171),
    "cifar-10-python.tar.gz": ("c58f30108f718f92721af3b95e74349a", 170498071),
    "cifar-100-binary.tar.gz": ("03b5dce01913d631647c71ecec9e9cb8", 168513733),
    "cifar-100-python.tar.gz": ("eb9058c3a382ffc7106e4002c42a8d85", 169001437),
    "cifar-10-batches-bin/data_batch_1.bin": ("5dd7e06a14cb22eb9f671a540d1b7c25", 30730000),
    "cifar-10-batches-bin/data_batch_2.bin": ("5ea93a67294ea407fff1d09f752e9692", 30730000),
    "cifar-10-batches-bin/data_batch_3.bin": ("942cd6a4bcdd0dd3c604fbe906cb4421", 30730000),
    "cifar-10-batches-bin/data_batch_4.bin": ("ae636b3ba5c66a11e91e8cb52e771fcb", 30730000),
    "cifar-10-batches-bin/data_batch_5.bin": ("53f37980c15c3d472c316c40844f3f0d", 30730000),
    "cifar-10-batches-bin/test_batch.bin": ("803d5f7f4d78ea53de84dbe85f74fb6d", 30730000),
    "cifar-10-batches-py/data_batch_1": ("c99cafc152244af753f735de768cd75f", 31035704),
    "cifar-10-batches-py/data_batch_2": ("d4bba439e000b95fd0a9bffe97cbabec", 31035320),
    "cifar-10-batches-py/data_batch_3": ("54ebc095f3ab1f0389bbae665268c751", 31035999),
    "cifar-10-batches-py/data_batch_4": ("634d18415352ddfa80567beed471001a", 31035696),
    "cifar-10-batches-py/data_batch_5": ("482c414d41f54cd18b22e5b47cb7c3cb", 31035623),
    "cifar-10-batches-py/test_batch": ("40351d587109b95175f43aff81a1287e", 31035526),
    "cifar-100-binary/train.bin": (None, 153700000),
    "cifar-100-binary/test.bin": (None, 30740000),
    "cifar-100-python/train": ("16019d7e3df5f24257cddd939b257f8d", 155249918),
    "cifar-100-python/test": ("f0ef6b0ae62326f3e7ffdfab6717acfc", 31049707),
}


@dataclass(frozen=True)
class Release:
    """One official archive of one dataset and the files each split reads from it. A binary
    record holds ``label_bytes`` label bytes (the label read is the last) before its pixels; a
    pickle holds the labels read under ``label_key``."""

    title: str
    dirname: str
    archive: str
    binary: bool
    files: dict[str, tuple[str, ...]]
    label_bytes: int = 1
    label_key: str = "labels"
    classes: int = 10

    @property
    def url(self) -> str:
        return BASE_URL + self.archive

    @property
    def record_bytes(self) -> int:
        """The size of one record of a binary release: its labels, then 3·32·32 pixels."""
        return self.label_bytes + math.prod(IMAGE_SHAPE)

    @property
    def archive_md5(self) -> str:
        return OFFICIAL[self.archive][0]


_C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_RELEASES = (
    Release("CIFAR-10", "cifar-10-batches-bin", "cifar-10-binary.tar.gz", True,
            {"train": tuple(f + ".bin" for f in _C10_TRAIN), "test": ("test_batch.bin",)}),
    Release("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz", False,
            {"train": _C10_TRAIN, "test": ("test_batch",)}),
)
# CIFAR-100 records hold the coarse label, then the fine one; its pickles both: we read fine.
CIFAR100_RELEASES = (
    Release("CIFAR-100", "cifar-100-binary", "cifar-100-binary.tar.gz", True,
            {"train": ("train.bin",), "test": ("test.bin",)}, label_bytes=2, classes=100),
    Release("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", False,
            {"train": ("train",), "test": ("test",)}, label_key="fine_labels", classes=100),
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp
lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree
orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum
rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train
trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def load(releases: tuple[Release, ...], split: str,
         data_dir: str | os.PathLike | None = None, verify: bool = True
         ) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one split, in file order.

    ``data_dir=None`` reads the cache folder, downloading the binary release into it if needed.
    """
    release, paths = find_release(releases, split, data_dir)
    if verify:
        for path in paths:
            checked_md5(release, path)
    return read_release(release, paths)


def find_release(releases: tuple[Release, ...], split: str,
                 data_dir: str | os.PathLike | None = None) -> tuple[Release, list[Path]]:
    """The release and file paths of one split; download into the cache when no folder is given."""
    if split not in SPLITS:
        raise AllconvError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    root = Path(data_dir) if data_dir is not None else files.cache_dir()
    found = search_release(releases, split, root)
    if found is None and data_dir is None:
        download(releases, root)
        found = search_release(releases, split, root)
    if found is None and root.is_file():
        raise AllconvError(f"{root} is a file: give the folder that holds the "
                           f"{releases[0].title} files, or the folder above it")
    special = next((path for release in releases for folder in _folders(release, root)
                    for path in (folder / f for f in release.files[split])
                    if path.exists() and not path.is_file()), None)
    if found is None and special is not None:
        kind = "a folder" if special.is_dir() else "a device or other special file"
        raise AllconvError(f"{special}: not a file but {kind}; the {releases[0].title} {split} "
                           "files must be files")
    if found is None:
        other = next((r[0].title for r in (CIFAR10_RELEASES, CIFAR100_RELEASES)
                      if r != releases and search_release(r, split, root)), None)
        holds = (f" (it holds the {other} release; for rows of both, give a folder that "
                 f"holds {CIFAR10_RELEASES[0].dirname} and {CIFAR100_RELEASES[0].dirname})"
                 if other else "")
        raise AllconvError(f"{releases[0].title} {split} files not found in {root}{holds}: "
                           + "; or ".join(_where(r, split, root) for r in releases))
    return found


def search_release(releases: tuple[Release, ...], split: str, root: Path
                   ) -> tuple[Release, list[Path]] | None:
    """The first release (binary before python) whose split files lie in root/<dirname> or
    else in root itself."""
    for release in releases:
        for folder in _folders(release, root):
            paths = [folder / f for f in release.files[split]]
            if all(p.is_file() for p in paths):
                return release, paths
    return None


def file_md5(path: Path) -> str:
    """Hex md5 of a file's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


_NOT_OFFICIAL = ("a corrupt copy: delete it and fetch it again; data made by hand: give "
                 "--no-verify")


def checked_size(release: Release, path: Path) -> None:
    """AllconvError unless ``path`` has its official file's size (read from the disk, not the
    file: a copy cut short is named before anything is counted or hashed)."""
    md5, size = OFFICIAL[f"{release.dirname}/{path.name}"]
    if path.stat().st_size != size:
        unpublished = "" if md5 else ", which publishes no md5 for it"
        raise AllconvError(f"{path} is not the official file: {path.stat().st_size} bytes, "
                           f"expected {size} (official {release.archive}{unpublished}); "
                           f"{_NOT_OFFICIAL}")


def checked_md5(release: Release, path: Path) -> str:
    """md5 of an official file; AllconvError unless it has the published size and md5."""
    checked_size(release, path)
    actual = file_md5(path)
    md5 = OFFICIAL[f"{release.dirname}/{path.name}"][0]
    if md5 is not None and actual != md5:
        raise AllconvError(f"{path} is not the official file: md5 {actual}, expected {md5} "
                           f"(official {release.archive}); {_NOT_OFFICIAL}")
    return actual


def read_release(release: Release, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated images uint8 (N, 3, 32, 32) and labels int64 of the given files."""
    reader = _read_binary if release.binary else _read_pickle
    parts = [reader(release, p) for p in paths]
    for path, (_, labels) in zip(paths, parts):
        bad = np.flatnonzero((labels < 0) | (labels >= release.classes))
        if len(bad):
            raise AllconvError(f"{path}: record {bad[0]} has label {labels[bad[0]]}, outside "
                               f"{release.title}'s {release.classes} classes")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def download(releases: tuple[Release, ...], dest: str | os.PathLike, url: str | None = None,
             md5: str | None = None) -> None:
    """Fetch a dataset's binary release archive, check its md5 and extract it into ``dest``.

    ``url``/``md5`` default to the official archive's; the archive is removed afterwards.
    """
    release = releases[0]
    url, md5, dest = url or release.url, md5 or release.archive_md5, Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = Path(tmp) / release.archive
        actual = _fetch(url, archive, release, dest)
        if actual != md5:
            raise AllconvError(f"{url} downloaded with md5 {actual}, expected {md5}; try again, "
                               f"or put the extracted {release.dirname} folder into {dest}")
        _extract(archive, Path(tmp) / "x", release, dest)


def _fetch(url: str, target: Path, release: Release, dest: Path) -> str:
    digest = hashlib.md5()
    try:
        with urlopen(url) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=release.archive) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as err:
        files = ", ".join(sorted({f for fs in release.files.values() for f in fs}))
        raise AllconvError(f"could not download {url} ({err}): fetch it yourself and extract it "
                           f"so that {dest / release.dirname} holds {files}, "
                           "or pass --data DIR naming a folder that holds them") from None
    return digest.hexdigest()


def _extract(archive: Path, scratch: Path, release: Release, dest: Path) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise AllconvError(f"this Python's tarfile cannot extract {release.archive} safely "
                           f"(needs 3.10.12, 3.11.4 or newer): extract it yourself into {dest}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(scratch, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise AllconvError(f"cannot extract {release.archive}: {err}") from None
    source = scratch / release.dirname
    if not source.is_dir():
        raise AllconvError(f"{release.archive} holds no {release.dirname} folder")
    target = dest / release.dirname
    target.mkdir(exist_ok=True)
    for item in source.iterdir():
        os.replace(item, target / item.name)


def record_count(release: Release, path: Path, size: int | None = None) -> int:
    """The records of a binary file of ``size`` bytes (default: its size on disk); a size
    that is not a whole number of them (a file cut short) is an error naming the file."""
    size = path.stat().st_size if size is None else size
    if size == 0 or size % release.record_bytes:
        raise AllconvError(f"{path} is not a {release.dirname} file: its {size} bytes are not "
                           f"a whole number of {release.record_bytes}-byte records")
    return size // release.record_bytes


def _read_binary(release: Release, path: Path) -> tuple[np.ndarray, np.ndarray]:
    label_bytes = release.label_bytes
    raw = np.fromfile(path, dtype=np.uint8)
    raw = raw.reshape(record_count(release, path, raw.size), release.record_bytes)
    labels = raw[:, label_bytes - 1].astype(np.int64)
    return raw[:, label_bytes:].reshape(-1, *IMAGE_SHAPE), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the official CIFAR pickles contain: dicts, lists, numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":   # Python 2 era name of numpy._core.multiarray
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_pickle(release: Release, path: Path) -> tuple[np.ndarray, np.ndarray]:
    key = release.label_key
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data, labels = np.asarray(entry["data"]), np.asarray(entry[key], dtype=np.int64)
    except KeyError as err:
        raise AllconvError(f"{path} is not a {release.dirname} file: it has no {err} "
                           "entry") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError,
            OverflowError, LookupError) as err:       # LookupError: a damaged encoding's name
        raise AllconvError(f"{path} is not a {release.dirname} file: {err}") from None
    except MemoryError:
        raise AllconvError(f"{path} is not a {release.dirname} file: it asks for more memory "
                           "than there is (a damaged length)") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise AllconvError(f"{path} is not a {release.dirname} file: its data is {data.dtype} "
                           f"{data.shape}, expected uint8 (N, 3072)")
    if len(labels) != len(data) or labels.ndim != 1:
        raise AllconvError(f"{path} is not a {release.dirname} file: {labels.size} {key} for "
                           f"{len(data)} images")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _folders(release: Release, root: Path) -> tuple[Path, Path]:
    """Where ``release``'s files may lie, in the order searched: its own folder in ``root``,
    then ``root`` itself."""
    return root / release.dirname, root


def _there(release: Release, split: str, folder: Path) -> list[str]:
    """The files of ``release``'s split that ``folder`` holds (regular files: CIFAR-100's are
    named train and test, as many a database's folders are)."""
    return [f for f in release.files[split] if (folder / f).is_file()]


def holds_part(releases: tuple[Release, ...], split: str, root: Path) -> bool:
    """Whether ``root`` or a release folder in it holds any file of the split."""
    return any(_there(release, split, folder) for release in releases
               for folder in _folders(release, root))


def _where(release: Release, split: str, root: Path) -> str:
    """Where the files of ``release``'s split go; a folder holding some of them is named with
    the ones it lacks."""
    for folder in _folders(release, root):
        there = _there(release, split, folder)
        if there:
            lacks = [f for f in release.files[split] if f not in there]
            return f"{folder} lacks {', '.join(lacks)} (from {release.url})"
    return (f"put {', '.join(release.files[split])} (from {release.url}) "
            f"into {root} or {root / release.dirname}")

