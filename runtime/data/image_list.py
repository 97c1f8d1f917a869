"""ImageData's source (image_data_layer.cpp, util/io.cpp ReadImageToCVMat): a list file of
``path label`` lines, images decoded as OpenCV's ``imread`` gives them (`runtime.data.imread`).

A line's label is the integer after its last space (C's ``atoi``), its path what comes before,
read under ``root_folder`` (prefixed as a string, as Caffe does). Images are BGR (``is_color``)
or one grey channel, uint8, resized to ``new_height`` x ``new_width`` when both are set by
OpenCV's INTER_LINEAR (``jpeg.interpolate``).

Lines are read in order, wrapping around; with ``shuffle`` in a fresh order at the start and
at each wrap; ``rand_skip`` skips a random number of lines (below it) once, at the start.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import torch

from runtime.data.imread import read_image
from runtime.data.passes import Passes
from runtime.errors import AllconvError

_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LONG = 2**63


def atoi(text: str) -> int:
    """glibc's atoi, ``(int) strtol``: leading blanks, a sign and digits, 0 when there are
    none; clamped to a 64-bit long, then its low 32 bits as a signed int (99999999999999999999
    is -1)."""
    match = _ATOI.match(text)
    if not match:
        return 0
    value = min(max(int(match.group(1)), -_LONG), _LONG - 1) & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def read_list(source: str) -> list[tuple[str, int]]:
    """(path, label) per line of ``source``; a blank line is refused (Caffe takes it as an
    image with a blank path, and aborts when it comes to load it)."""
    try:
        with open(source, newline="", errors="surrogateescape") as f:   # lines end at \n
            text = f.read()
    except (OSError, ValueError) as err:        # ValueError: a NUL in the name
        raise AllconvError(f"{source!r}: cannot open the image list: "
                           f"{getattr(err, 'strerror', None) or err}") from None
    lines, pieces = [], text.split("\n")
    if pieces[-1] == "":
        pieces.pop()            # the text after the last newline is no line (getline)
    for number, line in enumerate(pieces, 1):   # a \r stays, as getline keeps it
        if not line.strip():
            raise AllconvError(f"{source}:{number}: a blank line, which Caffe reads as an "
                               "image with a blank path and aborts on loading: remove it")
        pos = line.rfind(" ")
        lines.append((line[:pos] if pos >= 0 else line, atoi(line[pos + 1:])))
    if not lines:
        raise AllconvError(f"{source}: the image list is empty")
    return lines


def check_same_size(names, images, hint: str, channels_only: bool = False) -> None:
    """Refuse an image of a batch whose shape (C, H, W) is not the batch's first image's (with
    ``channels_only``, whose channels are not), as Caffe's data layers shape their top by a
    batch's first image and then abort on another; the error names it and both sizes (H x W,
    or C x H x W where the channels differ)."""
    shape = tuple(images[0].shape)
    for name, image in zip(names, images):
        if image.shape[0] != shape[0] or not channels_only and tuple(image.shape) != shape:
            cut = 1 if image.shape[0] == shape[0] else 0
            raise AllconvError(f"{name}: a {'x'.join(map(str, image.shape[cut:]))} image in a "
                               f"batch of {'x'.join(map(str, shape[cut:]))} images (its first "
                               f"image's, as Caffe shapes a batch): {hint}")


class ImageList:
    """ImageData's images and labels: ``feed(batch_size) -> (images, labels)``; images a
    uint8 tensor (N, C, H, W) of the batch's first image's size, as Caffe reshapes its top
    per batch (``sizes_vary``: from batch to batch), another size in the batch refused,
    naming the image; or, ``cropped`` (a crop follows that makes them one), a list of
    (C, H, W) when their sizes differ; ``sample_shape`` is the first image's; resumable
    (order, position and generator)."""

    def __init__(self, source: str, root_folder: str = "", new_size=None, is_color=True,
                 shuffle=False, rand_skip: int = 0, generator: torch.Generator | None = None,
                 threads: int = 4, cropped: bool = False):
        self.source, self.lines = source, read_list(source)
        self.root, self.size, self.is_color = root_folder, new_size, is_color
        self.cropped, self.sizes_vary = cropped, not cropped
        self.passes = Passes(len(self.lines), generator or torch.Generator(), shuffle)
        if rand_skip:
            skip = int(torch.randint(0, 2**32, (), generator=self.passes.generator)) % rand_skip
            if skip >= len(self.lines):
                raise AllconvError(f"{source}: rand_skip drew {skip}, not fewer than its "
                                   f"{len(self.lines)} images")
            self.passes.cursor = skip
        self.threads = threads
        self._pool = None
        self.sample_shape = tuple(self._read(int(self.passes.order[self.passes.cursor])).shape)

    def _read(self, i: int) -> torch.Tensor:
        """The image of list line ``i`` (from 0); an error names the list and the line."""
        try:
            return read_image(self.root + self.lines[i][0], self.is_color, self.size)
        except AllconvError as err:
            raise AllconvError(f"{err} (listed in {self.source}, line {i + 1})") from None

    def __call__(self, batch_size: int):
        index = self.passes.take(batch_size).tolist()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads)
        names = [self.lines[i][0] for i in index]
        images = list(self._pool.map(self._read, index))
        check_same_size([self.root + name for name in names], images,
                        "batch_size 1, new_height/new_width or crop_size make a batch one size",
                        channels_only=self.cropped)
        labels = torch.tensor([float(self.lines[i][1]) for i in index])
        if len({tuple(im.shape) for im in images}) == 1:
            return torch.stack(images), labels
        return images, labels

    def state_dict(self) -> dict:
        return self.passes.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.passes.load_state_dict(state)

