"""JPEG decoding and Caffe's ImageNet resize, batched, on the device that will train.

Decoding uses ``torchvision.io.decode_jpeg`` where torchvision imports, on the GPU (nvJPEG, a
whole batch per call) when the target device is CUDA; otherwise Pillow (one image per thread,
libjpeg-turbo with the GIL released). torchvision is optional: the PyPI wheels are CUDA builds
that do not load beside torch's CPU build (see README, "ImageNet"), so a CPU-only install
decodes with Pillow.

Images come out as Caffe sees them: uint8, channels in BGR order (OpenCV's, so the generated
net's ``mean_value: 104 117 123`` are B, G, R), resized by bilinear interpolation without
antialiasing (OpenCV's INTER_LINEAR, which convert_imageset uses) to 256 x 256 ignoring the aspect
ratio, as examples/imagenet/create_imagenet.sh does ("square"), or with the short side to 256 and
the centre 256 x 256 kept ("short-side", the other common recipe; not Caffe's).
"""
from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.files import read_bytes

RESIZE_MODES = ("square", "short-side")


@lru_cache(maxsize=1)
def torchvision_io():
    """``torchvision.io``, or None when torchvision is absent or does not load beside this torch
    (the reason is warned once)."""
    try:
        import torchvision.io
    except ImportError:
        return None
    except RuntimeError as err:   # e.g. a CUDA build beside torch's CPU build
        warnings.warn(f"torchvision does not load ({str(err).splitlines()[0]}); decoding JPEGs "
                      "with Pillow", stacklevel=2)
        return None
    return torchvision.io


def decoder_name(device: torch.device | str = "cpu") -> str:
    """Which decoder ``decode`` uses for ``device``: 'nvjpeg', 'torchvision' or 'pillow'."""
    if torchvision_io() is None:
        return "pillow"
    return "nvjpeg" if torch.device(device).type == "cuda" else "torchvision"


@contextmanager
def pillow_image(file, path):
    """Pillow's image of ``file`` (``path``, or a stream of its bytes), open for the ``with``
    body; a missing file, one Pillow cannot decode (in the body too) or one past its
    decompression limit is an AllconvError naming ``path``."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(file) as image:
            yield image
    except UnidentifiedImageError:
        raise AllconvError(f"{path}: could not load the image: not an image format Pillow "
                           "knows") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise AllconvError(f"{path}: could not load the image: "
                           f"{getattr(err, 'strerror', None) or err}") from None
    except ValueError as err:  # a NUL byte in the path, or a file Pillow trips on
        if isinstance(file, (str, Path)) and "\0" in str(file):
            raise AllconvError(f"{str(path)!r}: not a usable path: {err}") from None
        raise AllconvError(f"{path}: could not load the image: {err}") from None


def rgb_8bit(image, path, reader: str) -> np.ndarray:
    """Pillow's ``image`` as (H, W, 3) uint8 RGB; one of 16 or 32 bits a value, which Pillow's
    conversion would clip to 8 bits, is an AllconvError naming ``path`` (``reader``: what
    reads 8-bit images only)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        raise AllconvError(f"{path}: an image of mode {image.mode} (16 or 32 bits a value); "
                           f"{reader} reads 8-bit images")
    return np.asarray(image.convert("RGB"))


def _pillow(data: bytes, path: Path) -> torch.Tensor:
    with pillow_image(io.BytesIO(data), path) as image:
        rgb = rgb_8bit(image, path, "the ImageNet loader")
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _torchvision_one(data: bytes, path: Path) -> torch.Tensor:
    """torchvision's CPU decoder; files it refuses go to Pillow (ILSVRC-2012 has a PNG and some
    CMYK JPEGs among its .JPEG files), which names the path if it cannot read them either."""
    tvio = torchvision_io()
    try:
        return tvio.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                mode=tvio.ImageReadMode.RGB)
    except RuntimeError:
        return _pillow(data, path)


def read_files(paths: list[Path], pool: ThreadPoolExecutor) -> list[bytes]:
    """The bytes of each file, read by the pool's threads; a missing file names its path."""
    return list(pool.map(lambda path: read_bytes(path, "JPEG"), paths))


def decode(blobs: list[bytes], paths: list[Path], device: torch.device | str,
           pool: ThreadPoolExecutor) -> list[torch.Tensor]:
    """RGB uint8 images (3, H, W) on ``device``, one per JPEG in ``blobs``."""
    name = decoder_name(device)
    if name == "nvjpeg":
        tvio = torchvision_io()
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return tvio.decode_jpeg(tensors, mode=tvio.ImageReadMode.RGB, device=device)
        except RuntimeError:   # one bad file spoils the batch call: find it image by image
            return [_torchvision_one(b, p).to(device) for b, p in zip(blobs, paths)]
    one = _torchvision_one if name == "torchvision" else _pillow
    return [image.to(device) for image in pool.map(one, blobs, paths)]


def interpolate(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A uint8 image (C, H, W) resized to (C, height, width) as OpenCV's ``resize`` with
    INTER_LINEAR resizes uint8 (bit for bit: checked against OpenCV 4.6 on over a thousand
    size pairs of 1, 3 and 4 channels, and in real Caffe's ImageData and WindowData):
    half-pixel centres, 11-bit weights, a row pass in 32-bit integers, then a column pass in
    16-bit steps, as its vector code computes."""
    _, h, w = image.shape
    if min(h, w, height, width) <= 0:
        raise AllconvError(f"cannot resize a {h}x{w} image to {height}x{width}: OpenCV "
                           "resizes between sizes of at least 1 pixel")
    if (h, w) == (height, width):
        return image
    x0, x1, a0, a1 = _linear_taps(width, w, True, image.device)
    y0, y1, b0, b1 = _linear_taps(height, h, False, image.device)

    def across(rows: torch.Tensor) -> torch.Tensor:         # the row pass, in 32 bits
        rows = rows.to(torch.int32)
        return (rows.index_select(2, x0) * a0 + rows.index_select(2, x1) * a1) >> 4
    if 2 * height < h:          # shrinking: only the rows read, each output row's two
        top, bottom = across(image.index_select(1, y0)), across(image.index_select(1, y1))
    else:
        rows = across(image)
        top, bottom = rows.index_select(1, y0), rows.index_select(1, y1)
    out = (top.mul_(b0[:, None]) >> 16) + (bottom.mul_(b1[:, None]) >> 16)
    return ((out + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def _linear_taps(size: int, source: int, clamp: bool, device):
    """OpenCV's INTER_LINEAR taps of each output pixel, computed on ``device``: its two
    source pixels and their weights over 2048, each the float32 weight rounded to even.
    Along x a tap left or right of the image is clamped to its edge pixel with weight 2048;
    along y the taps are the rows nearest inside and the weights stay as computed."""
    scale = 1.0 / (size / source)
    at = ((torch.arange(size, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).float()
    first = at.floor()
    fraction = at - first
    first = first.long()
    if clamp:
        edge = (first < 0) | (first >= source - 1)
        fraction = fraction.masked_fill(edge, 0)
        first = first.clamp(0, source - 1)
    weights = [(f * 2048).round().int() for f in (1 - fraction, fraction)]
    taps = [(first + k).clamp(0, source - 1) for k in (0, 1)]
    return (*taps, *weights)


def resize(image: torch.Tensor, size: int = 256, mode: str = "square") -> torch.Tensor:
    """An RGB uint8 image (3, H, W) as Caffe's BGR uint8 (3, size, size), resized by ``mode``."""
    if mode not in RESIZE_MODES:
        raise AllconvError(f"unknown resize mode {mode!r}; valid modes: {', '.join(RESIZE_MODES)}")
    h, w = image.shape[1:]
    if mode == "square":
        target = (size, size)
    else:
        scale = size / min(h, w)
        target = (max(size, round(h * scale)), max(size, round(w * scale)))
    x = interpolate(image, *target)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    x = x[:, top:top + size, left:left + size]
    return x.flip(0).contiguous()
