"""gen-prototxt: print or write the paper's networks and solvers as Caffe prototxt."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from generator.render import (GAUSSIAN_STD, WEIGHT_FILLERS, Init, NetOptions, SolverOptions,
                              constant_filler, render_net, render_solver, weight_filler)
from generator.variants import CIFAR_SCHEDULE, VARIANTS, get_variant
from runtime import prototxt
from runtime.cli_support import (Parser, add_version, comma_list, given_options, number,
                                  options_off_default, run_command)
from runtime.errors import AllconvError
from runtime.files import check_writable
from runtime.limits import SEED_WHY, UINT32_MAX
from runtime.meta import count_params, meta_net
from runtime.proto import pb

DEFAULT = Init()       # the open choices' defaults, which the options show


def _default_sources(split: int) -> str:
    """The variants' default Data sources of ``split`` (0 TRAIN, 1 TEST), for the help."""
    return ", ".join(dict.fromkeys(variant.sources[split].format(classes=classes)
                                   for variant in VARIANTS.values()
                                   for classes in variant.classes))


def _batches_help(field: str) -> str:
    """Each variant's default ``field`` (batch_size or test_batch_size), grouped, for the
    help."""
    takers: dict[int, list[str]] = {}
    for variant in VARIANTS.values():
        takers.setdefault(getattr(variant, field), []).append(variant.name)
    return "; ".join(f"{batch} for {', '.join(names)}" for batch, names in takers.items())


def _classes_help() -> str:
    """What --classes each variant takes (its first is the default), for the help."""
    takers: dict[tuple[int, ...], list[str]] = {}
    for variant in VARIANTS.values():
        takers.setdefault(variant.classes, []).append(variant.name)
    return "; ".join(f"{' or '.join(map(str, classes))} for "
                     + (names[0] if len(names) == 1 else f"the {len(names)} nets {names[0]} ... "
                        f"{names[-1]}") for classes, names in takers.items())


def build_parser() -> Parser:
    p = Parser(prog="gen-prototxt",
               description="Generate the All Convolutional Net paper's networks as Caffe prototxt.",
               epilog="examples:\n  gen-prototxt --variant convpool-c\n"
                      "  gen-prototxt --variant All-CNN-C --classes 100 -o all_c100.prototxt "
                      "--solver all_c100_solver.prototxt\n  gen-prototxt --list",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    p.add_argument("--variant", "-v", help="network name, e.g. all-c, All-CNN-C, model-a, "
                                           "large-all-cnn, imagenet (case-insensitive)")
    p.add_argument("--list", action="store_true",
                   help="list every variant with its parameter count")
    p.add_argument("-o", "--output", "--out", metavar="FILE",
                   help="write the net here instead of stdout ('-': stdout)")
    p.add_argument("--classes", type=number(int),
                   help=f"the classes scored, by default the first a variant takes: "
                        f"{_classes_help()}")
    p.add_argument("--deploy", action="store_true",
                   help="Input-layer form for inference and export (no data, loss or accuracy)")
    p.add_argument("--solver", metavar="FILE",
                   help="also write the matching solver prototxt, which names the net file "
                        "(needs -o)")
    p.add_argument("--draw", metavar="PICTURE", help="draw the net to a .png or .svg file")
    g = p.add_argument_group("data")
    g.add_argument("--batch-size", type=number(int, high=UINT32_MAX),
                   help=f"training batch (default: {_batches_help('batch_size')}); with "
                        "--deploy, the Input batch (default 1)")
    g.add_argument("--test-batch-size", type=number(int, high=UINT32_MAX),
                   help=f"test batch (default: {_batches_help('test_batch_size')})")
    g.add_argument("--train-source", help="Data layer source at TRAIN (default: the "
                                          f"variant's, {_default_sources(0)}; "
                                          "allconv-prep-cifar writes the CIFAR ones but not Large "
                                          "All-CNN's; real Caffe needs an LMDB here, which the "
                                          "runtime reads too)")
    g.add_argument("--test-source", help="Data layer source at TEST (default: the variant's, "
                                         f"{_default_sources(1)})")
    g = p.add_argument_group("initialisation (choices the paper leaves open)")
    g.add_argument("--weight-filler", choices=WEIGHT_FILLERS, default=DEFAULT.weight_filler.type,
                   help="weight filler (default %(default)s, fan-in; see README, Open choices)")
    g.add_argument("--weight-std", type=number(float),
                   help=f"std of the gaussian filler (default {GAUSSIAN_STD}; needs "
                        "--weight-filler gaussian)")
    g.add_argument("--bias-value", type=number(float, None),
                   default=DEFAULT.bias_value,
                   help="constant bias filler value (default %(default)s)")
    g.add_argument("--bias-lr-mult", type=number(float, "non-negative"),
                   default=DEFAULT.bias_lr_mult, help="biases' lr_mult (default %(default)s)")
    g.add_argument("--bias-decay-mult", type=number(float, "non-negative"),
                   default=DEFAULT.bias_decay_mult, help="biases' decay_mult (default %(default)s)")
    g = p.add_argument_group("solver (with --solver)")
    cifar = CIFAR_SCHEDULE
    g.add_argument("--base-lr", type=number(float),
                   help=f"base learning rate (default {cifar.base_lr:g})")
    g.add_argument("--epochs", type=number(float),
                   help=f"CIFAR: epochs in all (default {cifar.length:g})")
    g.add_argument("--steps", type=comma_list(number(float)),
                   help=f"CIFAR: comma-separated epochs of the x{cifar.gamma:g} steps (default "
                        f"{_epochs(cifar.steps)})")
    g.add_argument("--snapshot-prefix",
                   help="solver snapshot_prefix (default: the variant's name, in the current "
                        "directory; Caffe needs its directory to exist)")
    g.add_argument("--seed", type=number(int, "non-negative", high=UINT32_MAX, why=SEED_WHY),
                   help="solver random_seed, 0..4294967295 (default: none, so Caffe seeds from "
                        "the clock)")
    return p


def _init(args) -> Init:
    return Init(weight_filler=weight_filler(args.weight_filler, args.weight_std),
                bias_filler=constant_filler(args.bias_value),
                bias_lr_mult=args.bias_lr_mult, bias_decay_mult=args.bias_decay_mult)


def _check_conflicts(args, parser) -> None:
    if args.list:
        given = options_off_default(args, parser, lambda dest: dest not in ("version", "list"))
        if given:
            raise AllconvError(f"--list lists the variants and writes no net: {given[0]} does "
                               "nothing with it")
    if not args.list and not args.variant:
        raise AllconvError("--variant is required (or --list); valid variants: "
                           + ", ".join(VARIANTS))
    files = [(f"--{name}", path) for name, path in
             (("output", args.output), ("solver", args.solver), ("draw", args.draw)) if path]
    for i, (first, path) in enumerate(files):
        same = [name for name, other in files[i + 1:]
                if os.path.abspath(other) == os.path.abspath(path)]
        if same:
            raise AllconvError(f"{first} and {same[0]} are the same file ({path}): give each "
                               "its own")
    if args.deploy and args.solver:
        raise AllconvError("--deploy conflicts with --solver: a deploy net cannot be trained")
    _check_options_do_something(args)
    _check_schedule(args)


# options that only shape the solver, and those a deploy net has no place for
SOLVER_OPTIONS = ("base_lr", "epochs", "steps", "snapshot_prefix", "seed")
TRAINING_NET_OPTIONS = ("test_batch_size", "train_source", "test_source")
CIFAR_SCHEDULE_OPTIONS = ("epochs", "steps")


def _check_options_do_something(args) -> None:
    """An option that would change nothing in this context is an error saying so."""
    given = given_options(args, SOLVER_OPTIONS)
    if given and not args.solver:
        raise AllconvError(f"{given[0]} only affects the solver, and no --solver FILE "
                           "is written")
    given = given_options(args, TRAINING_NET_OPTIONS)
    if given and args.deploy:
        raise AllconvError(f"{given[0]} does nothing with --deploy (a deploy net has no "
                           "Data layers)")
    if args.weight_std is not None and args.weight_filler != "gaussian":
        raise AllconvError(f"--weight-std sets the gaussian filler's std; it does nothing with "
                           f"--weight-filler {args.weight_filler} (add --weight-filler gaussian)")
    given = given_options(args, CIFAR_SCHEDULE_OPTIONS)
    variant = get_variant(args.variant) if given and args.variant else None
    if variant and variant.schedule.unit == "iteration":
        sched = variant.schedule
        raise AllconvError(f"{given[0]} does nothing for {variant.name}: its solver "
                           f"follows {sched.source} ({sched.length:,.0f} iterations)")


def _check_schedule(args) -> None:
    """--steps increasing (their parser takes positive epochs only; ``check_solver_length``
    checks that they fall inside the run, on the rendered solver)."""
    steps = args.steps or ()
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise AllconvError(f"--steps must increase, not {_epochs(steps)}")


def _epochs(values) -> str:
    """Epoch numbers as the --steps option takes them: ``200,250,300``."""
    return ",".join(f"{v:g}" for v in values)


def _warn_uneven_test(variant, batch: int) -> None:
    """A test batch that does not divide the test set: Caffe's Data layer wraps around, so
    the solver's test_iter batches test some images twice; said, not refused."""
    extra = -variant.test_size % batch
    if extra:
        tested = variant.test_size + extra
        warnings.warn(f"the test batch {batch} does not divide the {variant.test_size:,} test "
                      f"images: test_iter {tested // batch} tests {tested:,}, the first "
                      f"{extra} twice (a divisor, such as 100, tests each once)", stacklevel=2)


def check_solver_length(solver_text: str) -> None:
    """The rendered solver runs at least one iteration and every lr step lies inside it."""
    solver = prototxt.parse_solver(solver_text)
    if solver.max_iter < 1:
        raise AllconvError(f"the run is less than one iteration (max_iter {solver.max_iter}): "
                           "give more --epochs or a smaller --batch-size")
    steps = list(solver.stepvalue)
    if steps and steps[0] < 1:
        raise AllconvError("an lr step lies before the first iteration (stepvalue 0): give "
                           "--steps of at least one iteration's share of an epoch")
    same = [v for i, v in enumerate(steps) if v in steps[:i]]
    if same:
        raise AllconvError(f"two lr steps fall on one iteration (stepvalue {same[0]}): give "
                           "--steps at least an iteration apart")
    late = [v for v in steps if v >= solver.max_iter]
    if late:
        raise AllconvError(f"an lr step lies beyond the run: stepvalue {late[0]} is not before "
                           f"max_iter {solver.max_iter}; give --steps inside --epochs (default "
                           f"steps: epochs {_epochs(CIFAR_SCHEDULE.steps)} of "
                           f"{CIFAR_SCHEDULE.length:g})")


def list_variants() -> str:
    """One line per registry entry; counts come from the runtime's layers on the meta device."""
    lines = [f"{'variant':<15} {'paper name':<18} {'table':<11} {'input':>7} {'parameters':>12}"]
    for v in VARIANTS.values():
        net = meta_net(render_net(v, NetOptions(deploy=True)), pb.TEST)
        size = f"{v.input_size}x{v.input_size}"
        lines.append(f"{v.name:<15} {v.title:<18} {v.table:<11} {size:>7} {count_params(net):>12,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_conflicts(args, parser)
    if args.list:
        print(list_variants())
        return 0
    variant = get_variant(args.variant)
    opts = NetOptions(num_classes=args.classes, deploy=args.deploy,
                      deploy_batch=args.batch_size or 1, batch_size=args.batch_size,
                      test_batch_size=args.test_batch_size, train_source=args.train_source,
                      test_source=args.test_source, init=_init(args))
    text = render_net(variant, opts)
    to_stdout = args.output == "-"          # as Unix commands read it; also beside --draw
    if to_stdout and args.solver:
        raise AllconvError("--solver needs -o FILE, not -o - (stdout): the solver's net: line "
                           "names the file the net is written to")
    if to_stdout:
        args.output = None
    if args.solver:             # rendered and checked before anything is written
        if not args.output:
            raise AllconvError("--solver needs -o: the solver's net: line names the file the "
                               "net is written to")
        solver = render_solver(variant, opts, SolverOptions(
            net_path=args.output, base_lr=args.base_lr, epochs=args.epochs,
            step_epochs=tuple(args.steps) if args.steps else None,
            snapshot_prefix=args.snapshot_prefix or variant.name,
            seed=args.seed))
        check_solver_length(solver)
        _warn_uneven_test(variant, args.test_batch_size or variant.test_batch_size)
    written = [p for p in (args.output, args.solver, args.draw) if p]
    for path in written:        # all or nothing: every path checked, the picture drawn first
        check_writable(path)
    if args.draw:
        from generator.draw import draw
        phase = pb.TEST if args.deploy else pb.TRAIN
        draw(meta_net(text, phase, variant.data_shape()[1:]),
             f"{variant.title}, {'deploy net' if args.deploy else 'TRAIN phase'}", args.draw)
    if args.output:
        prototxt.write_text(text, args.output)
    elif to_stdout or not args.draw:        # a picture alone was asked for, not the text
        sys.stdout.write(text)
    if args.solver:
        prototxt.write_text(solver, args.solver)
    if written:
        print(f"wrote {', '.join(str(Path(p)) for p in written)}", file=sys.stderr)
    return 0


def entry_point() -> None:
    run_command(main, "gen-prototxt")


if __name__ == "__main__":
    entry_point()
