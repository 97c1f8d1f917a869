"""Caffe's DataTransformer (src/caffe/data_transformer.cpp) on whole batches, on their device.

Per image: a crop of ``crop_size`` x ``crop_size`` (TRAIN: at a uniformly drawn offset; TEST:
the centre, ``(H - crop) // 2``; no crop_size: the whole image), mirrored left-right when
``mirror`` is set and a fair coin says so (in both phases, as Caffe draws it), and each value
becomes ``(x - mean) * scale``: ``mean`` is the ``mean_file`` image (a .binaryproto of the
uncropped size, read at the crop's place) or the ``mean_value`` of the channel (one value for
all channels, or one per channel), else nothing. Arithmetic in float32 in Caffe's order.

The crop and mirror are two gathers per batch (`crop_mirror`), shared with the ImageNet feed.
"""
from __future__ import annotations

import numpy as np
import torch

from runtime.errors import AllconvError


def draw_crops(n: int, size: tuple[int, int], crop: tuple[int, int], train: bool,
               mirror: bool, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(offsets int64 (n, 2) as (y, x), flips bool (n,)) for images of ``size`` (H, W):
    uniform offsets at TRAIN (Caffe's Rand(k): a 32-bit draw modulo k), the centre (Caffe's
    integer division) at TEST; flips fair coins when ``mirror``, else none. Drawn on the
    generator's device (CPU without one)."""
    (h, w), (ch, cw) = size, crop
    device = generator.device if generator is not None else torch.device("cpu")
    if train and (h > ch or w > cw):
        draws = torch.randint(0, 2**32, (n, 2), generator=generator, device=device)
        offsets = draws % torch.tensor([h - ch + 1, w - cw + 1], device=device)
    else:
        offsets = torch.tensor([(h - ch) // 2, (w - cw) // 2], device=device).expand(n, 2)
    if mirror:
        flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return offsets, flips


def crop_mirror(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                crop: int | tuple[int, int]) -> torch.Tensor:
    """out[i] = images[i, :, y_i:y_i+ch, x_i:x_i+cw], mirrored left-right where flips[i];
    offsets int64 (N, 2) as (y, x). Two gathers, rows then columns, in the images' dtype
    (uint8 moves a quarter of the bytes)."""
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    n, c, _, w = images.shape
    ys = offsets[:, :1] + torch.arange(ch, device=images.device)
    span = torch.arange(cw, device=images.device)
    xs = torch.where(flips[:, None], offsets[:, 1:] + cw - 1 - span, offsets[:, 1:] + span)
    rows = images.gather(2, ys[:, None, :, None].expand(n, c, ch, w))
    return rows.gather(3, xs[:, None, None, :].expand(n, c, ch, cw))


def less_mean(out: torch.Tensor, mean: torch.Tensor,
              gathered: tuple[torch.Tensor, torch.Tensor, int | tuple[int, int]] | None
              ) -> torch.Tensor:
    """Cropped, mirrored images ``out`` less ``mean``: per-channel values (C, 1, 1), or an
    image (C, H, W) read at each crop's place (``gathered``: the offsets, flips and crop that
    made ``out``; None: they are the whole images), as DataTransformer subtracts a mean_file."""
    if gathered is not None and mean.shape[-2:] != (1, 1):
        mean = crop_mirror(mean.expand(len(out), -1, -1, -1), *gathered)
    return out - mean


def mean_file_image(param) -> np.ndarray:
    """The (C, H, W) mean of ``transform_param.mean_file`` (its first image, as Caffe reads
    it); giving mean_value too, or an empty name, is an AllconvError."""
    from runtime.caffemodel import read_blob

    if len(param.mean_value):
        raise AllconvError("transform_param: cannot specify mean_file and mean_value "
                           "at the same time")
    if not param.mean_file:     # read as the folder "." (Caffe fails on it too)
        raise AllconvError("transform_param: mean_file is empty; give the mean's "
                           ".binaryproto, or mean_value")
    mean = read_blob(param.mean_file)
    if mean.ndim != 4 or mean.shape[0] == 0:      # Caffe reads its legacy C, H, W
        raise AllconvError(f"{param.mean_file}: a mean of shape {mean.shape}, "
                           "expected (1, C, H, W)")
    return mean[0].copy()


class Transformer:
    """A layer's ``transform_param`` for its phase; ``transformer(images)`` transforms a batch
    (N, C, H, W) of any dtype into float32 (N, C, h, w), drawing crops and flips from
    ``generator`` (its state is part of the feed's, so a resumed run draws the same)."""

    def __init__(self, param, train: bool, generator: torch.Generator | None = None):
        self.train, self.generator = train, generator
        self.scale, self.mirror, self.crop = float(param.scale), param.mirror, param.crop_size
        self.mean_image = self.mean_values = None
        self.mean_file = param.mean_file
        if param.HasField("mean_file"):
            self.mean_image = torch.from_numpy(mean_file_image(param))
        elif len(param.mean_value):
            self.mean_values = torch.tensor(list(param.mean_value), dtype=torch.float32)

    @property
    def random(self) -> bool:
        """Whether transforming draws anything (a TRAIN crop or a mirror)."""
        return bool(self.mirror or (self.train and self.crop))

    def output_shape(self, shape) -> tuple[int, ...]:
        """The transformed shape of one image of ``shape`` (C, H, W), after Caffe's checks."""
        if len(shape) != 3:
            raise AllconvError(f"transform_param needs images (C, H, W), got shape {tuple(shape)}")
        c, h, w = shape
        if self.crop and (h < self.crop or w < self.crop):
            raise AllconvError(f"transform_param: crop_size {self.crop} is larger than the "
                               f"{h}x{w} image")
        if self.mean_image is not None and tuple(self.mean_image.shape) != (c, h, w):
            raise AllconvError(f"transform_param: the mean_file {self.mean_file} is "
                               f"{tuple(self.mean_image.shape)}, the images ({c}, {h}, {w})")
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise AllconvError(f"transform_param: specify either 1 mean_value or as many as "
                               f"channels: {c} (got {len(self.mean_values)})")
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        _, ch, cw = self.output_shape((c, h, w))
        if self.crop or self.mirror:
            offsets, flips = draw_crops(n, (h, w), (ch, cw), self.train, self.mirror,
                                        self.generator)
            offsets, flips = offsets.to(images.device), flips.to(images.device)
            out = crop_mirror(images, offsets, flips, (ch, cw)).float()
        else:       # the whole image, as it is: no gathers
            out = images.float()
        if self.mean_image is not None:
            gathered = (offsets, flips, (ch, cw)) if self.crop or self.mirror else None
            out = less_mean(out, self.mean_image.to(images.device), gathered)
        elif self.mean_values is not None:
            out = out - self.mean_values.to(images.device)[:, None, None]
        if self.scale != 1:
            out = out * self.scale
        return out


class TransformedFeed:
    """A feed ``(data, label, ...)`` whose data go through a `Transformer` (a Data-like layer
    reading its own source); ``state_dict`` adds the transformer's generator to the feed's."""

    def __init__(self, feed, transformer: Transformer):
        self.feed, self.transformer = feed, transformer
        self.sample_shape = transformer.output_shape(feed.sample_shape)
        self.sizes_vary = getattr(feed, "sizes_vary", False)     # (a cropped feed's: False)

    def __call__(self, batch_size: int):
        data, *rest = self.feed(batch_size)
        if not isinstance(data, (list, tuple)):
            return (self.transformer(torch.as_tensor(data)), *rest)
        # images of several sizes (ImageData) that a crop makes one: one by one, as Caffe
        # transforms them
        return (torch.cat([self.transformer(image[None]) for image in data]), *rest)

    def state_dict(self) -> dict:
        state = {"feed": self.feed.state_dict() if hasattr(self.feed, "state_dict") else None}
        if self.transformer.generator is not None:
            state["generator"] = self.transformer.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("feed") is not None:
            self.feed.load_state_dict(state["feed"])
        if "generator" in state:
            self.transformer.generator.set_state(state["generator"])
