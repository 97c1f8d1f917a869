"""Batch augmentation for the paper's "with augmentation" rows, on the batch's own device.

Each image is mirrored left-right with probability 1/2, then translated by (dy, dx), each drawn
uniformly from {-max_shift, ..., max_shift} (the paper: at most 5 pixels in each direction).
Pixels moved in from outside the image are 0: on GCN+ZCA data that is the training set's mean
(ZCA centres every pixel), so the fill carries no signal. One gather per batch, no Python loop
over images and no host-device synchronisation.
"""
from __future__ import annotations

import torch

MAX_SHIFT = 5


def draw(n: int, generator: torch.Generator, max_shift: int = MAX_SHIFT
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (shifts int64 (n, 2) as (dy, dx), flips bool (n,)) on the generator's device."""
    device = generator.device
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    return shifts, flips


def apply(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """out[i, :, y, x] = m_i[:, y - dy_i, x - dx_i], 0 outside the image;
    m_i is images[i], mirrored left-right where flips[i]."""
    n, c, h, w = images.shape
    ys = torch.arange(h, device=images.device) - shifts[:, :1]            # (n, h) source rows
    xs = torch.arange(w, device=images.device) - shifts[:, 1:]            # (n, w) source columns
    inside = ((ys >= 0) & (ys < h))[:, None, :, None] & ((xs >= 0) & (xs < w))[:, None, None, :]
    xs = torch.where(flips[:, None], w - 1 - xs, xs)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    picked = images[batch, channel, ys.clamp(0, h - 1)[:, None, :, None],
                    xs.clamp(0, w - 1)[:, None, None, :]]
    return torch.where(inside, picked, torch.zeros((), dtype=images.dtype, device=images.device))


def augment(images: torch.Tensor, generator: torch.Generator,
            max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """Randomly flipped and translated copy of a batch (N, C, H, W); generator on its device."""
    return apply(images, *draw(len(images), generator, max_shift))
