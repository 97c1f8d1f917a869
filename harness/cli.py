"""replicate: train the paper's table rows through the generator and runtime, report paper vs
measured."""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from harness.datasets import check_trainable
from harness.jobs import (CUDA_PACK, check_lengths, check_runs_kept, default_pack,
                          end_with_parent, job_list, parse_shard, resumed_apart, run_jobs)
from harness.loop import DeferredInterrupt, format_epoch
from harness.report import (other_runs, read_row, result_path_for, row_outcomes, row_result,
                            write_row, write_table_readme)
from harness.run import PRECISIONS
from harness.run_folder import RunFolder, length_settings
from harness.specs import SPECS_DIR, Spec, load_tables, select
from runtime.cli_support import (Parser, add_device_option, add_version, comma_list, number,
                                  option_name, options_off_default, resolve_device, run_command,
                                  Signalled)
from runtime.distributed import (SINGLE, from_environment, launched_by_torchrun, leave,
                                 local_device, said_once)
from runtime.errors import AllconvError
from runtime.files import check_folder_writable
from runtime.limits import SEED_WHY, UINT32_MAX

EXIT_FAIL, EXIT_STOPPED = 1, 3
PACK_ROUTES = ("grouped", "streams")
# What --report, which trains nothing, refuses: the options that only change training.
# The table is made of every run of the command's length settings, whatever lr, seed, data or
# precision they trained with: those options too would do nothing.
TRAINING_ONLY = ("lr", "seed", "data", "verify", "precision", "eval_every", "device",
                 "resume", "time_limit", "deadline", "pack", "pack_route", "rows_in_parallel",
                 "compile", "cuda_graphs", "channels_last", "batch_per_process",
                 "checkpoint_every")


def build_parser() -> Parser:
    p = Parser(prog="replicate",
               description="Train rows of the paper's tables (reproductions/*/*.toml) through "
                           "the generated prototxt,\nthe runtime's Net and Caffe's SGD update; "
                           "write <out>/<table>/<row>.json and a\npaper-vs-measured "
                           "<out>/<table>/README.md (--out, default runs/).",
               epilog="examples:\n  replicate --list\n  replicate all-cnn-c\n"
                      "  replicate table3 --lr-search --rows-in-parallel 2\n"
                      "  replicate all-cnn-c --epochs 5        (a SMOKE run, never a replication)\n"
                      "  replicate imagenet --data /data/imagenet --epochs 0.0001 "
                      "--eval-limit 100\n"
                      "  replicate all-cnn-c --lr 0.05 --seed 0,1,2 --pack 3\n"
                      "  replicate all-cnn-c --deadline 500 ; replicate all-cnn-c --resume\n"
                      "  torchrun --nproc_per_node 2 $(which replicate) all-cnn-c\n"
                      "  replicate table3 --lr-search --shard 0/4 ; ... ; "
                      "replicate table3 --lr-search --report\n\n"
                      "exit status: 0 done, 1 a row failed its tolerance or none of its "
                      "runs finished (all\ndiverged), 2 usage or data error, 3 stopped by "
                      "--time-limit or --deadline (rerun with --resume),\n128 + the "
                      "signal's number stopped by a signal: 130 Ctrl-C, 143 SIGTERM, "
                      "129 SIGHUP (rerun with --resume)",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    p.add_argument("targets", nargs="*", metavar="TABLE|ROW",
                   help="a table (table3, table4, table6), a row (all-cnn-c; the variants' "
                        "aliases such as All-CNN-C work) or table/row")
    p.add_argument("--list", action="store_true",
                   help="list the rows (of the tables or rows named; default all) and exit")
    p.add_argument("--specs", metavar="DIR", type=Path, default=SPECS_DIR,
                   help="folder of table folders of row specs (default: reproductions/)")
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="DIR",
                   help="folder holding the CIFAR release (default: the XDG cache, "
                        "downloaded when online); for ImageNet (table6) an ImageFolder tree "
                        "DIR/train/<wnid>/*.JPEG, DIR/val/<wnid>/*.JPEG (required)")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of the CIFAR files (for hand-made test data)")
    g = p.add_argument_group("training")
    g.add_argument("--lr-search", action="store_true",
                   help="train every lr of the row's grid (at each --seed) and keep the best by "
                        "final test error, as the paper did (it reports no validation split)")
    g.add_argument("--lr", type=comma_list(number(float)), metavar="LR[,LR...]",
                   help="train at these lrs instead of the spec's (recorded as set by hand)")
    g.add_argument("--epochs", type=number(float), metavar="N",
                   help="train this many epochs; another number than the spec's (fewer, or "
                        "more than the paper trained) makes a SMOKE run")
    g.add_argument("--batch-size", type=number(int, high=UINT32_MAX), metavar="N",
                   help="train at this batch instead of the spec's (a SMOKE run)")
    g.add_argument("--eval-limit", type=number(int), metavar="N",
                   help="evaluate on the first N test images only (a SMOKE run)")
    g.add_argument("--eval-every", type=number(float), default=1.0, metavar="EPOCHS",
                   help="evaluate every this many epochs (default 1)")
    g.add_argument("--checkpoint-every", type=number(int), default=10, metavar="EVALS",
                   help="checkpoint at every this many evaluations and at the end (default 10)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="fp32 (TF32 off, Caffe-exact), tf32, or bf16 autocast; auto: bf16 on "
                        "CUDA, fp32 on the CPU")
    add_device_option(g, "cuda, cuda:1 or cpu (default: cuda when available)")
    g.add_argument("--seed", type=comma_list(number(int, "non-negative", high=UINT32_MAX,
                                                why=SEED_WHY)),
                   default=[0], metavar="S[,S...]",
                   help=f"solver random_seed and data order seed, 0..{UINT32_MAX} (Caffe's "
                        "seed is an unsigned int); a list trains each (default 0)")
    g.add_argument("--pack", type=number(int), metavar="K",
                   help="train up to K runs of a row (its lrs and seeds) as one net, each "
                        "member exactly its solo run, each with its own run folder; --pack 1 "
                        f"trains them one by one. Default: {CUDA_PACK} on CUDA (the fastest of "
                        "results/benchmarks/train_throughput_pack.json, an H200), 1 on the "
                        "CPU and under torchrun, which refuses more")
    g.add_argument("--pack-route", choices=PACK_ROUTES, default="grouped",
                   help="how a pack of more than one run trains: grouped (one net of grouped "
                        "convolutions, runtime/pack.py) or streams (K solo runs in this "
                        "process, each stepping on a CUDA stream of its own; on the CPU one "
                        "after another). Default grouped")
    g.add_argument("--resume", action="store_true",
                   help="continue each run from its last checkpoint in --out (a pack's "
                        "members resume together when their checkpoints are of one iteration, "
                        "else apart; any --pack resumes any run)")
    g.add_argument("--time-limit", type=number(float), metavar="SECONDS",
                   help="stop each run at its first checkpoint past this much training time "
                        "(summed over resumes)")
    g.add_argument("--deadline", type=number(float), metavar="SECONDS",
                   help="wall-clock limit of this command, counted from its start (data "
                        "loading and compiling included): every run stops at a checkpoint "
                        "before it, from an estimate of a step's, an evaluation's and a "
                        "checkpoint's time, and runs not started are left alone; --resume "
                        "continues")
    g.add_argument("--rows-in-parallel", type=number(int), default=1, metavar="K",
                   help="train K packs (or, with --pack 1, runs) at once, in processes sharing "
                        "the device")
    g.add_argument("--batch-per-process", action="store_true",
                   help="under torchrun: each process takes the spec's batch, so the "
                        "effective batch is N times larger (Caffe's multi-GPU semantics); "
                        "by default the spec's batch is the global batch, split over the N "
                        "processes")
    g = p.add_argument_group("sweeps over machines")
    g.add_argument("--shard", metavar="K/N",
                   help="train only every N-th run of the (row, lr, seed) list, in --list "
                        "order, starting at the K-th (K = 0..N-1); writes run folders, not "
                        "tables")
    g.add_argument("--report", action="store_true",
                   help="train nothing: read every run folder of the rows under --out (the "
                        "runs of this command's length and batch), keep each row's best lr, "
                        "its seeds' mean and its best run, mark a partial grid, write results; "
                        "the options that only change training (--resume, --deadline, "
                        "--pack...) or would choose no runs (--lr, --seed, --data...) are "
                        "refused")
    g = p.add_argument_group("speed levers (CUDA; on by default there: the fastest set an H200 "
                             "measured, see README)")
    g.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    g.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction,
                   help="the whole training step (forward, backward, update) as one CUDA "
                        "graph; default: on with CUDA, off on the CPU and under torchrun; "
                        "refused where the device is not CUDA (--device cpu, or no --device "
                        "on a machine without CUDA, where the device is the CPU)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC weights and batches; default: on with CUDA, off on the CPU")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", type=Path, default=Path("runs"),
                   help="results folder (default: runs/, made if missing; the committed GPU "
                        "runs are in results/)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    return p


def list_rows(specs: list[Spec]) -> str:
    """The rows as a table whose columns are as wide as their widest entry."""
    head = ("row", "model", "dataset", "augmentation", "paper %", "tol", "lr", "batch",
            "length")
    rows = [(s.key, s.title, s.dataset.name, s.pipeline.name, f"{s.paper.error:.2f}",
             f"{s.paper.tolerance:g}", f"{s.training.lr:g}", str(s.training.batch_size),
             f"{s.variant.schedule.length:g} {s.variant.schedule.unit}s")
            for s in specs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {4, 5, 6, 7}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join(line(r) for r in [head, *rows])


def _check_args(args, parser: Parser) -> None:
    """Options that conflict, or that would do nothing in this command, are errors."""
    if args.lr is not None and args.lr_search:
        raise AllconvError("--lr conflicts with --lr-search: give one")
    if args.list:           # it prints the rows (of --specs) and reads nothing else
        given = options_off_default(args, parser,
                                    lambda dest: dest not in ("list", "specs", "progress"))
        if given:
            raise AllconvError(f"{given[0]} does nothing with --list, which only lists the "
                               "rows: drop it")
    if args.report:
        if args.shard:
            raise AllconvError("--report reads what the shards wrote: give it without --shard")
        given = options_off_default(args, parser, TRAINING_ONLY.__contains__)
        if given:
            raise AllconvError(f"{given[0]} does nothing with --report, which trains "
                               "nothing: drop it")
    if args.pack_route != "grouped" and default_pack(args) < 2:
        raise AllconvError(f"--pack-route {args.pack_route} is how a pack of runs trains, and "
                           f"--pack is {default_pack(args)}: give --pack K with K of 2 or more")
    if args.cuda_graphs and resolve_device(args.device).type != "cuda":
        where = args.device or "this machine (torch sees no CUDA device)"
        raise AllconvError(f"--cuda-graphs does nothing on {where}: CUDA graphs need a CUDA "
                           "device; drop it")
    if launched_by_torchrun():
        if args.rows_in_parallel > 1:
            raise AllconvError("--rows-in-parallel cannot be used under torchrun, which already "
                               "runs one run on several processes")
        if args.pack is not None and args.pack > 1:
            raise AllconvError("--pack trains its runs on one process: under torchrun use "
                               "--pack 1, or a pack without torchrun")
        if args.cuda_graphs:
            raise AllconvError("--cuda-graphs captures a step without torchrun's all-reduce: "
                               "drop it under torchrun")
    elif args.batch_per_process:
        raise AllconvError("--batch-per-process does nothing without torchrun: one process "
                           "takes the spec's batch; drop it")


def fresh_starts(jobs, args) -> list[str]:
    """A note for each row with runs that --resume starts from their first iteration (their
    folders hold no checkpoint and no result), naming the row's runs of other settings, if
    any: one line a row, however many of its runs start afresh."""
    fresh: dict[str, list] = {}
    for spec, opts, run_dir in jobs:
        folder = RunFolder(run_dir)
        if opts.resume and folder.latest_checkpoint() is None and folder.result() is None:
            fresh.setdefault(spec.key, []).append((spec, opts, Path(run_dir)))
    notes = []
    for key, runs in fresh.items():
        spec, opts, run_dir = runs[0]
        others = other_runs(row_outcomes(args.out, spec, row_length(spec, args))[1])
        if len(runs) == 1:
            what = (f"{key} at lr {opts.lr:g}" + (f" seed {opts.seed}" if opts.seed else "")
                    + f" has no checkpoint in {run_dir}; it starts from the beginning when "
                    "its turn comes")
        else:
            names = ", ".join(run_dir.name for _, _, run_dir in runs)
            what = (f"{key}: {len(runs)} runs have no checkpoint in {run_dir.parent} ({names}); "
                    "they start from the beginning when their turns come")
        notes.append(f"--resume: {what}{others}")
    return notes


def _selected_specs(args, tables) -> list[Spec]:
    """The targets' rows; one that cannot run (its data missing, or a smoke result that would
    replace a full one) is an error before any row trains (exit status 2), whether named on its
    own or in its table."""
    specs = select(args.targets, tables)
    if args.report and not args.out.is_dir():
        what = "a file, not a folder" if args.out.exists() else "no such folder"
        raise AllconvError(f"--out {args.out}: {what} (--report reads the run folders "
                           "that training wrote there)")
    if not args.report:
        for spec in specs:
            check_trainable(spec, args.data)
            if args.shard is None:
                result_path_for(args.out, spec.table, spec.name,
                                spec.is_smoke(args.epochs, args.batch_size, args.eval_limit))
    return specs


def make_out(out: Path) -> list[Path]:
    """The --out folder, made once every check has passed (a refused command makes none); the
    folders it made, deepest first."""
    check_folder_writable(out, "--out")
    whole = Path(os.path.realpath(out))
    inside = next((folder for folder in [whole, *whole.parents]
                   if RunFolder(folder).has_record), None)
    if inside is not None:
        raise AllconvError(f"--out {out}: inside the run folder {inside}; give the folder "
                           "that holds the tables (the one above <table>/<row>/)")
    made = [folder for folder in [whole, *whole.parents] if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AllconvError(f"--out {out}: cannot make that folder ({err.strerror or err})") \
            from None
    return made


def unmake(folders: list[Path]) -> None:
    """Remove the folders `make_out` made where nothing was written in them (a command that
    fails before training leaves no empty --out behind)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _stop(signum, frame):
    """SIGTERM or SIGHUP outside a run's loop (which holds them to its iteration's end):
    interrupted, as Ctrl-C is there, with a line naming it and status 128 + its number (143,
    129), not a silent kill."""
    DeferredInterrupt.received = signal.Signals(signum).name
    raise Signalled(signum)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    said_once(_check_args, args, parser)
    shard, shards = parse_shard(args.shard)
    tables = load_tables(args.specs)
    if args.list:       # the rows named, or every row
        print(list_rows(select(args.targets, tables) if args.targets
                        else [s for specs in tables.values() for s in specs]))
        return 0
    if not args.targets:
        raise AllconvError(f"name a table or row, or --list; tables: {', '.join(tables)}")
    ranks = SINGLE
    if launched_by_torchrun():
        end_with_parent()       # torchrun's agent killed: its processes stop too
        device = local_device(resolve_device(args.device))
        args.device = str(device)
        ranks = from_environment(device)
    specs = _selected_specs(args, tables)
    deadline = None if args.deadline is None else started + args.deadline
    jobs = job_list(args, specs, deadline)
    if args.report:
        return _write_results(args, argv, tables, specs, jobs, [{} for _ in jobs])
    mine = jobs[shard::shards]
    trained = _train(args, mine, ranks)
    if any(r.get("interrupted") for r in trained):
        return _interrupted(mine, ranks)
    if not ranks.is_main:
        return 0
    if shards > 1:
        print(f"replicate: shard {shard}/{shards} trained {len(mine)} of {len(jobs)} runs "
              f"under {args.out}; when every shard is done, {report_command(args)} writes "
              "the tables", file=sys.stderr)
        return 0
    return _write_results(args, argv, tables, specs, jobs, trained)


def _train(args, my_jobs, ranks) -> list[dict]:
    """Train this shard's runs, checked first (their length, kept runs, other commands'
    training) with a note on each fresh start or resume; a failure removes what the command
    made of ``--out``."""
    pack = default_pack(args)
    check_lengths(my_jobs, args.data, ranks.world)
    said_once(check_runs_kept, my_jobs)
    made = make_out(args.out)
    if ranks.is_main:
        for _, _, run_dir in my_jobs:     # another command's training: said before notes
            RunFolder(run_dir).check_free()
        for note in fresh_starts(my_jobs, args) + resumed_apart(my_jobs, pack):
            print(f"replicate: {note}", file=sys.stderr)
    DeferredInterrupt.received = "SIGINT"     # until a signal of this command says more
    try:
        trained = run_jobs(my_jobs, args.rows_in_parallel, pack, ranks)
    except BaseException:
        unmake(made)
        raise
    leave(ranks)
    return trained


def _interrupted(my_jobs, ranks) -> int:
    """The exit status of a command a signal stopped (the shell's, 128 + its number), said in
    a line: whether the runs wrote checkpoints to resume from."""
    if ranks.is_main:
        by = DeferredInterrupt.by_whom()
        saved = any(RunFolder(d).latest_checkpoint() for _, _, d in my_jobs)
        print(f"replicate: stopped by {by}; the running runs wrote their checkpoints, "
              "rerun with --resume to continue" if saved else
              f"replicate: stopped by {by} before any run wrote a checkpoint; rerun "
              "the command to start", file=sys.stderr)
    return 128 + signal.Signals[DeferredInterrupt.received]


def report_command(args) -> str:
    """The --report command of this command's rows, length, batch, test subset and --out."""
    words = ["replicate", *args.targets]
    words += ["--specs", str(args.specs)] if args.specs != SPECS_DIR else []
    words += ["--lr-search"] if args.lr_search else []
    for name in ("epochs", "batch_size", "eval_limit"):
        if getattr(args, name) is not None:
            words += [option_name(name), str(getattr(args, name))]   # exactly as run.json holds it
    return shlex.join(words + ["--report", "--out", str(args.out)])


def row_length(spec: Spec, args) -> dict:
    """The run length, batch and test subset this command gives ``spec``'s runs."""
    return length_settings(spec, args.epochs, args.batch_size, args.eval_limit)


def _stopped(outcomes: list[dict]) -> str:
    """What --time-limit or --deadline did to a row's runs, in words."""
    reasons = " and ".join(sorted({"--" + r["stopped_by"].replace("_", "-") for r in outcomes}))
    epochs = sorted(r["epoch"] for r in outcomes if r["iter"] > 0)
    parts = []
    if epochs:
        reached = (f"epoch {format_epoch(epochs[0])}" if epochs[0] == epochs[-1] else
                   f"epochs {format_epoch(epochs[0])} to {format_epoch(epochs[-1])}")
        parts.append(f"{len(epochs)} run{'s' if len(epochs) > 1 else ''} at {reached}")
    if len(epochs) < len(outcomes):
        parts.append(f"{len(outcomes) - len(epochs)} not started")
    return f"stopped by {reasons} ({', '.join(parts)})"


def _write_results(args, argv, tables, specs, jobs, results) -> int:
    """Each row's result from its runs of this command's settings, then each table; a row
    without one shows as not run, and a table none of whose named rows has one is neither
    written nor printed."""
    code = 0
    command = "replicate " + " ".join(sys.argv[1:] if argv is None else argv)
    shown: dict[str, dict[str, dict | None]] = {}
    not_yet, other_settings, unfinished = [], Counter(), 0
    for spec in specs:
        row, length = shown.setdefault(spec.table, {}), row_length(spec, args)
        row[spec.name] = None
        stopped = [r for (s, _, _), r in zip(jobs, results)
                   if s.key == spec.key and r.get("finished") is False]
        if stopped:
            print(f"replicate: {spec.key} {_stopped(stopped)}; rerun with --resume to continue",
                  file=sys.stderr)
            code = EXIT_STOPPED
            earlier = read_row(args.out, spec.table, spec.name)
            if earlier is not None and earlier.get("settings") == length:
                row[spec.name] = earlier
            continue
        runs, others = row_outcomes(args.out, spec, length)
        if not any("test_error" in r or "diverged" in r for r in runs.values()):
            line, started = _none_finished(spec, runs, others)
            not_yet.append(line)
            other_settings += others
            unfinished += started
            continue
        row[spec.name] = _write_row(args, command, spec, runs, length)
        if row[spec.name]["status"] == "FAIL" and code == 0:
            code = EXIT_FAIL
    if args.report and code == 0 and not any(any(named.values()) for named in shown.values()):
        raise AllconvError(f"--out {args.out}: no finished run of {' '.join(args.targets)} at "
                           "these settings" + (f" ({unfinished} unfinished: --resume "
                                                "continues)" if unfinished else "")
                           + other_runs(other_settings))
    for line in not_yet:
        print(line, file=sys.stderr)
    for table, named in shown.items():
        if any(named.values()):
            print(write_table_readme(args.out, table, tables[table], named))
    return code


def _none_finished(spec: Spec, runs: dict, others: Counter) -> tuple[str, int]:
    """What a row none of whose runs finished says, and how many of them started."""
    started = sorted(f"lr {lr:g}" + (f" seed {seed}" if seed else "") + f" {r['missing']}"
                     for (lr, seed), r in runs.items()
                     if r.get("missing", "").startswith("unfinished"))
    said = f" ({'; '.join(started)}: --resume continues)" if started else ""
    return f"replicate: {spec.key}: no run finished yet{said}{other_runs(others)}", len(started)


def _write_row(args, command: str, spec: Spec, runs: dict, length: dict) -> dict:
    """The row's result from its finished runs of ``length``, written to its JSON and said."""
    smoke = spec.is_smoke(args.epochs, args.batch_size, args.eval_limit)
    result = row_result(spec, runs, smoke, command, length)
    path = write_row(args.out, result)
    partial = " (partial grid)" if result["partial"] else ""
    print(f"replicate: {spec.key}: {result['status']}{partial}, wrote {path}", file=sys.stderr)
    return result


def entry_point() -> None:
    for signum in set(DeferredInterrupt.handled()) - {signal.SIGINT}:   # SIGINT: Python's own
        signal.signal(signum, _stop)
    # a Ctrl-C is taken from the start as the loop takes it, even where a shell's background job
    # started us ignoring it: a torchrun process whose agent is gone gets one (end_with_parent)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_command(main, "replicate")


if __name__ == "__main__":
    entry_point()
