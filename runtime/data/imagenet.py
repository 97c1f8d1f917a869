"""ImageNet from an ImageFolder tree (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) with Caffe's
recipe (examples/imagenet, models/bvlc_reference_caffenet):

- every image resized to 256 x 256 (``runtime.data.jpeg.resize``), BGR uint8;
- the mean image of the training set subtracted (Caffe's compute_image_mean and ``mean_file``,
  cached as a ``.binaryproto``), or per-channel mean values;
- TRAIN: a random 227 x 227 crop and a mirror with probability 1/2; TEST: the centre crop.

Crop, mirror and mean run on whole batches on the device (one gather, as DataTransformer does
per image). Labels are the wnid folders' indices in sorted order, the order of Caffe's
``train.txt``/``synset_words.txt``.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime import files
from runtime.caffemodel import array_to_blob, read_blob, write_binary
from runtime.data import jpeg, transform
from runtime.data.passes import Passes
from runtime.errors import AllconvError

SPLITS = ("train", "val")
EXTENSIONS = (".jpeg", ".jpg")
CROP = 227
RESIZE = 256
MEAN_VALUES = (104, 117, 123)   # B, G, R: the generated ImageNet net's mean_value


@dataclass(frozen=True)
class Folder:
    """One split of an ImageFolder tree: file paths, labels and the class (wnid) names."""

    root: Path
    paths: tuple[Path, ...]
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def scan(root: str | os.PathLike, split: str, classes: tuple[str, ...] | None = None) -> Folder:
    """The JPEGs of ``root/split/<wnid>/``; ``classes`` (the training split's) fixes the labels."""
    if split not in SPLITS:
        raise AllconvError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    top = Path(root) / split
    if not top.is_dir():
        raise AllconvError(f"{top}: no such folder (expected {split}/<wnid>/*.JPEG under {root})")
    found = sorted(p.name for p in top.iterdir() if p.is_dir())
    classes = tuple(found) if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise AllconvError(f"{top}: class folder(s) {', '.join(unknown[:5])} are not among the "
                           f"training split's {len(classes)} classes")
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for name in found:
        files = sorted(p for p in (top / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        paths += files
        labels += [index[name]] * len(files)
    if not paths:
        raise AllconvError(f"{top}: no .JPEG files in its class folders")
    return Folder(top, tuple(paths), torch.tensor(labels), classes)


def load_batch(folder: Folder, index: torch.Tensor, device, pool: ThreadPoolExecutor,
               resize_mode: str = "square") -> torch.Tensor:
    """Images ``index`` of ``folder`` as Caffe's stored BGR uint8 (N, 3, 256, 256) on ``device``."""
    paths = [folder.paths[i] for i in index.tolist()]
    images = jpeg.decode(jpeg.read_files(paths, pool), paths, device, pool)
    return torch.stack(list(pool.map(lambda image: jpeg.resize(image, RESIZE, resize_mode),
                                     images)))


def mean_image(folder: Folder, device="cpu", batch_size: int = 256, threads: int = 8,
               resize_mode: str = "square", cache: str | os.PathLike | None = None
               ) -> torch.Tensor:
    """Caffe's compute_image_mean over the split: the float mean (3, 256, 256), BGR.

    Cached as ``<cache>/imagenet-mean-<key>.binaryproto`` (Caffe's mean_file format); the key
    hashes the file list with sizes and modification times, and the resize mode.
    """
    listing = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in folder.paths]
    key = hashlib.sha256(json.dumps([resize_mode, listing]).encode()).hexdigest()[:20]
    path = Path(cache or files.cache_dir()) / f"imagenet-mean-{key}.binaryproto"
    if path.is_file():
        cached = read_blob(path)
        if cached.shape not in ((1, 3, RESIZE, RESIZE), (3, RESIZE, RESIZE)):
            raise AllconvError(f"{path}: a mean of shape {cached.shape}, expected "
                               f"(1, 3, {RESIZE}, {RESIZE}); delete it to recompute")
        return torch.from_numpy(cached).reshape(3, RESIZE, RESIZE)
    total = torch.zeros(3, RESIZE, RESIZE, dtype=torch.float64, device=device)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(folder), batch_size):
            index = torch.arange(start, min(start + batch_size, len(folder)))
            total += load_batch(folder, index, device, pool, resize_mode).double().sum(0)
    mean = (total / len(folder)).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_binary(path, array_to_blob(mean[None].numpy()))
    return mean


def draw_crops(n: int, size: int, train: bool, generator: torch.Generator | None,
               crop: int = CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """(offsets (n, 2), flips (n,)) for ``size`` x ``size`` images: uniform offsets and fair
    flips at TRAIN, the centre and no flip at TEST (`transform.draw_crops`)."""
    return transform.draw_crops(n, (size, size), (crop, crop), train, train, generator)


def mean_tensor(mean, device="cpu") -> torch.Tensor:
    """Per-channel values (3,) as (3, 1, 1), or a mean image (3, 256, 256), float32, BGR."""
    mean = torch.as_tensor(mean, dtype=torch.float32).to(device)
    if mean.shape not in ((3,), (3, RESIZE, RESIZE)):
        raise AllconvError(f"mean must be 3 channel values or a (3, {RESIZE}, {RESIZE}) "
                           f"image, not shape {tuple(mean.shape)}")
    return mean[:, None, None] if mean.ndim == 1 else mean


def transformed(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                mean: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """DataTransformer on stored images (N, 3, 256, 256): the crops and mirrors, less the
    mean (`mean_tensor`; an image is read at each crop's place), float32."""
    out = transform.crop_mirror(images, offsets, flips, crop).float()
    return transform.less_mean(out, mean, (offsets, flips, crop))


def test_image(path: str | os.PathLike, mean=MEAN_VALUES, crop: int = CROP,
               resize_mode: str = "square") -> torch.Tensor:
    """One image file (any size) as the TEST feed gives it, float32 (3, crop, crop) on the
    CPU: decoded, resized to 256 x 256 in BGR, the centre crop less ``mean``."""
    path = Path(path)
    with ThreadPoolExecutor(1) as pool:
        (image,) = jpeg.decode(jpeg.read_files([path], pool), [path], "cpu", pool)
    offsets, flips = draw_crops(1, RESIZE, False, None, crop)
    return transformed(jpeg.resize(image, RESIZE, resize_mode)[None], offsets, flips,
                       mean_tensor(mean), crop)[0]


class ImageNetFeed:
    """Batches (float32 (N, 3, 227, 227), float labels) from one split, on ``device``.

    ``mean``: a mean image (3, 256, 256) or per-channel values (3,), BGR, subtracted at the
    crop's place (as DataTransformer subtracts ``mean_file``). TRAIN reads a fresh permutation
    each pass and crops at random; TEST reads in file order and takes the centre (``Passes``,
    kept on the CPU). ``state_dict`` holds the order, position and generator, so a restored
    feed continues with the same batches.
    """

    def __init__(self, folder: Folder, train: bool, mean: torch.Tensor, device="cpu",
                 seed: int = 0, threads: int = 8, resize_mode: str = "square"):
        self.folder, self.train, self.device = folder, train, torch.device(device)
        self.mean = mean_tensor(mean, self.device)
        self.resize_mode = resize_mode
        self.sample_shape = (3, CROP, CROP)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.pool = ThreadPoolExecutor(threads)
        self.passes = Passes(len(folder), self.generator, shuffle=train, device="cpu")

    def __call__(self, batch_size: int, part: slice | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` images, or only the positions ``part`` of them (a process's
        slice of a global batch: the crops are drawn for the whole batch, the slice decoded)."""
        index = self.passes.take(batch_size)
        offsets, flips = draw_crops(len(index), RESIZE, self.train, self.generator)
        part = part or slice(0, len(index))
        index, offsets, flips = index[part], offsets[part], flips[part]
        offsets, flips = offsets.to(self.device), flips.to(self.device)
        images = load_batch(self.folder, index, self.device, self.pool, self.resize_mode)
        data = transformed(images, offsets, flips, self.mean)
        return data, self.folder.labels[index].float().to(self.device)

    def rewind(self) -> None:
        """Start a new pass (TEST: from the first file again)."""
        self.passes.rewind()

    def state_dict(self) -> dict:
        return self.passes.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.passes.load_state_dict(state)
