"""The registry of the paper's networks: one table drives every variant.

The 12 CIFAR variants (Tables 1-2) are rows of ``BASE_STAGES`` x ``DOWNSAMPLING``
rendered by one family template; Large All-CNN (Table 5) and the ImageNet model
(Table 6) have a template each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.errors import AllconvError

# Convolutions of one body stage (kernel sizes), per base model of Table 1. The stage's width
# is 96 for the first stage and 192 for the second.
BASE_STAGES = {"a": (5,), "b": (5, 1), "c": (3, 3)}
STAGE_WIDTHS = (96, 192)

# How each family of Table 2 downsamples at the end of a stage.
#   pool:         3x3 max-pool, stride 2 (Model X)
#   stride:       the stage's last conv gets stride 2, no pool (Strided-CNN-X)
#   conv+pool:    an extra dense 3x3 conv of the stage's width, then the max-pool (ConvPool-CNN-X)
#   strided-conv: a 3x3 conv of the stage's width, stride 2, pad 1, replaces the pool (All-CNN-X)
DOWNSAMPLING = {"model": "pool", "strided": "stride", "convpool": "conv+pool", "all": "strided-conv"}
FAMILY_TITLES = {"model": "Model {B}", "strided": "Strided-CNN-{B}",
                 "convpool": "ConvPool-CNN-{B}", "all": "All-CNN-{B}"}


@dataclass(frozen=True)
class Variant:
    """One network of the paper: its canonical name, title and template inputs."""

    name: str
    title: str
    template: str
    table: str
    family: str = ""
    base: str = ""

    @property
    def is_cifar(self) -> bool:
        return self.template == "cifar_family.prototxt.j2"


def _cifar_variants() -> list[Variant]:
    return [Variant(name=f"{family}-{base}", title=FAMILY_TITLES[family].format(B=base.upper()),
                    template="cifar_family.prototxt.j2", table="Tables 1-2",
                    family=family, base=base)
            for family in DOWNSAMPLING for base in BASE_STAGES]


VARIANTS: dict[str, Variant] = {v.name: v for v in _cifar_variants() + [
    Variant("large-all-cnn", "Large All-CNN", "large_all_cnn.prototxt.j2", "Table 5"),
    Variant("imagenet", "All-CNN ImageNet", "imagenet.prototxt.j2", "Table 6"),
]}


def _normalise(name: str) -> str:
    """Lower-case, unify separators and drop the paper's '-CNN' infix: 'All-CNN-C' -> 'all-c'."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    key = re.sub(r"-cnn(?=-[abc]$)", "", key)
    return {"large-all": "large-all-cnn", "large-allcnn": "large-all-cnn",
            "all-cnn-imagenet": "imagenet"}.get(key, key)


def get_variant(name: str) -> Variant:
    """Look a variant up by its name or any of the paper's spellings (case-insensitive)."""
    key = _normalise(name)
    if key not in VARIANTS:
        raise AllconvError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANTS[key]
