"""The augmentations a row may name: one `Pipeline` each, with the layout of the datasets it
reads, the input size it feeds the net and its parameters' table. harness/specs.py checks a row
against it and harness/datasets.py loads the row's data through it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from runtime.data import augment
from runtime.data.datasets import CIFAR_RELEASE, DATASETS, IMAGE_FOLDER, Dataset
from runtime.data.imagenet import CROP
from runtime.data.large_augment import FRAME, IMAGE, LargeAugment, large_batch, takes_frame
from runtime.registry import add_once

# a training or test transform of images held on the device: (images, generator, draws, part)
# -> the batch's positions ``part`` of ``draws`` random draws
Transform = Callable[[torch.Tensor, torch.Generator, int, slice], torch.Tensor]


def _as_they_are(params) -> tuple[Transform | None, Transform | None]:
    return None, None


def _flip_translate(params) -> tuple[Transform | None, Transform | None]:
    """Mirror with p = 1/2 and shift by at most 5 px at TRAIN; the test images as they are."""
    def train(images, generator, draws: int, part: slice) -> torch.Tensor:
        shifts, flips = augment.draw(draws, generator)
        return augment.apply(images, shifts[part], flips[part])
    return train, None


def _large(params: LargeAugment) -> tuple[Transform | None, Transform | None]:
    """Table 5's distortions in the 126 frame at TRAIN; at TEST the image centred, unchanged."""
    def framed(cfg: LargeAugment) -> Transform:
        return lambda images, generator, draws, part: large_batch(images, cfg, generator,
                                                                  draws, part)
    return framed(params), framed(LargeAugment.off())


@dataclass(frozen=True)
class Pipeline:
    """One augmentation: its name in a spec, the dataset layout it reads
    (runtime/data/datasets.py), the side of the square input it feeds the net, whether it
    reads the GCN+ZCA-whitened CIFAR, the class of its spec table ``[augment]`` (None: it
    takes no parameters), and ``transforms(augment)``: its (train, test) transforms of CIFAR
    held on the device (None: the images as they are)."""

    name: str
    layout: str
    input_size: int
    whitened: bool
    params: type | None = None
    transforms: Callable = _as_they_are

    @property
    def frames(self) -> bool:
        """Whether it puts CIFAR's images in a frame of its own size (else the net sees them
        at their size)."""
        return self.layout == CIFAR_RELEASE and self.input_size != IMAGE

    def reads(self, dataset: Dataset) -> bool:
        return dataset.layout == self.layout and (dataset.whitening or not self.whitened)

    @property
    def datasets(self) -> list[str]:
        """The names of the registered datasets it reads."""
        return [d.name for d in DATASETS.values() if self.reads(d)]


PIPELINES: dict[str, Pipeline] = {}
for _pipeline in (
        Pipeline("none", CIFAR_RELEASE, IMAGE, True),
        Pipeline("flip-translate", CIFAR_RELEASE, IMAGE, True, transforms=_flip_translate),
        Pipeline("large", CIFAR_RELEASE, FRAME, False, LargeAugment, _large),
        Pipeline("imagenet-crop-mirror", IMAGE_FOLDER, CROP, False)):
    add_once(PIPELINES, _pipeline.name, _pipeline, "augmentation")


def test_pipeline(dataset: Dataset, input_shape) -> Pipeline:
    """The augmentation whose TEST input a net of input sample ``input_shape`` (C, H, W),
    trained on ``dataset``, takes: the one that reads the dataset's layout (for CIFAR, the one
    framing it when the net takes Large All-CNN's frame; else the whitened images as they are)."""
    if dataset.layout == CIFAR_RELEASE:
        return PIPELINES["large" if takes_frame(input_shape) else "none"]
    return next(p for p in PIPELINES.values() if p.layout == dataset.layout)
