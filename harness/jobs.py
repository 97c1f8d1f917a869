"""The runs a replicate command trains: their list (`job_list`, one per row, lr and seed),
a --shard's part of it, the checks made before any trains, how they group into packs, and
the pool that trains the packs one after another or in parallel processes (`run_jobs`)."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

from harness.datasets import Data, data_key, train_size
from harness.loop import DeferredInterrupt
from harness.run import RunOptions, check_length, run_data, snapshot_iteration
from harness.run_folder import RunFolder, resume_points, row_folder, run_name
from harness.specs import Spec
from harness.train import train_pack
from runtime.cli_support import command_prog, resolve_device, speak_as
from runtime.distributed import SINGLE, Ranks, launched_by_torchrun
from runtime.errors import AllconvError

# --pack's default on CUDA: the fastest K of results/benchmarks/train_throughput_pack.json (an
# H200, 2026-12-04, All-CNN-C at bf16 with the whole-step CUDA graph and channels-last): packs
# of 2, 4 and 8 trained 0.82x, 0.92x and 1.00x the images/s of solo runs one after another, and
# the 10-epoch slices put a pack of the 4-lr grid at 4.39x one solo run. Packing runs as grouped
# convolutions does not fill the chip faster than one run does, so runs train one by one.
CUDA_PACK = 1


def default_levers(args) -> dict[str, bool]:
    """--cuda-graphs and --channels-last as given, else on with CUDA (CUDA graphs not under
    torchrun): together they trained All-CNN-C 2.84x faster than the eager baseline on an
    H200, where either alone was not measured and channels-last alone was slower than eager
    (results/benchmarks/)."""
    cuda = resolve_device(args.device).type == "cuda"
    defaults = {"cuda_graphs": cuda and not launched_by_torchrun(), "channels_last": cuda}
    return {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in defaults.items()}


def default_pack(args) -> int:
    """--pack as given, else CUDA_PACK on CUDA (1 under torchrun) and 1 on the CPU."""
    if args.pack is not None:
        return args.pack
    cuda = resolve_device(args.device).type == "cuda"
    return CUDA_PACK if cuda and not launched_by_torchrun() else 1


def job_list(args, specs: list[Spec], deadline: float | None = None) -> list[tuple]:
    """Every (row, lr, seed) run of the command, in --list order (lr, then seed), with its
    run folder."""
    jobs, lr_of = [], {}
    for spec in specs:
        smoke = spec.is_smoke(args.epochs, args.batch_size, args.eval_limit)
        lrs, lr_from = ((spec.training.lr_grid, "grid") if args.lr_search else
                        (args.lr, "--lr") if args.lr else ([spec.training.lr], "spec"))
        for lr in lrs:
            for seed in args.seed:
                opts = RunOptions(lr=lr, epochs=args.epochs, precision=args.precision,
                                  device=args.device, seed=seed, eval_every=args.eval_every,
                                  checkpoint_every=args.checkpoint_every, data_dir=args.data,
                                  verify=args.verify, resume=args.resume,
                                  time_limit=args.time_limit, deadline=deadline,
                                  compile=args.compile, **default_levers(args),
                                  progress=args.progress,
                                  batch_per_process=args.batch_per_process,
                                  batch_size=args.batch_size, eval_limit=args.eval_limit,
                                  lr_from=lr_from, pack_route=args.pack_route)
                run_dir = row_folder(args.out, spec.table, spec.name) / run_name(lr, seed, smoke)
                if lr_of.setdefault(run_dir, lr) != lr:
                    raise AllconvError(f"--lr {lr_of[run_dir]!r} and {lr!r} would share the run "
                                       f"folder {run_dir.name} (its name keeps 6 significant "
                                       "digits): give lrs that differ within them")
                jobs.append((spec, opts, run_dir))
    return jobs


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


def check_lengths(jobs: list[tuple], data_dir: str | None, world: int) -> None:
    """Every run's batch splits into the ``world`` processes and its length is an iteration
    at least, checked on the training files' sizes before any data is read or folder made
    (rows whose size only reading tells are checked as their run starts)."""
    sizes = {}
    for spec, opts, _ in jobs:
        if spec.key not in sizes:
            sizes[spec.key] = train_size(spec, data_dir, opts.verify)
        if sizes[spec.key] is not None:
            check_length(spec, opts, sizes[spec.key], world)


def check_runs_kept(jobs) -> None:
    """A run started afresh must not empty a folder that holds a finished run, or the
    checkpoints of an unfinished one (hours of training, lost to a forgotten --resume); a
    resumed run's checkpoint files must be a complete set (`RunFolder.latest_checkpoint`)."""
    for _, opts, run_dir in jobs:
        if opts.resume:
            RunFolder(run_dir).latest_checkpoint()
    held = [(run_dir, kept) for _, opts, run_dir in jobs
            if not opts.resume and (kept := _kept(RunFolder(run_dir)))]
    if held:
        (run_dir, (what, how)), more = held[0], len(held) - 1
        others = f", and {more} more folder(s) hold runs" if more else ""
        raise AllconvError(f"{run_dir} holds {what}{others}: {how}--out DIR writes elsewhere; "
                           "remove the folder to train it again")


def _kept(folder: RunFolder) -> tuple[str, str] | None:
    """(what the folder holds that a fresh start would lose, whether --resume keeps it)."""
    checkpoint = folder.newest_checkpoint_file()
    if not folder.has_record:
        return ("checkpoints without their run.json", "") if checkpoint else None
    if folder.result() is not None:
        return "a finished run", "--resume keeps it, "
    outcome = folder.outcome()
    if "diverged" in outcome:
        return f"a run that {outcome['diverged']}", ""
    if checkpoint is not None:
        return (f"an unfinished run (its checkpoint {checkpoint.with_suffix('').name})",
                "--resume keeps it, ")
    return None


def resumed_apart(jobs, size: int) -> list[str]:
    """A note for each row whose runs --resume continues from checkpoints of different
    iterations while --pack would pack them: they resume in one pack per iteration."""
    starts: dict[str, dict[int, list[str]]] = {}
    for (spec, _, run_dir), state in zip(jobs, resume_states(jobs) if size > 1 else []):
        if state is not None:
            starts.setdefault(spec.key, {}).setdefault(snapshot_iteration(state), []).append(
                Path(run_dir).name)
    return [f"--resume: {row}'s checkpoints are of iterations "
            + ", ".join(f"{i} ({' '.join(names)})" for i, names in sorted(by_iter.items()))
            + "; each iteration's runs resume as a pack of their own"
            for row, by_iter in starts.items() if len(by_iter) > 1]


def resume_states(jobs) -> list[Path | None]:
    """Each job's checkpoint to resume from (None: it has none, or no --resume), chosen
    among the runs of its row and options together (`resume_points`)."""
    groups: dict[tuple, list[int]] = {}
    for i, (spec, opts, _) in enumerate(jobs):
        if opts.resume:
            groups.setdefault((spec.key, _shared(opts)), []).append(i)
    states: list[Path | None] = [None] * len(jobs)
    for indices in groups.values():
        for i, state in zip(indices, resume_points([RunFolder(jobs[i][2]) for i in indices])):
            states[i] = state
    return states


def _shared(opts: RunOptions) -> RunOptions:
    """What runs trained as one pack share: their options but the members' own (lr, seed,
    lr_from; `run.MEMBER_FIELDS`) and their progress bar's position."""
    return replace(opts, lr=0.0, seed=0, lr_from="", position=0)


def run_pack(spec: Spec, members: list[tuple[RunOptions, Path]], data: Data | None = None,
             ranks: Ranks = SINGLE) -> list[dict]:
    """Train one pack (one run when it has one member): one outcome per member; a divergence
    is reported and kept as ``{'diverged': message}``, a Ctrl-C (after its checkpoint) is
    ``{'interrupted': True}``; in a worker process that a Ctrl-C has reached, no further
    pack starts."""
    if DeferredInterrupt.stopping:
        return [{"interrupted": True}] * len(members)
    try:
        outcomes = train_pack(spec, members, data, ranks)
    except KeyboardInterrupt:
        return [{"interrupted": True}] * len(members)
    for outcome in outcomes:
        if "diverged" in outcome:
            print(f"replicate: {outcome['diverged']}", file=sys.stderr)
    return outcomes


def packs(jobs: list[tuple], size: int) -> list[list[int]]:
    """The jobs' indices in packs of at most ``size`` runs of one row and of one set of
    options (`_shared`), in order; resumed runs are packed only with runs whose
    latest checkpoint is of the same iteration (they step together)."""
    groups: dict[tuple, list[int]] = {}
    for i, ((spec, opts, _), state) in enumerate(zip(jobs, resume_states(jobs))):
        start = 0 if not opts.resume else -1 if state is None else snapshot_iteration(state)
        groups.setdefault((spec.key, _shared(opts), start), []).append(i)
    return [indices[i:i + size] for indices in groups.values()
            for i in range(0, len(indices), size)]


_PACK_RUNNING = threading.Event()


def end_with_parent(parent: int | None = None, gone: Callable[[], None] | None = None) -> None:
    """This process ends with the one that started it (a --rows-in-parallel worker's parent,
    a torchrun process's agent; killed, or hung up), else it would go on as an orphan, writing
    into folders a resume would write too: its parent gone is a Ctrl-C, which a running loop
    turns into a checkpoint after its iteration; then ``gone`` (a daemon thread's). ``parent``:
    its pid, where it may have ended before this call (None: this process's parent now)."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)
        if gone is not None:
            gone()
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def start_worker(parent: int, prog: str | None) -> None:
    """A --rows-in-parallel worker of the command ``prog`` warns as it does, holds signals as
    the loop does, and ends with its parent: once its running pack has checkpointed, it exits
    (else it waits for work for ever)."""
    speak_as(prog)
    DeferredInterrupt.install()

    def exit_after_pack() -> None:
        while _PACK_RUNNING.is_set():
            time.sleep(0.1)
        os._exit(130)
    end_with_parent(parent, exit_after_pack)


def worker_pack(*args) -> list[dict]:
    """``run_pack`` in a worker, marked running for ``start_worker``'s watch."""
    _PACK_RUNNING.set()
    try:
        return run_pack(*args)
    finally:
        _PACK_RUNNING.clear()


def run_jobs(jobs: list[tuple], parallel: int, pack: int, ranks: Ranks = SINGLE) -> list[dict]:
    """Run the jobs in packs of ``pack``, one pack after another in this process (sharing each
    dataset's device copy), or ``parallel`` packs at a time in spawned processes; one outcome
    per job. A Ctrl-C stops every running pack after its iteration (each checkpoints) and
    starts no other."""
    results: list[dict | None] = [None] * len(jobs)
    grouped = packs(jobs, pack)
    parallel = min(parallel, max(1, len(grouped)))     # no process without a pack to train

    def members(indices):
        return [(jobs[i][1], jobs[i][2]) for i in indices]
    if parallel == 1:
        loaded = {}
        for indices in grouped:
            spec, opts, _ = jobs[indices[0]]
            if data_key(spec) not in loaded:
                loaded[data_key(spec)] = run_data(spec, opts, resolve_device(opts.device))
            outcomes = run_pack(spec, members(indices), loaded[data_key(spec)], ranks)
            for i, outcome in zip(indices, outcomes):
                results[i] = outcome
            if any(o.get("interrupted") for o in outcomes):
                break
        return [r if r is not None else {"interrupted": True} for r in results]
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                             initializer=start_worker,
                             initargs=(os.getpid(), command_prog())) as pool:
        futures = [pool.submit(worker_pack, jobs[indices[0]][0],
                               [(replace(o, position=n % parallel), d)
                                for o, d in members(indices)])
                   for n, indices in enumerate(grouped)]

        said = []      # the first signal is said once, here: the workers say nothing

        def stop(signum, frame):   # Ctrl-C, SIGTERM: no new pack; the running ones checkpoint
            DeferredInterrupt.received = signal.Signals(signum).name
            if not said:
                said.append(signum)
                DeferredInterrupt.say()
            for future in futures:
                future.cancel()
            for process in multiprocessing.active_children():     # the pool's workers
                with contextlib.suppress(ProcessLookupError):      # one just ended
                    os.kill(process.pid, signal.SIGINT)
        previous = {s: signal.signal(s, stop) for s in DeferredInterrupt.handled()}
        try:
            for indices, future in zip(grouped, futures):
                outcomes = ([{"interrupted": True}] * len(indices) if future.cancelled()
                            else future.result())
                for i, outcome in zip(indices, outcomes):
                    results[i] = outcome
            return results
        except BaseException:   # an error in one worker: no queued pack starts after it
            for future in futures:
                future.cancel()
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
