"""replicate: train the paper's table rows through the generator and runtime, report paper vs measured."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from runtime.distributed import (SINGLE, Ranks, from_environment, launched_by_torchrun,
                                 local_device)
from harness.report import check_writable, row_result, write_row, write_table_readme
from harness.specs import SPECS_DIR, Spec, load_tables, select
from harness.loop import DeferredInterrupt, Diverged
from harness.datasets import Data, data_key
from harness.run_folder import RunFolder, run_name
from harness.train import PRECISIONS, RunOptions, check_trainable, load_data, train
from runtime.cli_support import Parser, add_device_option, resolve_device, run_cli
from runtime.errors import AllconvError

EXIT_FAIL, EXIT_STOPPED, EXIT_INTERRUPTED = 1, 3, 130


def build_parser() -> Parser:
    p = Parser(prog="replicate",
               description="Train rows of the paper's tables (reproductions/*/*.toml) through "
                           "the generated prototxt,\nthe runtime's Net and Caffe's SGD update; "
                           "write results/<table>/<row>.json and a\npaper-vs-measured "
                           "results/<table>/README.md.",
               epilog="examples:\n  replicate --list\n  replicate all-cnn-c\n"
                      "  replicate table3 --lr-search --rows-in-parallel 2\n"
                      "  replicate all-cnn-c --epochs 5        (a SMOKE run, never a replication)\n"
                      "  replicate imagenet --data /data/imagenet --epochs 0.0001 "
                      "--eval-limit 100\n"
                      "  replicate all-cnn-c --time-limit 500 ; replicate all-cnn-c --resume\n"
                      "  torchrun --nproc_per_node 2 $(which replicate) all-cnn-c\n"
                      "  replicate table3 --lr-search --shard 0/4 ; ... ; "
                      "replicate table3 --lr-search --report\n\n"
                      "exit status: 0 done, 1 a row failed its tolerance or diverged, 2 usage or "
                      "data error,\n3 stopped by --time-limit (rerun with --resume), 130 "
                      "stopped by Ctrl-C (rerun with --resume)",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="TABLE|ROW",
                   help="a table (table3, table4, table6), a row (all-cnn-c; the variants' "
                        "aliases such as All-CNN-C work) or table/row")
    p.add_argument("--list", action="store_true", help="list the tables' rows and exit")
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
                   help="train every lr of the row's grid and keep the best by final test "
                        "error, as the paper did (it reports no validation split)")
    g.add_argument("--lr", type=float, help="train at this lr instead of the spec's")
    g.add_argument("--epochs", type=float, metavar="N",
                   help="train this many epochs; fewer than the spec's makes a SMOKE run")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="train at this batch instead of the spec's (a SMOKE run)")
    g.add_argument("--eval-limit", type=int, metavar="N",
                   help="evaluate on the first N test images only (a SMOKE run)")
    g.add_argument("--eval-every", type=float, default=1.0, metavar="EPOCHS",
                   help="evaluate every this many epochs (default 1)")
    g.add_argument("--checkpoint-every", type=int, default=10, metavar="EVALS",
                   help="checkpoint at every this many evaluations and at the end (default 10)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="fp32 (TF32 off, Caffe-exact), tf32, or bf16 autocast; auto: bf16 on "
                        "CUDA, fp32 on the CPU")
    add_device_option(g, "cuda, cuda:1 or cpu (default: cuda when available)")
    g.add_argument("--seed", type=int, default=0, help="solver random_seed and data order seed")
    g.add_argument("--resume", action="store_true",
                   help="continue each run from its last checkpoint in --out")
    g.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop each run at its first checkpoint past this much training time")
    g.add_argument("--rows-in-parallel", type=int, default=1, metavar="K",
                   help="train K runs (rows, or lrs of a grid) at once, in processes sharing "
                        "the device")
    g.add_argument("--batch-per-process", action="store_true",
                   help="under torchrun: each process takes the spec's batch, so the "
                        "effective batch is N times larger (Caffe's multi-GPU semantics); "
                        "by default the spec's batch is the global batch, split over the N "
                        "processes")
    g = p.add_argument_group("sweeps over machines")
    g.add_argument("--shard", metavar="K/N",
                   help="train only every N-th run of the (row, lr) list, in --list order, "
                        "starting at the K-th (K = 0..N-1); writes run folders, not tables")
    g.add_argument("--report", action="store_true",
                   help="train nothing: read the run folders under --out, keep each row's "
                        "best finished lr, mark rows whose grid is incomplete, write results")
    g = p.add_argument_group("speed levers (CUDA; on by default there: the fastest set an H200 "
                             "measured, see README)")
    g.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    g.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction,
                   help="torch.compile with mode reduce-overhead (CUDA graphs); default: on "
                        "with CUDA, off on the CPU")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC weights and batches; default: on with CUDA, off on the CPU")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                   help="results folder (default: results/)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    return p


def list_rows(tables: dict[str, list[Spec]]) -> str:
    lines = [f"{'row':<28} {'model':<30} {'dataset':<9} {'augmentation':<21} "
             f"{'paper %':>7} {'tol':>4} {'lr':>5} {'batch':>5}  length"]
    for specs in tables.values():
        for s in specs:
            t = s.training
            lines.append(f"{s.key:<28} {s.title:<30} {s.dataset.name:<9} {s.augmentation:<21} "
                         f"{s.paper.error:>7.2f} {s.paper.tolerance:>4g} {t.lr:>5g} "
                         f"{t.batch_size:>5}  {t.length:g} {t.unit}s")
    return "\n".join(lines)


def _check_args(args) -> None:
    if args.lr is not None and args.lr_search:
        raise AllconvError("--lr conflicts with --lr-search: give one")
    for name in ("epochs", "eval_every", "checkpoint_every", "rows_in_parallel", "lr",
                 "time_limit", "batch_size", "eval_limit"):
        value = getattr(args, name)
        if value is not None and value <= 0 and not (name == "time_limit" and value == 0):
            raise AllconvError(f"--{name.replace('_', '-')} must be positive, not {value:g}")
    if args.report and args.shard:
        raise AllconvError("--report reads what the shards wrote: give it without --shard")
    if launched_by_torchrun() and args.rows_in_parallel > 1:
        raise AllconvError("--rows-in-parallel cannot be used under torchrun, which already "
                           "runs one run on several processes")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise AllconvError(f"--shard wants K/N, such as 0/4, not {text!r}") from None
    if not 0 <= k < n:
        raise AllconvError(f"--shard {text}: K must be in 0..N-1 and N at least 1")
    return k, n


def run_job(spec: Spec, opts: RunOptions, run_dir: Path, data: Data | None = None,
            ranks: Ranks = SINGLE) -> dict:
    """Train one (row, lr); a divergence is reported and returned as ``{'diverged': message}``,
    a Ctrl-C (after its checkpoint) as ``{'interrupted': True}``; in a worker process that a
    Ctrl-C has reached, no further job starts."""
    if DeferredInterrupt.stopping:
        return {"interrupted": True}
    try:
        return train(spec, opts, run_dir, data, ranks)
    except Diverged as err:
        print(f"replicate: {err}", file=sys.stderr)
        return {"diverged": str(err)}
    except KeyboardInterrupt:
        return {"interrupted": True}


def run_jobs(jobs: list[tuple[Spec, RunOptions, Path]], parallel: int,
             ranks: Ranks = SINGLE) -> list[dict]:
    """Run the jobs one after another in this process (sharing each dataset's device copy), or
    ``parallel`` at a time in spawned processes. A Ctrl-C stops every running job after its
    iteration (each checkpoints) and starts no other."""
    if parallel == 1:
        loaded = {}
        results = []
        for spec, opts, run_dir in jobs:
            if data_key(spec) not in loaded:
                loaded[data_key(spec)] = load_data(spec, opts, resolve_device(opts.device))
            results.append(run_job(spec, opts, run_dir, loaded[data_key(spec)], ranks))
            if results[-1].get("interrupted"):
                break
        return results
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                             initializer=DeferredInterrupt.install) as pool:
        futures = [pool.submit(run_job, spec, replace(opts, position=i % parallel), run_dir)
                   for i, (spec, opts, run_dir) in enumerate(jobs)]

        def stop(signum, frame):   # Ctrl-C: no new job; the running ones checkpoint and stop
            for future in futures:
                future.cancel()
            for process in list(pool._processes.values()):
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
        previous = signal.signal(signal.SIGINT, stop)
        try:
            return [{"interrupted": True} if f.cancelled() else f.result() for f in futures]
        finally:
            signal.signal(signal.SIGINT, previous)


def default_levers(args) -> dict[str, bool]:
    """--cuda-graphs and --channels-last as given, else on with CUDA: together they trained
    All-CNN-C 2.84x faster than the eager baseline on an H200, where either alone was not
    measured and channels-last alone was slower than eager (results/benchmarks/)."""
    cuda = resolve_device(args.device).type == "cuda"
    return {name: cuda if getattr(args, name) is None else getattr(args, name)
            for name in ("cuda_graphs", "channels_last")}


def job_list(args, specs: list[Spec]) -> list[tuple[Spec, RunOptions, Path]]:
    """Every (row, lr) run of the command, in --list order, with its run folder."""
    jobs = []
    for spec in specs:
        smoke = spec.is_smoke(args.epochs, args.batch_size, args.eval_limit)
        for lr in spec.training.lr_grid if args.lr_search else [args.lr or spec.training.lr]:
            opts = RunOptions(lr=lr, epochs=args.epochs, precision=args.precision,
                              device=args.device, seed=args.seed, eval_every=args.eval_every,
                              checkpoint_every=args.checkpoint_every, data_dir=args.data,
                              verify=args.verify, resume=args.resume,
                              time_limit=args.time_limit, compile=args.compile,
                              **default_levers(args),
                              progress=args.progress, batch_per_process=args.batch_per_process,
                              batch_size=args.batch_size, eval_limit=args.eval_limit)
            run_dir = args.out / spec.table / spec.name / run_name(lr, args.seed, smoke)
            jobs.append((spec, opts, run_dir))
    return jobs


def _selected_specs(args, tables) -> list[Spec]:
    """The targets' rows; one that cannot run (its data missing, or a smoke result that would
    replace a full one) is an error before any row trains (exit status 2), whether named on its
    own or in its table."""
    specs = select(args.targets, tables)
    if not args.report:
        for spec in specs:
            check_trainable(spec, args.data)
            if args.shard is None:
                check_writable(args.out, spec.table, spec.name,
                               spec.is_smoke(args.epochs, args.batch_size, args.eval_limit))
    return specs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)
    shard, shards = parse_shard(args.shard)
    tables = load_tables(args.specs)
    if args.list:
        print(list_rows(tables))
        return 0
    if not args.targets:
        raise AllconvError(f"name a table or row, or --list; tables: {', '.join(tables)}")
    ranks = SINGLE
    if launched_by_torchrun():
        device = local_device(resolve_device(args.device))
        args.device = str(device)
        ranks = from_environment(device)
    specs = _selected_specs(args, tables)
    jobs = job_list(args, specs)
    if args.report:
        results = [RunFolder(run_dir).outcome() for _, _, run_dir in jobs]
    else:
        mine = jobs[shard::shards]
        results = run_jobs(mine, args.rows_in_parallel, ranks)
        if any(r.get("interrupted") for r in results):
            if ranks.is_main:
                print("replicate: stopped by Ctrl-C; the running runs wrote their checkpoints, "
                      "rerun with --resume to continue", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not ranks.is_main:
            return 0
        if shards > 1:
            print(f"replicate: shard {shard}/{shards} trained {len(mine)} of {len(jobs)} runs "
                  f"under {args.out}; when every shard is done, the same command with --report "
                  "instead of --shard writes the tables", file=sys.stderr)
            return 0
    return _write_results(args, argv, tables, specs, jobs, results)


def _write_results(args, argv, tables, specs, jobs, results) -> int:
    by_row: dict[str, dict[float, dict]] = {}
    for (spec, opts, _), result in zip(jobs, results):
        by_row.setdefault(spec.key, {})[opts.lr] = result
    code = 0
    command = "replicate " + " ".join(sys.argv[1:] if argv is None else argv)
    for spec in specs:
        runs = by_row[spec.key]
        stopped = [r for r in runs.values() if r.get("finished") is False]
        if stopped:
            print(f"replicate: {spec.key} stopped by --time-limit at epoch "
                  f"{min(r['epoch'] for r in stopped):.2f}; rerun with --resume to continue",
                  file=sys.stderr)
            code = EXIT_STOPPED
            continue
        missing = {lr: r["missing"] for lr, r in runs.items() if "missing" in r}
        done = {lr: r for lr, r in runs.items() if "missing" not in r}
        if not done:
            print(f"replicate: {spec.key}: no run finished yet", file=sys.stderr)
            continue
        smoke = spec.is_smoke(args.epochs, args.batch_size, args.eval_limit)
        result = row_result(spec, done, smoke, args.lr_search, command)
        if missing:
            result["incomplete_grid"] = {f"{lr:g}": why for lr, why in missing.items()}
            result["status"] = "INCOMPLETE"
        path = write_row(args.out, result)
        print(f"replicate: {spec.key}: {result['status']}, wrote {path}", file=sys.stderr)
        if result["status"] == "FAIL" and code == 0:
            code = EXIT_FAIL
    for table in dict.fromkeys(spec.table for spec in specs):
        print(write_table_readme(args.out, table, tables[table]))
    return code


def entry_point() -> None:
    sys.exit(run_cli(main, "replicate"))


if __name__ == "__main__":
    entry_point()
