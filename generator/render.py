"""Render a variant's net (and solver) from the Jinja templates, and check it parses as Caffe's."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2

from generator.variants import BASE_STAGES, DOWNSAMPLING, STAGE_WIDTHS, Variant
from runtime.errors import AllconvError
from runtime.prototxt import parse_net, parse_solver

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def _plain_number(value):
    """Print integral floats as integers (lr_mult: 2, not 2.0); everything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), finalize=_plain_number,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

CIFAR_TRAIN_SIZE = {10: 50_000, 100: 50_000}
CIFAR_TEST_SIZE = 10_000
LEAKY_SLOPE = 0.333   # Table 5 says LeakyReLU without a slope; 1/3 as in Graham's sparse CNNs.


@dataclass(frozen=True)
class Filler:
    """A Caffe FillerParameter as (type, [(field, value), ...])."""

    type: str
    fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Init:
    """The open choices: fillers and the ParamSpec multipliers of weights and biases."""

    weight_filler: Filler = Filler("xavier", (("variance_norm", "FAN_IN"),))
    bias_filler: Filler = Filler("constant", (("value", 0),))
    weight_lr_mult: float = 1
    weight_decay_mult: float = 1
    bias_lr_mult: float = 2
    bias_decay_mult: float = 0


@dataclass(frozen=True)
class NetOptions:
    """Everything besides the variant that shapes the rendered net."""

    num_classes: int | None = None          # None: the variant's default (10, or 1000 for ImageNet)
    deploy: bool = False
    deploy_batch: int = 1
    batch_size: int | None = None           # None: the variant's default
    test_batch_size: int | None = None
    train_source: str | None = None
    test_source: str | None = None
    init: Init = field(default_factory=Init)


@dataclass(frozen=True)
class SolverOptions:
    """The training schedule. Epoch-based schedules are converted to iterations."""

    net_path: str
    base_lr: float | None = None
    epochs: float | None = None
    step_epochs: tuple[float, ...] | None = None
    test_every_epochs: float = 5
    snapshot_every_epochs: float = 50
    snapshot_prefix: str = "net"
    seed: int | None = None
    train_size: int | None = None        # images per epoch; None: the dataset's (CIFAR 50,000)


def _family_defaults(variant: Variant, opts: NetOptions) -> NetOptions:
    """Fill the variant-dependent defaults of ``opts``."""
    if variant.name == "imagenet":
        if opts.num_classes not in (None, 1000):
            raise AllconvError(f"--classes {opts.num_classes} conflicts with the ImageNet model, "
                               "which has 1000 classes")
        return replace(opts, num_classes=1000, batch_size=opts.batch_size or 64,
                       test_batch_size=opts.test_batch_size or 50,
                       train_source=opts.train_source or "data/ilsvrc12_train_lmdb",
                       test_source=opts.test_source or "data/ilsvrc12_val_lmdb")
    classes = opts.num_classes or 10
    if classes not in CIFAR_TRAIN_SIZE:
        raise AllconvError(f"--classes must be 10 or 100 for {variant.title}, not {classes}")
    stem = "cifar10_large" if variant.name == "large-all-cnn" else f"cifar{classes}_gcn_zca"
    if variant.name == "large-all-cnn" and classes != 10:
        raise AllconvError("--classes 100 conflicts with Large All-CNN, a CIFAR-10 model (Table 5)")
    return replace(opts, num_classes=classes,
                   batch_size=opts.batch_size or (64 if variant.name == "large-all-cnn" else 128),
                   test_batch_size=opts.test_batch_size or 100,
                   train_source=opts.train_source or f"data/{stem}_train.npz",
                   test_source=opts.test_source or f"data/{stem}_test.npz")


def _transforms(variant: Variant) -> dict[str, list[tuple[str, object]]]:
    """Caffe's TransformationParameter per phase (ImageNet only: the CIFAR data is pre-whitened)."""
    if variant.name != "imagenet":
        return {"TRAIN": [], "TEST": []}
    mean = [("mean_value", 104), ("mean_value", 117), ("mean_value", 123)]
    return {"TRAIN": [("mirror", "true"), ("crop_size", 227)] + mean,
            "TEST": [("mirror", "false"), ("crop_size", 227)] + mean}


def _notes(variant: Variant) -> list[str]:
    if variant.family == "strided":
        return ["Strided-CNN: the 50 % dropout follows the strided conv's ReLU, where the pool was."]
    if variant.name == "large-all-cnn":
        return [f"LeakyReLU slope {LEAKY_SLOPE} (Table 5 gives none); dropout after each unstrided "
                "conv at its group's rate; a 1x1 conv 'classifier' maps 1920 -> classes."]
    if variant.name == "imagenet":
        return ["227x227 crops with unpadded strided convs give 55-27-13-6, the paper's 6x6 "
                "global average (the paper's 224 cannot reach 6x6 without extra padding)."]
    return []


def render_net(variant: Variant, opts: NetOptions = NetOptions()) -> str:
    """Return the prototxt text of ``variant``; it is parsed once as a NetParameter to check it."""
    opts = _family_defaults(variant, opts)
    context = dict(variant=variant, io=dict(deploy=opts.deploy, deploy_batch=opts.deploy_batch,
                                            batch_size=opts.batch_size,
                                            test_batch_size=opts.test_batch_size,
                                            train_source=opts.train_source,
                                            test_source=opts.test_source,
                                            transform=_transforms(variant)),
                   num_classes=opts.num_classes, init=opts.init, notes=_notes(variant),
                   leaky_slope=LEAKY_SLOPE, stage_widths=STAGE_WIDTHS,
                   base_kernels=BASE_STAGES.get(variant.base, ()),
                   downsampling=DOWNSAMPLING.get(variant.family, ""))
    text = re.sub(r"\n{3,}", "\n\n", _ENV.get_template(variant.template).render(**context))
    parse_net(text, f"<{variant.name}>")
    return text


def render_solver(variant: Variant, net_opts: NetOptions, opts: SolverOptions) -> str:
    """Return the solver prototxt of the paper's schedule for ``variant`` (Section 3.2 / Table 6)."""
    net_opts = _family_defaults(variant, net_opts)
    if variant.name == "imagenet":
        context = dict(lr_policy="step", gamma=0.1, stepvalues=[], stepsize=200_000,
                       base_lr=opts.base_lr or 0.01, weight_decay=0.0005, max_iter=450_000,
                       test_iter=math.ceil(50_000 / net_opts.test_batch_size),
                       test_interval=10_000, snapshot=50_000, display=100,
                       schedule_note="Table 6: 450,000 iterations of batch 64, lr 0.01 / 10 "
                                     "every 200,000, weight decay 0.0005.")
    else:
        per_epoch = (opts.train_size or CIFAR_TRAIN_SIZE[net_opts.num_classes]) / net_opts.batch_size
        epochs = opts.epochs or 350
        steps = opts.step_epochs if opts.step_epochs is not None else (200, 250, 300)
        context = dict(lr_policy="multistep", gamma=0.1, stepsize=0,
                       stepvalues=[round(e * per_epoch) for e in steps],
                       base_lr=opts.base_lr or 0.01, weight_decay=0.001,
                       max_iter=round(epochs * per_epoch),
                       test_iter=math.ceil(CIFAR_TEST_SIZE / net_opts.test_batch_size),
                       test_interval=max(1, round(opts.test_every_epochs * per_epoch)),
                       snapshot=max(1, round(opts.snapshot_every_epochs * per_epoch)),
                       display=100,
                       schedule_note=f"Section 3.2: {epochs:g} epochs, lr x0.1 after epochs "
                                     f"{', '.join(f'{e:g}' for e in steps)}; "
                                     f"{per_epoch:g} iterations of batch {net_opts.batch_size} "
                                     "per epoch.")
    text = _ENV.get_template("solver.prototxt.j2").render(
        variant=variant, net_path=opts.net_path, momentum=0.9, snapshot_prefix=opts.snapshot_prefix,
        seed=opts.seed, **context)
    parse_solver(text, f"<{variant.name} solver>")
    return text
