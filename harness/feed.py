"""The training feed: a device-resident dataset served in reshuffled passes, augmented on the
device.

A feed is what the runtime's Data layer calls, ``feed(batch_size) -> (data, label)``. Like
Caffe's Data layer it reads a stream and wraps around, so a batch may straddle two passes; unlike
Caffe's fixed LMDB order, each pass is a fresh permutation (``runtime.data.passes.Passes``, kept
on the images' device). ``state_dict`` holds the pass order, the position in it and the
generator, so a restored feed continues with the same batches.
"""
from __future__ import annotations

from typing import Callable

import torch

from runtime.data.passes import Passes


class TrainFeed:
    """Batches of ``images`` (N, C, H, W) and float ``labels`` on their device, through
    ``transform(images, generator, draws, part)`` when given: a batch transform on the device
    that draws its randomness for ``draws`` images and returns the positions ``part``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int,
                 transform: Callable | None = None):
        self.images, self.labels = images, labels.float()
        self.transform = transform
        self.generator = torch.Generator(images.device).manual_seed(seed)
        self.passes = Passes(len(images), self.generator, device=images.device)

    def __call__(self, batch_size: int, part: slice | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` samples, or only the positions ``part`` of them (a
        process's slice of a global batch); the augmentation is drawn for the whole batch,
        so a sample's distortion does not depend on how the batch is split."""
        index = self.passes.take(batch_size)
        part = part or slice(0, batch_size)
        images = self.images[index[part]]
        if self.transform is not None:
            images = self.transform(images, self.generator, batch_size, part)
        return images, self.labels[index[part]]

    def state_dict(self) -> dict:
        return self.passes.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.passes.load_state_dict(state)
