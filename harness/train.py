"""Training runs of a reproduction row: `train` (one run at one lr and seed) and `train_pack`
(K runs of one row differing in lr and seed, trained as one net, issue 20), in a loop the
harness owns.

Each run keeps its own run folder in the solo format (harness/run_folder.py): run.json with its
own lr and seed, the rendered texts, metrics.jsonl, and checkpoints at every
``checkpoint_every``-th evaluation, at the end, on Ctrl-C and before ``deadline``; a resumed
run continues exactly. The loop is airbench-style: the dataset stays on the device (harness/
run.py's `Run`), batches are drawn and augmented there, and the host reads the device only
every few seconds and at evaluations (harness/loop.py). Under torchrun each process trains its
slice of the global batch (runtime/distributed.py).
"""
from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Sequence

import torch

from runtime.distributed import SINGLE, Ranks, said_once
from harness import run_folder
from harness.curves import plot_curves
from harness.datasets import Data, check_trainable
from harness.loop import DeferredInterrupt, Diverged, Loop, Progress, Trainable
from harness.run import (Run, RunOptions, check_pack, device_name, resolve_precision,
                         run_data, set_precision, whitening_of)
from harness.run_folder import MetricsLog, RunFolder
from harness.side_by_side import SideBySide
from harness.specs import Spec
from runtime.cli_support import resolve_device
from runtime.errors import AllconvError

def train(spec: Spec, opts: RunOptions, run_dir: Path, data: Data | None = None,
          ranks: Ranks = SINGLE) -> dict:
    """Train ``spec`` at ``opts.lr`` and ``opts.seed`` in ``run_dir`` and return the run's
    result (`train_pack` with one member). ``finished`` is False when ``time_limit`` or
    ``deadline`` stopped it (``resume`` continues it); Diverged at the first non-finite loss;
    KeyboardInterrupt after checkpointing on Ctrl-C."""
    [result] = train_pack(spec, [(opts, run_dir)], data, ranks)
    if "diverged" in result:
        raise Diverged(result["diverged"])
    return result


class StartUp:
    """Seconds from a pack's start to the end of its first step (data, nets, compiling), the
    last measured in this process: a pack starts only if twice that is left to its deadline."""

    seconds = 0.0


def train_pack(spec: Spec, members: Sequence[tuple[RunOptions, Path]], data: Data | None = None,
               ranks: Ranks = SINGLE) -> list[dict]:
    """Train each (options, run folder) of ``members`` (options differing only in lr and
    seed) as one pack, and return one outcome per member: its result, ``{"finished": False,
    ...}`` when ``time_limit`` or ``deadline`` stopped it, or ``{"diverged": message}``.
    A member whose folder holds a result and ``resume`` is kept as it is; a pack its deadline
    leaves no time to start is not started (its folders untouched). KeyboardInterrupt after
    checkpointing every member on Ctrl-C. The folders are locked meanwhile: another command
    training one of them is refused."""
    with contextlib.ExitStack() as held:
        if ranks.is_main:
            for _, run_dir in members:
                held.enter_context(RunFolder(run_dir).lock())
        return _train_pack(spec, members, data, ranks)


def _train_pack(spec: Spec, members: Sequence[tuple[RunOptions, Path]], data: Data | None,
                ranks: Ranks) -> list[dict]:
    entered = time.monotonic()
    check_pack(members)
    opts = members[0][0]
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    outcomes, todo = [None] * len(members), []
    for i, (member_opts, run_dir) in enumerate(members):
        folder = RunFolder(run_dir)
        settings = run_folder.settings(spec, member_opts, precision, ranks.world)
        # every rank reads the (shared) folder, so that all agree on which runs train
        resumed = opts.resume and folder.resumable(settings)
        if resumed:
            folder.check_same_whitening(whitening_of(spec, member_opts))
        if resumed and folder.result() is not None:
            outcomes[i] = folder.result()
        else:
            todo.append((i, settings, resumed))
    if not todo:
        return outcomes
    # each process measured its own start-up: one that sees no time left stops them all
    if opts.deadline is not None and ranks.any(entered + 2 * StartUp.seconds >= opts.deadline):
        for i, _, _ in todo:
            outcomes[i] = {"finished": False, "stopped_by": "deadline", "iter": 0, "epoch": 0.0,
                           "run_dir": str(members[i][1])}
        return outcomes
    if data is None:
        check_trainable(spec, opts.data_dir)
    set_precision(precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # the Run checks what it can before any folder is emptied or made
    data, chosen = data or run_data(spec, opts, device), [members[i] for i, _, _ in todo]
    run = (SideBySide.of(spec, chosen, data, device, precision, ranks)
           if opts.pack_route == "streams" and len(chosen) > 1 else
           Run(spec, chosen, data, device, precision, ranks))
    if ranks.is_main:
        for k, (_, settings, resumed) in enumerate(todo):
            folder = run.members[k].folder
            folder.start(settings, resumed)
            run.record(k, settings, *(folder.recorded(key) if resumed else None
                                      for key in ("lr_from", "note")))
    ranks.barrier()
    states = run_folder.resume_points([m.folder for m in run.members])
    if any(resumed for _, _, resumed in todo) and any(states):
        if not all(states):
            raise AllconvError("some runs of the pack have a checkpoint and others none: "
                               "resume them apart")
        run.restore(states)
    for i, outcome in zip((i for i, _, _ in todo),
                          _loop(run, ranks, precision, device, entered)):
        outcomes[i] = outcome
    return outcomes


def _loop(run: Trainable, ranks: Ranks, precision: str, device: torch.device,
          entered: float) -> list[dict]:
    """Train ``run`` to its end, a stop or every member's divergence; one outcome each
    (``entered``: when its `train_pack` began, for `StartUp`)."""
    opts = run.opts
    logs = [m.folder.metrics for m in run.members] if ranks.is_main else None
    said_once(_check_records, run, logs, ranks)
    records = [log.truncate(run.iter) for log in logs] if logs else [[] for _ in run.members]
    lasts = [r[-1] if r else {"seconds": 0.0} for r in records]
    # rank 0 alone reads the logs: every rank takes its count, so that all checkpoint together
    evaluations = -int(ranks.min(torch.tensor(-max(sum("test_error" in r for r in rs)
                                                   for rs in records), device=ranks.device)))
    with DeferredInterrupt(), Progress(run, opts, ranks, lasts[0]) as bar:
        loop = Loop(run, logs, bar, done_before=[last["seconds"] for last in lasts])
        if DeferredInterrupt.consume():
            raise KeyboardInterrupt   # stopped before its first iteration: nothing to save
        while run.iter < run.max_iter and loop.alive:
            if loop.deadline_reached():
                return _stop_at_deadline(run, loop, ranks, bar)
            loop.step()
            if run.iter == loop.start_iter + 1:
                StartUp.seconds = time.monotonic() - entered
            evaluate = run.evaluates_at(run.iter)
            due = loop.sync_due(evaluate)
            if interrupted(ranks, due):
                # an evaluation due here comes first (the resumed run starts after it)
                loop.sync(evaluate)
                if loop.alive and evaluate:
                    lasts = loop.evaluate()
                _end_interrupted(run, loop, ranks, bar)
                break
            if not due:
                continue
            loop.sync(evaluate)
            if not evaluate or not loop.alive:
                continue
            lasts = loop.evaluate()
            evaluations += 1
            if not loop.alive:
                break
            if interrupted(ranks, True):      # during the evaluation: it stops after it
                _end_interrupted(run, loop, ranks, bar)
                break
            if evaluations % opts.checkpoint_every == 0 or run.iter == run.max_iter:
                if _checkpoint_out_of_time(run, loop, ranks, lasts):
                    return loop.stopped("time_limit")
    if not ranks.is_main:
        # the other ranks wait for process 0's result.json: a next call on these folders
        # reads it on every rank (one that read none trained again, and all hung)
        ranks.barrier()
        return [{"finished": True, "rank": ranks.rank} for _ in run.members]
    try:
        return [_finish(run, k, lasts[k], loop.diverged_message[k], precision, device)
                for k in range(run.K)]
    finally:        # even when writing fails: the others do not wait for ever
        ranks.barrier()


def _stop_at_deadline(run: Trainable, loop: Loop, ranks: Ranks, bar: Progress) -> list[dict]:
    """--deadline: the step's pending values read, a checkpoint where the run has moved since
    it started or resumed, and every member's outcome "stopped"."""
    loop.sync(evaluate=False)
    bar.show(run.iter)      # the bar ends where the checkpoint is
    if run.iter > loop.start_iter and ranks.is_main:
        loop.checkpoint()
    ranks.barrier()
    return loop.stopped("deadline")


def _checkpoint_out_of_time(run: Trainable, loop: Loop, ranks: Ranks, lasts: list) -> bool:
    """A checkpoint after an evaluation; then whether --time-limit (summed over resumes, as
    the last evaluations' ``seconds`` say) stops the run before its end."""
    if ranks.is_main:
        loop.checkpoint()
    ranks.barrier()
    seconds = max(last["seconds"] for last in lasts if last is not None)
    out_of_time = run.opts.time_limit is not None and seconds >= run.opts.time_limit
    return ranks.any(out_of_time) and run.iter < run.max_iter


def _finish(run: Trainable, k: int, last: dict, diverged: str | None, precision: str,
            device: torch.device) -> dict:
    """Member k's outcome at the end of its run: its curves and result.json written."""
    if diverged is not None:
        return {"diverged": diverged}
    member = run.members[k]
    plot_curves(member.folder.metrics.records(), member.folder.file(run_folder.CURVES),
                f"{run.spec.title} ({run.spec.key}), lr {member.opts.lr:g}"
                + (f", seed {member.opts.seed}" if member.opts.seed else "")
                + (" - SMOKE RUN" if run.smoke else ""),
                run.spec.paper.error, run.spec.paper.tolerance)
    result = _result(run, k, last, precision, device)
    member.folder.write_result(result)
    return result


def _check_records(run: Trainable, logs: list[MetricsLog] | None, ranks: Ranks) -> None:
    """A resumed run's metrics.jsonl must hold the records its checkpoint was written after
    (else it was removed or cut); process 0 reads the logs, and every process refuses."""
    lost = None
    for log, restored in zip(logs or [], run.restored_progress):
        written = (restored or {}).get("records")
        kept = written and sum(r["iter"] <= run.iter for r in log.records())
        if written and kept < written:
            lost = (f"{log.path}: {kept} record(s) up to iteration {run.iter}, where the "
                    f"checkpoint was written after {written}: it was removed or cut; put it "
                    "back, or remove the folder (or --out DIR) to start the run again")
            break
    if ranks.any(lost is not None):
        raise AllconvError(lost or "process 0 found the metrics log cut")


def _end_interrupted(run: Trainable, loop: Loop, ranks: Ranks, bar) -> None:
    """A Ctrl-C's end of the loop, after the iteration (and its evaluation): a checkpoint and
    KeyboardInterrupt; a complete run ends as usual (the command's next run stops), and a
    member that diverged since the last read is not checkpointed (its good one stays)."""
    if not loop.alive:
        return
    if run.iter == run.max_iter:
        DeferredInterrupt.requested = True
        if ranks.is_main:
            loop.checkpoint()
        ranks.barrier()
        return
    if ranks.is_main:
        written = loop.checkpoint()
        bar.write(f"{bar.label}: interrupted; checkpoint{'s' if len(written) > 1 else ''} "
                  f"{', '.join(map(str, written))} written, --resume continues from "
                  f"{'them' if len(written) > 1 else 'it'}")
    ranks.barrier()
    raise KeyboardInterrupt


def interrupted(ranks: Ranks, synced: bool) -> bool:
    """Ctrl-C was pressed: after this iteration alone, or under torchrun at the next
    iteration where the ranks sync anyway, all of them together (one rank stopping alone
    would leave the others waiting in the next all-reduce)."""
    if ranks.world == 1:
        return DeferredInterrupt.consume()
    return synced and DeferredInterrupt.agree(ranks)


def _result(run: Trainable, k: int, last: dict, precision: str, device: torch.device) -> dict:
    member, names = run.members[k], run.data.classes
    opts = member.opts
    return {
        "finished": True, "row": run.spec.key, "lr": opts.lr,
        "lr_from": member.folder.recorded("lr_from") or opts.lr_from,   # as when it began
        "smoke": run.smoke, "epochs": run.epochs, "iterations": run.iter,
        "batch_size": run.global_batch, "processes": run.ranks.world,
        "seed": opts.seed, "precision": precision,
        "options": {**{name: getattr(opts, name)
                       for name in ("compile", "cuda_graphs", "channels_last")}, "pack": run.K,
                    "pack_route": opts.pack_route if run.K > 1 else None},
        "device": device_name(device, run.ranks.world), "torch": torch.__version__,
        "wall_seconds": last["seconds"], "test_error": last["test_error"],
        **{key: v for key, v in last.items() if re.fullmatch(r"top\d+_error", key)},
        "test_loss": last["test_loss"], "per_class_accuracy": dict(zip(names, last["per_class"])),
        "never_predicted": [names[c] for c in last["never_predicted"]],
        "dead_class_units": [names[c] for c in last["dead_units"]],
        "params_counted": run.params_per_member,
        "train_size": run.data.train_size, "test_size": run.test_size,
        "run_dir": str(member.folder.path),
    }
