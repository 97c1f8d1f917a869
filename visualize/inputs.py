"""What `visualize` reads: the net and its weights, the dataset, and the image to explain."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from harness.run_folder import RunFolder
from runtime.cli_support import resolve_device
from runtime.data import get_dataset, prepared_cifar
from runtime.data.datasets import dataset_names
from runtime.data.preprocess import prepared_whitening
from runtime.errors import AllconvError
from runtime.net import Net
from runtime.proto import pb
from runtime.reconstruction import input_blob


class Dataset(NamedTuple):
    whitened: np.ndarray          # (N, C, H, W) float32: what the net sees
    raw: np.ndarray | None        # (N, C, H, W) uint8 pixels, or None for a .npz source


class Picture(NamedTuple):
    whitened: np.ndarray          # (C, H, W) float32, the net's input
    shown: np.ndarray             # (H, W, C) in [0, 1], as the figure shows it
    caption: str


def load_net(args) -> tuple[Net, str]:
    """The TEST-phase net with weights from --prototxt/--weights or --run, on --device, and its
    dataset's registry name (--run: the run's; --prototxt: --dataset, by default the first
    whitened one)."""
    if args.run is not None:
        if args.prototxt or args.weights:
            raise AllconvError("give --run or --prototxt/--weights, not both")
        run = RunFolder.read(args.run)
        run.check_dataset(args.dataset)
        prototxt, weights, dataset = run.deploy(), run.weights(), run.dataset
    elif args.prototxt and args.weights:
        prototxt, weights = args.prototxt, args.weights
        dataset = args.dataset or dataset_names(whitening=True)[0]
    else:
        raise AllconvError("the weights: give --prototxt NET --weights W.caffemodel, or --run DIR")
    with warnings.catch_warnings():    # fillers are overwritten by the weights
        warnings.simplefilter("ignore")
        net = Net(prototxt, pb.TEST, weights=weights, seed=0)
    return net.to(resolve_device(args.device)), dataset


def load_dataset(data, dataset: str, split: str) -> Dataset:
    """A .npz Data-layer source as it is, or a CIFAR folder (None: the cache) GCN+ZCA-whitened
    as the harness trains on it, with its raw pixels."""
    if data is not None and Path(data).suffix == ".npz":
        try:
            with np.load(data) as f:
                whitened = f["data"].astype(np.float32)
        except (OSError, ValueError, KeyError) as err:
            raise AllconvError(f"{data}: not a .npz source with a 'data' array ({err})") from None
        if whitened.ndim != 4 or not len(whitened):
            raise AllconvError(f"{data}: 'data' must be (N, C, H, W), got {whitened.shape}")
        return Dataset(whitened, None)
    prepared = prepared_cifar(dataset, data)
    raw, _ = get_dataset(dataset).load(split, data)
    return Dataset(getattr(prepared, f"{split}_images"), raw)


def check_sample(net, shape, what: str) -> None:
    """An input sample (C, H, W) must fit the net's input blob."""
    blob = input_blob(net)
    want = tuple(net.blobs[blob].shape[1:])
    if tuple(shape) != want:
        raise AllconvError(f"{what} has shape {tuple(shape)}; the net's input blob {blob!r} "
                           f"takes {want} (C, H, W)")


def rescaled(array: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W, C) with its minimum at 0 and maximum at 1."""
    low, high = float(array.min()), float(array.max())
    return np.moveaxis((array - low) / (high - low if high > low else 1.0), 0, -1)


def load_picture(args, net, dataset: str) -> Picture:
    """The input from --input X.npy, --image FILE or --cifar-index I (with --data or --run)."""
    given = [o for o in ("input", "image", "cifar_index") if getattr(args, o) is not None]
    if len(given) != 1:
        raise AllconvError("give one input: --input X.npy, --image FILE or --cifar-index I")
    if args.input is not None:
        try:
            array = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise AllconvError(f"{args.input}: not a .npy array ({err})") from None
        if not isinstance(array, np.ndarray):
            raise AllconvError(f"{args.input}: not a .npy array (an .npz archive)")
        array = array.astype(np.float32)
        array = array[0] if array.ndim == 4 and len(array) == 1 else array
        check_sample(net, array.shape, f"--input {args.input}")
        return Picture(array, rescaled(array), f"{Path(args.input).name} (rescaled)")
    if args.image is not None:
        pixels = _read_image(args.image)
        check_sample(net, pixels.shape, f"--image {args.image}")
        whitening = _image_whitening(args, dataset)
        return Picture(whitening(pixels[None])[0], np.moveaxis(pixels, 0, -1) / 255.0,
                       Path(args.image).name)
    data = load_dataset(args.data, dataset, "test")
    index = args.cifar_index
    if not 0 <= index < len(data.whitened):
        raise AllconvError(f"--cifar-index {index} is out of range: the test set has "
                           f"{len(data.whitened)} images")
    check_sample(net, data.whitened.shape[1:], f"test image {index}")
    if data.raw is None:
        return Picture(data.whitened[index], rescaled(data.whitened[index]),
                       f"test image {index} (rescaled)")
    return Picture(data.whitened[index], np.moveaxis(data.raw[index], 0, -1) / 255.0,
                   f"test image {index}")


def _read_image(path) -> np.ndarray:
    """An image file as uint8 (3, H, W) RGB."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            return np.moveaxis(np.asarray(image.convert("RGB")), -1, 0)
    except UnidentifiedImageError:
        raise AllconvError(f"{path}: not an image file PIL can read") from None


def device_tensor(array: np.ndarray, net) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32, device=net.device)


def _image_whitening(args, dataset: str):
    """--image's GCN+ZCA: the one the run recorded, or the one fitted on --data's CIFAR."""
    if args.data is not None and Path(args.data).suffix == ".npz":
        raise AllconvError("--image needs the run's whitening: --data a CIFAR folder, or --run")
    if args.run is not None:
        return RunFolder.read(args.run).whitening(args.data)
    return prepared_whitening(dataset, args.data)
