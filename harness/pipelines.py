"""The augmentations a row may name: one `Pipeline` each, with the layout of the datasets it
reads, the input size it feeds the net and its parameters' table. harness/specs.py checks a row
against it and harness/datasets.py loads the row's data through it."""
from __future__ import annotations

from dataclasses import dataclass

from runtime.data.datasets import CIFAR_RELEASE, DATASETS, IMAGE_FOLDER, Dataset
from runtime.data.imagenet import CROP
from runtime.data.large_augment import FRAME, IMAGE, LargeAugment


@dataclass(frozen=True)
class Pipeline:
    """One augmentation: the dataset layout it reads (runtime/data/datasets.py), the side of the
    square input it feeds the net, whether it reads the GCN+ZCA-whitened CIFAR, and the class of
    its spec table ``[augment]`` (None: it takes no parameters)."""

    layout: str
    input_size: int
    whitened: bool
    params: type | None = None

    def reads(self, dataset: Dataset) -> bool:
        return dataset.layout == self.layout and (dataset.whitening or not self.whitened)

    @property
    def datasets(self) -> list[str]:
        """The names of the registered datasets it reads."""
        return [d.name for d in DATASETS.values() if self.reads(d)]


PIPELINES = {
    "none": Pipeline(CIFAR_RELEASE, IMAGE, True),
    "flip-translate": Pipeline(CIFAR_RELEASE, IMAGE, True),
    "large": Pipeline(CIFAR_RELEASE, FRAME, False, LargeAugment),
    "imagenet-crop-mirror": Pipeline(IMAGE_FOLDER, CROP, False),
}
