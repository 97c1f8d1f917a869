"""WindowData's source (window_data_layer.cpp): R-CNN's window file, and its sampler.

The file lists images, each ``# index``, its path (under ``root_folder``), its channels,
height and width, a window count, and a line per window: ``label overlap x1 y1 x2 y2``
(pixels, both corners inside the window). A window of ``overlap >= fg_threshold`` is
foreground (its label must be positive), one of ``overlap < bg_threshold`` background
(label 0), any other is dropped. A window names its image by the index written before it,
which counts the images from 0 in the file's order, as Caffe indexes them.

Each batch draws ``batch_size - int(batch_size * fg_fraction)`` background windows and then
the foreground ones, each uniformly with replacement, and flips each with ``mirror``. A
window is cut out of its image (decoded in colour, BGR, as OpenCV's ``imread``), widened by
``context_pad`` (and to a square with ``crop_mode: "square"``) as Caffe widens it, clipped
to the image and warped to ``crop_size`` by OpenCV's bilinear resize (``jpeg.interpolate``);
the part of the widened window outside the image stays 0. Pixels become
``(x - mean) * scale``, ``scale`` being ``window_data_param.scale``.
"""
from __future__ import annotations

import io
import math
import re
import warnings
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch

from runtime.data.imread import file_bytes, read_image
from runtime.data.jpeg import interpolate
from runtime.data.transform import mean_file_image
from runtime.errors import AllconvError
from runtime.limits import INT_MAX, INT_MIN

F32 = np.float32
INTEGER = r"[+-]?\d+"


class Window(NamedTuple):
    image: int
    label: int
    x1: int
    y1: int
    x2: int
    y2: int


class WindowFile(NamedTuple):
    images: list[str]          # paths, root_folder prefixed
    channels: int              # the last image's, which gives the data top's channels
    foreground: list[Window]
    background: list[Window]


class _Tokens:
    """The file's whitespace-separated tokens, read as C++'s ``>>`` reads them, each error
    naming the file and what was expected where."""

    def __init__(self, path: str, text: str):
        self.path, self.words, self.at = path, text.split(), 0

    def more(self) -> bool:
        return self.at < len(self.words)

    def next(self, what: str) -> str:
        if not self.more():
            raise AllconvError(f"window file {self.path}: ends where {what} was expected")
        self.at += 1
        return self.words[self.at - 1]

    def integer(self, what: str) -> int:
        value = self._read(what, int, "an integer", INTEGER)
        if not INT_MIN <= value <= INT_MAX:
            raise AllconvError(f"window file {self.path}: {what} is {value}, past C's int")
        return value

    def left(self) -> int:
        return len(self.words) - self.at

    def number(self, what: str) -> np.float32:
        return self._read(what, _float32, "a number",
                          r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

    def _read(self, what: str, convert, kind: str, form: str):
        word = self.next(what)
        try:
            if re.fullmatch(form, word):
                return convert(word)
        except OverflowError:
            kind += " a float holds"
        raise AllconvError(f"window file {self.path}: {what} must be {kind}, found {word!r}")


def read_window_file(path: str, root_folder: str, fg_threshold: float,
                     bg_threshold: float) -> WindowFile:
    """The images and the foreground and background windows of a window file."""
    try:
        with open(path, errors="surrogateescape") as f:      # paths are bytes, as in Caffe
            text = f.read()
    except (OSError, ValueError) as err:                     # ValueError: a NUL in the name
        raise AllconvError(f"window file {path}: cannot read it: "
                           f"{getattr(err, 'strerror', None) or err}") from None
    tokens = _Tokens(path, text)
    images, indices, foreground, background = [], [], [], []
    channels = 0
    # Caffe's loop goes on while a mark and an index can be read (``infile >> hashtag >>
    # image_index``), and checks the mark inside
    while tokens.left() >= 2 and re.fullmatch(INTEGER, tokens.words[tokens.at + 1]):
        image = f"image {len(images)}"
        mark = tokens.next(f"'#' before {image}")
        if mark != "#":
            raise AllconvError(f"window file {path}: '#' expected before {image}, "
                               f"found {mark!r}")
        index = tokens.integer(f"the index of {image}")
        images.append(root_folder + tokens.next(f"the path of {image}"))
        channels = tokens.integer(f"the channels of {image}")
        tokens.integer(f"the height of {image}")
        tokens.integer(f"the width of {image}")
        for n in range(tokens.integer(f"the window count of {image}")):
            where = f"window {n} of {image}"
            label = tokens.integer(f"the label of {where}")
            overlap = tokens.number(f"the overlap of {where}")
            box = [tokens.integer(f"{c} of {where}") for c in ("x1", "y1", "x2", "y2")]
            indices.append(index)
            if overlap >= F32(fg_threshold):
                if int(F32(label)) <= 0 or F32(label) >= 2**31:    # Caffe keeps it as a float
                    raise AllconvError(f"window file {path}: {where} is foreground (overlap "
                                       f"{overlap:g}) with label {label}; Caffe needs a "
                                       "label above 0 (0 is the background's) and below "
                                       "2^31 as a float")
                foreground.append(Window(index, label, *box))
            elif overlap < F32(bg_threshold):
                background.append(Window(index, 0, *box))
    if not images:
        raise AllconvError(f"window file {path}: it is empty: no '# index' starts it")
    outside = sorted({i for i in indices if not 0 <= i < len(images)})
    if outside:
        raise AllconvError(f"window file {path}: image index {outside[0]} has no image (it "
                           f"lists {len(images)}, which windows name by their order from 0)")
    return WindowFile(images, channels, foreground, background)


def _float32(word: str) -> np.float32:
    """``word`` read as C++'s ``>> float`` reads it: rounded once, to the nearest float32 (a
    double first could round twice)."""
    exact = Fraction(word)
    near = F32(float(exact))
    candidates = (np.nextafter(near, F32(-np.inf)), near, np.nextafter(near, F32(np.inf)))
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact),
                                          int(np.frombuffer(c.tobytes(), np.uint32)[0]) & 1))


def _round(x) -> int:
    """C's round of a float: halves away from zero."""
    return int(math.copysign(math.floor(abs(float(x)) + 0.5), float(x)))


class Warp(NamedTuple):
    """Where a window goes: its box in the image (clipped), the size it is warped to, and
    where that lies in the crop."""
    x1: int
    y1: int
    x2: int
    y2: int
    height: int
    width: int
    pad_h: int
    pad_w: int


def warp_of(window: Window, image_h: int, image_w: int, crop: int, context_pad: int,
            square: bool, mirror: bool) -> Warp:
    """Caffe's geometry of one window, in its float arithmetic."""
    x1, y1, x2, y2 = window.x1, window.y1, window.x2, window.y2
    height = width = crop
    pad_h = pad_w = 0
    if context_pad > 0 or square:
        context = F32(crop) / F32(crop - 2 * context_pad)
        half_h, half_w = F32((y2 - y1 + 1) / 2.0), F32((x2 - x1 + 1) / 2.0)
        centre_x, centre_y = F32(x1) + half_w, F32(y1) + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1, x2 = _round(centre_x - half_w * context), _round(centre_x + half_w * context)
        y1, y2 = _round(centre_y - half_h * context), _round(centre_y + half_h * context)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - image_w + 1), max(0, y2 - image_h + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x, scale_y = F32(crop) / F32(unclipped_w), F32(crop) / F32(unclipped_h)
        width, height = _round(F32(x2 - x1 + 1) * scale_x), _round(F32(y2 - y1 + 1) * scale_y)
        pad_h = _round(F32(pad_y1) * scale_y)
        pad_w = _round(F32(pad_x2 if mirror else pad_x1) * scale_x)
        height, width = min(height, crop - pad_h), min(width, crop - pad_w)
    return Warp(x1, y1, x2, y2, height, width, pad_h, pad_w)


class WindowSampler:
    """WindowData's batches: ``sampler(batch_size) -> (data (N, C, crop, crop), labels (N,))``,
    float32; ``state_dict`` holds its generator, which draws the windows and flips."""

    def __init__(self, param, transform_param, generator: torch.Generator):
        self.file = read_window_file(param.source, param.root_folder, param.fg_threshold,
                                     param.bg_threshold)
        if self.file.channels != 3:
            raise AllconvError(f"window file {param.source}: its last image has "
                               f"{self.file.channels} channels, which give the data top's; "
                               "WindowData reads every image in colour: 3")
        if not self.file.foreground or not self.file.background:
            raise AllconvError(f"window file {param.source}: "
                               f"{len(self.file.foreground)} foreground and "
                               f"{len(self.file.background)} background windows at "
                               f"fg_threshold {param.fg_threshold:g} and bg_threshold "
                               f"{param.bg_threshold:g}; Caffe samples from both, so both "
                               "need one")
        self.crop = transform_param.crop_size
        if self.crop <= 0:
            raise AllconvError("WindowData needs transform_param.crop_size, the size windows "
                               "are warped to")
        if param.crop_mode not in ("warp", "square"):
            warnings.warn(f"window_data_param.crop_mode {param.crop_mode!r} warps, as in Caffe "
                          "(which knows \"warp\" and \"square\")", stacklevel=2)
        if param.context_pad > 0 and self.crop <= 2 * param.context_pad:
            raise AllconvError(f"window_data_param.context_pad {param.context_pad} leaves "
                               f"nothing of crop_size {self.crop}")
        self.mirror, self.square = transform_param.mirror, param.crop_mode == "square"
        self.context_pad, self.scale = param.context_pad, F32(param.scale)
        self.fg_fraction = F32(param.fg_fraction)
        if not 0 <= self.fg_fraction <= 1:
            raise AllconvError(f"window_data_param.fg_fraction {param.fg_fraction:g} is not a "
                               "share of the batch (0 to 1; Caffe writes past its batch)")
        self.mean = self._mean(transform_param)
        self.generator = generator
        self.sample_shape = (3, self.crop, self.crop)
        self.cache = ({i: file_bytes(path, path) for i, path in enumerate(self.file.images)}
                      if param.cache_images else None)     # the files' bytes, as Caffe keeps

    def _mean(self, transform_param) -> torch.Tensor | None:
        """The mean subtracted at each crop pixel: (3, crop, crop) from a mean_file, (3, 1, 1)
        from mean_value, or None."""
        values = list(transform_param.mean_value)
        if transform_param.HasField("mean_file"):
            mean = mean_file_image(transform_param)
            offset = (mean.shape[2] - self.crop) // 2 if mean.shape[2] >= self.crop else -1
            if (mean.shape[0] < 3 or offset < 0
                    or offset + self.crop > min(mean.shape[1], mean.shape[2])):
                raise AllconvError(f"transform_param: the mean_file {transform_param.mean_file}"
                                   f" is {tuple(mean.shape)}; WindowData reads its centre "
                                   f"crop_size x crop_size ({self.crop}) of 3 channels")
            return torch.from_numpy(
                mean[:3, offset:offset + self.crop, offset:offset + self.crop].copy())
        if not values:
            return None
        if len(values) not in (1, 3):
            raise AllconvError("transform_param: specify either 1 mean_value or as many as "
                               f"channels: 3 (got {len(values)})")
        return torch.tensor(values, dtype=torch.float32).expand(3).reshape(3, 1, 1)

    def _decode(self, index: int) -> torch.Tensor:
        path = self.file.images[index]
        if self.cache is None:
            return read_image(path, True)
        return read_image(io.BytesIO(self.cache[index]), True, name=path)

    def _draw(self) -> int:
        return int(torch.randint(0, 2**32, (), generator=self.generator))

    def __call__(self, batch_size: int):
        data = torch.zeros((batch_size,) + self.sample_shape)
        labels = torch.zeros(batch_size)
        foreground = int(F32(batch_size) * self.fg_fraction)
        item = 0
        for windows, count in ((self.file.background, batch_size - foreground),
                               (self.file.foreground, foreground)):
            for _ in range(count):
                window = windows[self._draw() % len(windows)]
                flip = bool(self.mirror and self._draw() % 2)
                data[item] = self._crop(window, flip)
                labels[item] = window.label
                item += 1
        return data, labels

    def _crop(self, window: Window, flip: bool) -> torch.Tensor:
        image = self._decode(window.image)
        _, image_h, image_w = image.shape
        w = warp_of(window, image_h, image_w, self.crop, self.context_pad, self.square, flip)
        named = (f"{self.file.images[window.image]}: the window ({window.x1}, {window.y1}, "
                 f"{window.x2}, {window.y2})")
        if not (0 <= w.x1 <= w.x2 < image_w and 0 <= w.y1 <= w.y2 < image_h):
            raise AllconvError(f"{named} cuts the box {w.x1}..{w.x2} x {w.y1}..{w.y2} out of "
                               f"the {image_w}x{image_h} image, which does not hold it")
        if w.height <= 0 or w.width <= 0:
            raise AllconvError(f"{named} warps to {w.height}x{w.width} pixels at crop_size "
                               f"{self.crop}: nothing to resize (OpenCV refuses it)")
        cut = image[:, w.y1:w.y2 + 1, w.x1:w.x2 + 1]
        if cut.shape[1:] != (w.height, w.width):
            cut = interpolate(cut, w.height, w.width)
        if flip:
            cut = cut.flip(2)
        out = torch.zeros(self.sample_shape)
        rows, cols = slice(w.pad_h, w.pad_h + w.height), slice(w.pad_w, w.pad_w + w.width)
        pixels = cut.float()
        if self.mean is not None:
            pixels = pixels - (self.mean if self.mean.shape[1] == 1 else self.mean[:, rows, cols])
        out[:, rows, cols] = pixels * self.scale
        return out

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
