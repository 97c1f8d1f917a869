"""What `visualize` reads: the net and its weights, the dataset, and the image to explain, each
prepared as the net was trained: the run's GCN+ZCA for CIFAR nets, Large All-CNN's 126×126
frame (runtime/data/large_augment.py, its test input) for a CIFAR net of that input, Caffe's
ImageNet test transform (runtime/data/imagenet.py) for an ImageNet net."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from harness.net_source import NetSource
from runtime.cli_support import resolve_device
from runtime.data import cifar, imagenet
from runtime.data.datasets import CIFAR_RELEASE, IMAGE_FOLDER
from runtime.data.jpeg import pillow_image, rgb_8bit
from runtime.data.large_augment import FRAME, LargeAugment, large_batch
from runtime.data.preprocess import prepared_folder, prepared_images, prepared_whitening
from runtime.data.source import is_npz_source, read_npz_source
from runtime.errors import AllconvError
from runtime import files
from runtime.files import read_npy
from runtime.net import Net, trained_net
from runtime.reconstruction import input_blob
from visualize.figures import in_rgb


class Images(NamedTuple):
    whitened: np.ndarray          # (N, C, H, W) float32: what the net sees
    raw: np.ndarray | None        # (N, C, H, W) uint8 pixels, or None (a .npz source)


class FramedImages:
    """uint8 CIFAR pixels (N, 3, 32, 32) read as Large All-CNN's test input (N, 3, 126, 126),
    each framed when indexed: the whole training set framed at once would take 9.5 GB."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.pixels), 3, FRAME, FRAME)

    def __getitem__(self, index) -> np.ndarray:
        pixels = self.pixels[index]
        one = pixels.ndim == 3
        framed = large_batch(torch.tensor(pixels[None] if one else pixels),
                             LargeAugment.off(), None).numpy()
        return framed[0] if one else framed


class Picture(NamedTuple):
    whitened: np.ndarray          # (C, H, W) float32, the net's input
    shown: np.ndarray             # (H, W, C) in [0, 1], as the figure shows it
    caption: str


def load_net(source: NetSource, device: str | None) -> Net:
    """The TEST-phase net with the source's weights, on ``device`` (see resolve_device)."""
    return trained_net(source.prototxt, source.weights).to(resolve_device(device))


def check_finite(array: np.ndarray, what: str) -> None:
    """Non-finite input values would give a figure of NaNs: refused."""
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise AllconvError(f"{what}: {bad} of its {np.size(array)} values are not finite "
                           "(NaN or infinite)")


def load_images(args, net, source: NetSource, split: str) -> Images:
    """--data as a .npz Data-layer source (used as it is), or the source's CIFAR dataset as
    the harness trains on it: framed for Large All-CNN (its pipeline frames them), else
    GCN+ZCA-whitened: from --data DIR, else (with --run) the run's whitened copy in the cache,
    else the cache's CIFAR files (downloaded when absent)."""
    if is_npz_source(args.data):
        whitened = read_npz_source(args.data, labels=False)[0]
        check_finite(whitened, args.data)
        return Images(whitened, None)
    dataset = source.dataset
    if dataset.layout != CIFAR_RELEASE or not dataset.whitening:
        raise AllconvError(f"{dataset.name} is {dataset.layout}, which is not read here: give "
                           "--data X.npz, a Data-layer source of the net's inputs")
    if source.pipeline(net).frames:
        if source.run is not None and args.data is None and not cifar.search_release(
                dataset.releases, split, files.cache_dir()):
            raise AllconvError(f"{source.run.path}: {dataset.name}'s {split} files are not in "
                               "this machine's cache; give --data with the CIFAR release")
        return Images(FramedImages(dataset.load(split, args.data, args.verify)[0]), None)
    if source.run is not None and args.data is None:
        entry = source.run.cache_entry()
        if entry is None:
            raise AllconvError(f"{source.run.path}: the run's whitened {dataset.name} is not in "
                               "this machine's cache; give --data with the CIFAR release")
        in_cache = cifar.search_release(dataset.releases, split, files.cache_dir())
        raw = dataset.load(split)[0] if in_cache else None    # never a download here
    else:
        entry = (source.run.prepared_folder(args.data, args.verify) if source.run is not None
                 else prepared_folder(dataset.name, args.data, verify=args.verify))
        raw = dataset.load(split, args.data, args.verify)[0]
    return Images(prepared_images(entry, split), raw)


def check_sample(net, shape, what: str, hint: str = "") -> None:
    """An input sample (C, H, W) must fit the net's input blob."""
    blob = input_blob(net)
    want = tuple(net.blobs[blob].shape[1:])
    if tuple(shape) != want:
        raise AllconvError(f"{what} has shape {tuple(shape)}; the net's input blob {blob!r} "
                           f"takes {want} (C, H, W){hint}")


def rescaled(array: np.ndarray, colours: str = "RGB") -> np.ndarray:
    """(C, H, W) → (H, W, C) with its minimum at 0 and maximum at 1, RGB where it has the 3
    channels of a net whose order is ``colours``. Worked in float64, where float32's whole
    range spans without overflowing."""
    low, high = float(array.min()), float(array.max())
    scaled = ((array.astype(np.float64) - low) / (high - low if high > low else 1.0)
              ).astype(np.float32)
    return in_rgb(scaled, colours) if len(scaled) == 3 else np.moveaxis(scaled, 0, -1)


def load_picture(args, net, source: NetSource) -> Picture:
    """The input from --input X.npy, --image FILE or --cifar-index I (with --data or --run)."""
    given = [o for o in ("input", "image", "cifar_index") if getattr(args, o) is not None]
    if len(given) != 1:
        raise AllconvError("give one input: --input X.npy, --image FILE or --cifar-index I")
    if args.input is not None:
        array = read_npy(args.input, "a .npy array").astype(np.float32)
        array = array[0] if array.ndim == 4 and len(array) == 1 else array
        check_sample(net, array.shape, f"--input {args.input}")
        check_finite(array, f"--input {args.input}")
        return Picture(array, rescaled(array, source.dataset.colours),
                       f"{Path(args.input).name} (rescaled)")
    if args.image is not None:
        return _image(args, net, source)
    if source.dataset.layout != CIFAR_RELEASE:
        raise AllconvError(f"--cifar-index takes a CIFAR test image; {source.dataset.name} is "
                           f"{source.dataset.layout}: give --image FILE or --input X.npy")
    data = load_images(args, net, source, "test")
    index = args.cifar_index
    if not 0 <= index < len(data.whitened):
        raise AllconvError(f"--cifar-index {index} is out of range: the test set has "
                           f"{len(data.whitened)} images")
    check_sample(net, data.whitened.shape[1:], f"test image {index}")
    whitened = np.array(data.whitened[index])
    if data.raw is None:
        return Picture(whitened, rescaled(whitened), f"test image {index} (rescaled)")
    return Picture(whitened, np.moveaxis(data.raw[index], 0, -1) / 255.0, f"test image {index}")


def _image(args, net, source: NetSource) -> Picture:
    """--image as the net's training data was prepared: for a whitened dataset the run's
    GCN+ZCA on an image of the net's input size (another size is refused); for an ImageFolder
    dataset (ImageNet) Caffe's TEST transform of runtime/data/imagenet.py: any size, resized to
    256×256, BGR, the centre crop of the net's input size less the mean values."""
    dataset, name = source.dataset, Path(args.image).name
    if source.pipeline(net).frames:
        if args.data is not None:
            raise AllconvError("--data does nothing with --image for a Large All-CNN net (the "
                               "image is centred in its frame, not whitened)")
        pixels = _read_image(args.image)
        if pixels.shape != cifar.IMAGE_SHAPE:
            raise AllconvError(f"--image {args.image}: a Large All-CNN image is a "
                               f"{'×'.join(map(str, cifar.IMAGE_SHAPE[1:]))} CIFAR image, "
                               f"centred in its frame; this one is "
                               f"{'×'.join(map(str, pixels.shape[1:]))}")
        framed = FramedImages(pixels[None])[0]
        return Picture(framed, rescaled(framed), f"{name} (in the {FRAME}² frame, rescaled)")
    if dataset.whitening:
        shape = tuple(net.blobs[input_blob(net)].shape[1:])
        if shape != cifar.IMAGE_SHAPE:
            raise AllconvError(f"--image: the {dataset.name} whitening takes "
                               f"{'×'.join(map(str, cifar.IMAGE_SHAPE))} images, and this net's "
                               f"input is {'×'.join(map(str, shape))} (for the ImageNet net give "
                               "--dataset imagenet; any net takes --input X.npy)")
        pixels = _read_image(args.image)
        check_sample(net, pixels.shape, f"--image {args.image}",
                     " (a CIFAR net's image must have its input size; only --dataset imagenet "
                     "resizes)")
        return Picture(_whitening(args, source)(pixels[None])[0],
                       np.moveaxis(pixels, 0, -1) / 255.0, name)
    if dataset.layout != IMAGE_FOLDER:
        raise AllconvError(f"--image: no preprocessing is known for {dataset.name}")
    c, h, w = net.blobs[input_blob(net)].shape[1:]
    if c != 3 or h != w or h > imagenet.RESIZE:
        raise AllconvError(f"--image with --dataset imagenet takes a 3×S×S crop of the "
                           f"{imagenet.RESIZE}×{imagenet.RESIZE} image (S ≤ {imagenet.RESIZE}); "
                           f"the net's input is {c}×{h}×{w}")
    x = imagenet.test_image(args.image, imagenet.MEAN_VALUES, crop=h).numpy()
    bgr = x + np.asarray(imagenet.MEAN_VALUES, np.float32)[:, None, None]
    return Picture(x, in_rgb(bgr, dataset.colours) / 255.0,
                   f"{name} ({imagenet.RESIZE}², centre {h}²)")


def _read_image(path) -> np.ndarray:
    """An image file as uint8 (3, H, W) RGB."""
    with pillow_image(path, path) as image:
        return np.moveaxis(rgb_8bit(image, path, "visualize --image"), -1, 0)


def device_tensor(array: np.ndarray, net) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32, device=net.device)


def _whitening(args, source: NetSource):
    """--image's GCN+ZCA: the one the run recorded, or the one fitted on --data's CIFAR."""
    if is_npz_source(args.data):
        raise AllconvError("--image needs the run's whitening: --data a CIFAR folder, or --run")
    if source.run is not None:
        return source.run.whitening(args.data, args.verify)
    return prepared_whitening(source.dataset.name, args.data, verify=args.verify)
