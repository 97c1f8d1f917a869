"""For chosen filters of a blob, the k dataset images whose strongest unit of the filter is
highest (Figure 3), found in one batched pass over the dataset on the net's device."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from runtime.errors import AllconvError
from runtime.reconstruction.units import activations, check_blob


class TopUnits(NamedTuple):
    """Per filter (rows, in the order asked) its k best images, best first: the activation,
    the image's index in the dataset and the unit's spatial index (empty for a 2-d blob)."""

    values: torch.Tensor      # (F, k) float
    images: torch.Tensor      # (F, k) int64
    positions: torch.Tensor   # (F, k, number of spatial axes) int64


def top_units(net, blob: str, images, filters: list[int], k: int, batch_size: int = 500,
              progress: bool = True) -> TopUnits:
    """Scan ``images`` (N, C, H, W; any array) in batches; ties go to the earlier image, and
    within an image to the first position in row-major order (values are the batched
    forward's, which can differ by a float step from one batching to another)."""
    check_blob(net, blob)
    channels, spatial = net.blobs[blob].shape[1], tuple(net.blobs[blob].shape[2:])
    bad = [f for f in filters if not 0 <= f < channels]
    if bad:
        raise AllconvError(f"filter(s) {bad} out of range: blob {blob!r} has {channels} channels")
    if not 0 < k <= len(images):
        raise AllconvError(f"k must be between 1 and the {len(images)} images, got {k}")
    chosen = torch.tensor(filters, device=net.device)
    best_values = torch.empty((len(filters), 0), device=net.device)
    best_images = torch.empty((len(filters), 0), dtype=torch.int64, device=net.device)
    best_flat = torch.empty_like(best_images)
    for start in tqdm(range(0, len(images), batch_size), desc=f"top {k} of {blob}",
                      unit="batch", disable=not progress):
        batch = _batch(images[start:start + batch_size], net.device)
        acts = activations(net, blob, batch).index_select(1, chosen)
        acts = acts.reshape(acts.shape[:2] + (-1,))                              # (B, F, S)
        flat = acts.argmax(dim=2)                                                # first max
        values = acts.gather(2, flat[..., None])[..., 0].T                       # (F, B)
        index = torch.arange(start, start + len(batch), device=net.device).expand_as(values)
        values = torch.cat([best_values, values], 1)
        order = values.sort(dim=1, descending=True, stable=True).indices[:, :k]
        best_values = values.gather(1, order)
        best_images = torch.cat([best_images, index], 1).gather(1, order)
        best_flat = torch.cat([best_flat, flat.T], 1).gather(1, order)
    positions = torch.stack(torch.unravel_index(best_flat, spatial), -1) if spatial else \
        best_flat.new_zeros(best_flat.shape + (0,))
    return TopUnits(best_values.cpu(), best_images.cpu(), positions.cpu())


def _batch(part, device) -> torch.Tensor:
    """A slice of the images as float32 on ``device``; an array is copied (a read-only one,
    a memory map, would make torch warn)."""
    if not isinstance(part, torch.Tensor):
        part = torch.from_numpy(np.array(part, np.float32))
    return part.to(device, torch.float32)
