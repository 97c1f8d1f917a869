"""Render a variant's net (and solver) from the Jinja templates, and check it parses as Caffe's."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import jinja2
from google.protobuf import text_encoding

from generator.variants import Variant
from runtime.errors import AllconvError
from runtime.limits import INT_MAX
from runtime.prototxt import parse_net, parse_solver

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def _plain_number(value):
    """Print integral floats as integers (lr_mult: 2, not 2.0); everything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Rendered(NamedTuple):
    """A rendered prototxt: its text and that text parsed, once, as Caffe's message
    (``NetParameter`` or ``SolverParameter``)."""

    text: str
    param: object


_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), finalize=_plain_number,
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
# a string field's text as protobuf's text format escapes it (a path may hold \\ or ")
_ENV.filters["escaped"] = lambda text: text_encoding.CEscape(str(text), as_utf8=True)

@dataclass(frozen=True)
class Filler:
    """A Caffe FillerParameter as (type, [(field, value), ...])."""

    type: str
    fields: tuple[tuple[str, object], ...] = ()


WEIGHT_FILLERS = ("xavier", "msra", "gaussian")     # the weight fillers gen-prototxt names
GAUSSIAN_STD = 0.01


def weight_filler(kind: str, std: float | None = None) -> Filler:
    """One of `WEIGHT_FILLERS`: xavier and msra at fan-in, gaussian of ``std`` (default
    `GAUSSIAN_STD`)."""
    if kind == "gaussian":
        return Filler(kind, (("std", GAUSSIAN_STD if std is None else std),))
    return Filler(kind, (("variance_norm", "FAN_IN"),))


def constant_filler(value: float) -> Filler:
    return Filler("constant", (("value", value),))


@dataclass(frozen=True)
class Init:
    """The open choices: fillers and the ParamSpec multipliers of weights and biases."""

    weight_filler: Filler = weight_filler("xavier")
    bias_filler: Filler = constant_filler(0)
    weight_lr_mult: float = 1
    weight_decay_mult: float = 1
    bias_lr_mult: float = 2
    bias_decay_mult: float = 0

    @property
    def bias_value(self) -> float:
        """The constant bias filler's value."""
        return dict(self.bias_filler.fields)["value"]


@dataclass(frozen=True)
class NetOptions:
    """Everything besides the variant that shapes the rendered net."""

    num_classes: int | None = None          # None: the variant's default (first of its classes)
    deploy: bool = False
    deploy_batch: int = 1
    batch_size: int | None = None           # None: the variant's default
    test_batch_size: int | None = None
    train_source: str | None = None
    test_source: str | None = None
    init: Init = field(default_factory=Init)


@dataclass(frozen=True)
class SolverOptions:
    """The training schedule. Epoch-based schedules are converted to iterations; an iteration
    schedule (Table 6) keeps its own unless ``epochs`` or the test or snapshot interval are given
    (the harness's shorter runs), which are converted alike."""

    net_path: str
    base_lr: float | None = None
    epochs: float | None = None
    step_epochs: tuple[float, ...] | None = None
    test_every_epochs: float | None = None       # None: the variant's schedule's
    snapshot_every_epochs: float | None = None   # None: the variant's schedule's
    snapshot_prefix: str = "net"
    seed: int | None = None
    train_size: int | None = None        # images per epoch; None: the variant's dataset's


def _with_defaults(variant: Variant, opts: NetOptions) -> NetOptions:
    """``opts`` with the variant's class count, batch sizes and sources where they are None."""
    classes = variant.check_classes(opts.num_classes)
    train, test = (s.format(classes=classes) for s in variant.sources)
    return replace(opts, num_classes=classes, batch_size=opts.batch_size or variant.batch_size,
                   test_batch_size=opts.test_batch_size or variant.test_batch_size,
                   train_source=opts.train_source or train, test_source=opts.test_source or test)


def render_net(variant: Variant, opts: NetOptions = NetOptions()) -> str:
    """Return the prototxt text of ``variant``; it is parsed once as a NetParameter to check it."""
    return rendered_net(variant, opts).text


def rendered_net(variant: Variant, opts: NetOptions = NetOptions()) -> Rendered:
    """The prototxt of ``variant`` and the NetParameter it parses to."""
    opts = _with_defaults(variant, opts)
    transform = {phase: variant.transform.fields(phase) for phase in ("TRAIN", "TEST")}
    context = dict(variant=variant, io=dict(deploy=opts.deploy, deploy_batch=opts.deploy_batch,
                                            batch_size=opts.batch_size,
                                            test_batch_size=opts.test_batch_size,
                                            train_source=opts.train_source,
                                            test_source=opts.test_source, transform=transform),
                   num_classes=opts.num_classes, init=opts.init, notes=variant.notes,
                   layers=variant.layers)
    text = re.sub(r"\n{3,}", "\n\n", _ENV.get_template(variant.template).render(**context))
    return Rendered(text, parse_net(text, f"<{variant.name}>"))


def _schedule_context(variant: Variant, net_opts: NetOptions, opts: SolverOptions) -> dict:
    """The solver's iteration counts (``_schedule_counts``), a test and a snapshot interval
    longer than the run cut to its length, so that a short run tests and snapshots at its end."""
    context = _schedule_counts(variant, net_opts, opts)
    for interval in ("test_interval", "snapshot"):
        context[interval] = min(context[interval], max(1, context["max_iter"]))
    return context


def _iterations(epochs: float, per_epoch: float) -> int:
    """``epochs`` as the nearest whole number of iterations; an AllconvError past a float."""
    iterations = epochs * per_epoch
    if not math.isfinite(iterations):   # an epoch count near 1e308
        raise AllconvError(f"{epochs:g} epochs are more iterations than a float holds, "
                           f"let alone Caffe's int32 max_iter ({INT_MAX:,})")
    return round(iterations)


def _schedule_counts(variant: Variant, net_opts: NetOptions, opts: SolverOptions) -> dict:
    """The solver's iteration counts: an epoch schedule converted at the batch size, or an
    iteration schedule as the paper gives it."""
    sched = variant.schedule
    common = dict(lr_policy=sched.lr_policy, gamma=sched.gamma,
                  base_lr=opts.base_lr or sched.base_lr,
                  weight_decay=sched.weight_decay, display=100,
                  test_iter=math.ceil(variant.test_size / net_opts.test_batch_size))
    per_epoch = (opts.train_size or variant.train_size) / net_opts.batch_size
    if sched.unit == "iteration":
        def iterations(epochs: float | None, default: float, least: int = 1) -> int:
            return (round(default) if epochs is None else
                    max(least, _iterations(epochs, per_epoch)))
        # below one iteration: 0, which the callers refuse as for epoch schedules
        max_iter = iterations(opts.epochs, sched.length, least=0)
        return dict(common, stepvalues=[], stepsize=round(sched.steps[0]), max_iter=max_iter,
                    test_interval=iterations(opts.test_every_epochs, sched.test_every),
                    snapshot=iterations(opts.snapshot_every_epochs, sched.snapshot_every),
                    schedule_note=f"{sched.source}: {max_iter:,} iterations of batch "
                                  f"{net_opts.batch_size}, lr x{sched.gamma:g} every "
                                  f"{sched.steps[0]:,.0f}.")
    epochs = opts.epochs or sched.length
    steps = opts.step_epochs if opts.step_epochs is not None else sched.steps
    return dict(common, stepsize=0, stepvalues=[_iterations(e, per_epoch) for e in steps],
                max_iter=_iterations(epochs, per_epoch),
                test_interval=max(1, _iterations(opts.test_every_epochs or sched.test_every,
                                                 per_epoch)),
                snapshot=max(1, _iterations(opts.snapshot_every_epochs or sched.snapshot_every,
                                            per_epoch)),
                schedule_note=f"{sched.source}: {epochs:g} epochs, lr x{sched.gamma:g} after "
                              f"epochs {', '.join(f'{e:g}' for e in steps)}; "
                              f"{per_epoch:g} iterations of batch {net_opts.batch_size} "
                              "per epoch.")


def render_solver(variant: Variant, net_opts: NetOptions, opts: SolverOptions) -> str:
    """Return the solver prototxt of the paper's schedule for ``variant`` (its ``schedule``)."""
    return rendered_solver(variant, net_opts, opts).text


def rendered_solver(variant: Variant, net_opts: NetOptions, opts: SolverOptions) -> Rendered:
    """The solver prototxt of ``variant`` and the SolverParameter it parses to."""
    context = _schedule_context(variant, _with_defaults(variant, net_opts), opts)
    if context["max_iter"] > INT_MAX:
        wanted = context["max_iter"]
        shown = f"{wanted:,}" if wanted < 10**15 else f"{wanted:.3g}"
        raise AllconvError(f"the solver's max_iter would be {shown} iterations, more than "
                           f"Caffe's int32 field holds ({INT_MAX:,}): give fewer epochs")
    text = _ENV.get_template("solver.prototxt.j2").render(
        variant=variant, net_path=opts.net_path, momentum=variant.schedule.momentum,
        snapshot_prefix=opts.snapshot_prefix,
        seed=opts.seed, **context)
    return Rendered(text, parse_solver(text, f"<{variant.name} solver>"))
