"""The registry of the paper's networks: one ``Variant`` entry holds everything that defines one.

An entry names its template and the template's layer table, its input size, the class counts it
accepts, its data defaults (batch sizes, Data-layer sources, Caffe's crop/mirror/mean transform)
and the paper's solver schedule. Everything else (``gen-prototxt``, ``--list``, the harness)
reads it from here.

The 12 CIFAR variants (Table 1's base models, Table 2's derived ones) are rows of
``BASE_STAGES`` x ``DOWNSAMPLING`` rendered by one family template; Large All-CNN (Table 5)
and the ImageNet model (Table 6) have a template each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from runtime.data import imagenet, large_augment
from runtime.errors import AllconvError
from runtime.registry import add_once, did_you_mean

# Convolutions of one body stage (kernel sizes), per base model of Table 1. The stage's width
# is 96 for the first stage and 192 for the second.
BASE_STAGES = {"a": (5,), "b": (5, 1), "c": (3, 3)}
STAGE_WIDTHS = (96, 192)

# How each family of Table 2 downsamples at the end of a stage.
#   pool:         3x3 max-pool, stride 2 (Model X)
#   stride:       the stage's last conv gets stride 2, no pool (Strided-CNN-X)
#   conv+pool:    an extra dense 3x3 conv of the stage's width, then the max-pool (ConvPool-CNN-X)
#   strided-conv: a 3x3 conv of the stage's width, stride 2, pad 1, replaces the pool (All-CNN-X)
DOWNSAMPLING = {"model": "pool", "strided": "stride", "convpool": "conv+pool",
                "all": "strided-conv"}
FAMILY_TITLES = {"model": "Model {B}", "strided": "Strided-CNN-{B}",
                 "convpool": "ConvPool-CNN-{B}", "all": "All-CNN-{B}"}

LEAKY_SLOPE = 0.333   # Table 5 says LeakyReLU without a slope; 1/3 as in Graham's sparse CNNs.

# Large All-CNN (Table 5): (n, width, kernel, stride, dropout after the conv or 0), all unpadded.
LARGE_LAYERS = (
    (1, 320, 2, 1, 0), (2, 320, 2, 1, 0), (3, 320, 2, 2, 0),
    (4, 640, 2, 1, 0.1), (5, 640, 2, 1, 0.1), (6, 640, 2, 2, 0),
    (7, 960, 2, 1, 0.2), (8, 960, 2, 1, 0.2), (9, 960, 2, 2, 0),
    (10, 1280, 2, 1, 0.3), (11, 1280, 2, 1, 0.3), (12, 1280, 2, 2, 0),
    (13, 1600, 2, 1, 0.4), (14, 1600, 2, 1, 0.4), (15, 1600, 2, 2, 0),
    (16, 1920, 2, 1, 0.5), (17, 1920, 1, 1, 0.5))

# The ImageNet All-CNN (Table 6): (n, width or None for the class count, kernel, stride, pad,
# dropout after the conv or 0).
IMAGENET_LAYERS = (
    (1, 96, 11, 4, 0, 0), (2, 96, 1, 1, 0, 0), (3, 96, 3, 2, 0, 0),
    (4, 256, 5, 1, 2, 0), (5, 256, 1, 1, 0, 0), (6, 256, 3, 2, 0, 0),
    (7, 384, 3, 1, 1, 0), (8, 384, 1, 1, 0, 0), (9, 384, 3, 2, 0, 0.5),
    (10, 1024, 3, 1, 1, 0), (11, 1024, 1, 1, 0, 0), (12, None, 1, 1, 0, 0))


@dataclass(frozen=True)
class Schedule:
    """The paper's SGD schedule in ``unit`` epochs or iterations.

    ``lr_policy`` "multistep" steps after each of ``steps``; "step" every ``steps[0]``; each
    step multiplies the rate by ``gamma``.
    """

    source: str
    unit: str
    length: float
    steps: tuple[float, ...]
    lr_policy: str
    weight_decay: float
    base_lr: float = 0.01
    momentum: float = 0.9
    gamma: float = 0.1
    test_every: float = 5
    snapshot_every: float = 50


CIFAR_SCHEDULE = Schedule("Section 3.2", "epoch", 350, (200, 250, 300), "multistep", 0.001)
IMAGENET_SCHEDULE = Schedule("Table 6", "iteration", 450_000, (200_000,), "step", 0.0005,
                             test_every=10_000, snapshot_every=50_000)


@dataclass(frozen=True)
class Transform:
    """Caffe's TransformationParameter of the Data layers: random crop and mirror at TRAIN,
    centre crop at TEST, mean values subtracted per channel. Empty for pre-whitened CIFAR."""

    crop_size: int | None = None
    mirror: bool = False
    mean_values: tuple[float, ...] = ()

    def fields(self, phase: str) -> list[tuple[str, object]]:
        """(field, value) pairs of the transform_param of ``phase`` ("TRAIN" or "TEST")."""
        if self.crop_size is None and not self.mirror and not self.mean_values:
            return []
        mirror = "true" if self.mirror and phase == "TRAIN" else "false"
        crop = [("crop_size", self.crop_size)] if self.crop_size else []
        return [("mirror", mirror)] + crop + [("mean_value", v) for v in self.mean_values]


@dataclass(frozen=True)
class Variant:
    """One network of the paper and everything that defines it.

    ``layers`` is the template's layer table; ``classes`` the class counts the net accepts
    (the first is the default); ``sources`` the Data layers' default TRAIN and TEST sources,
    with ``{classes}`` filled in.
    """

    name: str
    title: str
    table: str
    template: str
    layers: dict = field(hash=False, compare=False)
    input_size: int = 32
    classes: tuple[int, ...] = (10, 100)
    train_size: int = 50_000
    test_size: int = 10_000
    batch_size: int = 128
    test_batch_size: int = 100
    sources: tuple[str, str] = ("data/cifar{classes}_gcn_zca_train.npz",
                                "data/cifar{classes}_gcn_zca_test.npz")
    transform: Transform = Transform()
    schedule: Schedule = CIFAR_SCHEDULE
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()       # other spellings, as `_normalise` leaves them

    @property
    def is_cifar(self) -> bool:
        return self.template == "cifar_family.prototxt.j2"

    def check_classes(self, classes: int | None) -> int:
        """``classes``, or the default when None; AllconvError if the net does not take it."""
        if classes is None:
            return self.classes[0]
        if classes not in self.classes:
            if len(self.classes) == 1:
                raise AllconvError(f"--classes {classes} conflicts with {self.title} "
                                   f"({self.table}), which has {self.classes[0]} classes")
            raise AllconvError(f"--classes must be {' or '.join(map(str, self.classes))} for "
                               f"{self.title}, not {classes}")
        return classes

    def data_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """The Data or Input top's shape for ``batch`` images."""
        return (batch, 3, self.input_size, self.input_size)


def _cifar_variant(family: str, base: str) -> Variant:
    notes = (("Strided-CNN: the 50 % dropout follows the strided conv's ReLU, where the pool "
              "was.",) if family == "strided" else ())
    return Variant(name=f"{family}-{base}", title=FAMILY_TITLES[family].format(B=base.upper()),
                   table="Table 1" if family == "model" else "Table 2",
                   template="cifar_family.prototxt.j2",
                   layers=dict(stage_widths=STAGE_WIDTHS, base_kernels=BASE_STAGES[base],
                               downsampling=DOWNSAMPLING[family]),
                   notes=notes)


LARGE_ALL_CNN = Variant(
    "large-all-cnn", "Large All-CNN", "Table 5", "large_all_cnn.prototxt.j2",
    layers=dict(convs=LARGE_LAYERS, leaky_slope=LEAKY_SLOPE), input_size=large_augment.FRAME,
    classes=(10,),
    batch_size=64, sources=("data/cifar10_large_train.npz", "data/cifar10_large_test.npz"),
    aliases=("large-all", "large-allcnn"),
    notes=(f"LeakyReLU slope {LEAKY_SLOPE} (Table 5 gives none); dropout after each unstrided "
           "conv at its group's rate; a 1x1 conv 'classifier' maps 1920 -> classes.",))

IMAGENET = Variant(
    "imagenet", "All-CNN ImageNet", "Table 6", "imagenet.prototxt.j2",
    layers=dict(convs=IMAGENET_LAYERS), input_size=imagenet.CROP, classes=(1000,),
    train_size=1_281_167, test_size=50_000, batch_size=64, test_batch_size=50,
    sources=("data/ilsvrc12_train_lmdb", "data/ilsvrc12_val_lmdb"),
    transform=Transform(crop_size=imagenet.CROP, mirror=True, mean_values=imagenet.MEAN_VALUES),
    schedule=IMAGENET_SCHEDULE, aliases=("all-cnn-imagenet",),
    notes=("227x227 crops with unpadded strided convs give 55-27-13-6, the paper's 6x6 global "
           "average (the paper's 224 cannot reach 6x6 without extra padding).",))

VARIANTS: dict[str, Variant] = {}
_SPELLINGS: dict[str, str] = {}     # every name and alias -> the variant's name


def register(variant: Variant) -> Variant:
    """Add ``variant`` to the registry; a name or alias already taken is refused."""
    for spelling in (variant.name, *variant.aliases):
        if spelling in _SPELLINGS:
            owner = _SPELLINGS[spelling]
            raise AllconvError(f"variant {spelling!r} is already registered"
                               + (f" (a spelling of {owner!r})" if owner != spelling else ""))
    _SPELLINGS.update(dict.fromkeys((variant.name, *variant.aliases), variant.name))
    return add_once(VARIANTS, variant.name, variant, "variant")


for family in DOWNSAMPLING:
    for base in BASE_STAGES:
        register(_cifar_variant(family, base))
register(LARGE_ALL_CNN)
register(IMAGENET)


def _normalise(name: str) -> str:
    """Lower-case, unify separators and drop the paper's '-CNN' infix: 'All-CNN-C' -> 'all-c'."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    key = re.sub(r"-cnn(?=-[abc]$)", "", key)
    return _SPELLINGS.get(key, key)


def get_variant(name: str) -> Variant:
    """Look a variant up by its name or any of the paper's spellings (case-insensitive)."""
    key = _normalise(name)
    if key not in VARIANTS:
        raise AllconvError(f"unknown variant {name!r}{did_you_mean(name, VARIANTS)}; valid "
                           f"variants: {', '.join(VARIANTS)}")
    return VARIANTS[key]
