"""The training loop's bookkeeping: the progress bar, the device-side loss sums, non-finite
flags and label records read at host syncs (one read), each member's evaluation record, its
divergence, the estimate of when a --deadline forces a checkpoint, and Ctrl-C held to an
iteration's end."""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from harness.run_folder import MetricsLog
from runtime.cli_support import warning_line
from runtime.console import STOP_SIGNALS
from runtime.distributed import not_process_zero
from runtime.errors import AllconvError
from runtime.labels import NONE_SEEN, deferred_label_error, label_records

TICK_SECONDS = 2.0     # the progress bar and the divergence flags are read this often
NEVER = 2**62          # "no non-finite loss yet" in the device flag's reduction
CHECKPOINT_GUESS = 0.5   # seconds per member's checkpoint, until one has been timed
EVAL_COMPILE_GUESS = 60.0   # seconds the first evaluation on CUDA may spend compiling


class Trainable(Protocol):
    """What the loop (`Loop`, `Progress`, harness/train.py) reads of a run: harness/run.py's
    `Run` (K members as one packed net) and harness/side_by_side.py's `SideBySide` (K solo
    runs stepped together) both are one."""

    K: int                          # members
    iter: int
    max_iter: int
    members: list                   # their RunOptions and folders
    spec: Any
    opts: Any
    ranks: Any
    data: Any                       # train_size, classes
    net: Any                        # its device
    solver_param: Any               # display, test_interval
    smoke: bool
    epochs: float
    test_size: int
    global_batch: int
    loss_sum: torch.Tensor          # per member, on the device
    first_bad: torch.Tensor         # per member: the first non-finite iteration, or -1
    label_layers: list
    restored_progress: list

    @property
    def label(self) -> str: ...
    @property
    def params_per_member(self) -> int: ...
    @property
    def epoch(self) -> float: ...
    @property
    def rates(self) -> list[float]: ...
    def evaluates_at(self, iteration: int) -> bool: ...
    def record(self, k: int, settings: dict, lr_from: str | None = None) -> None: ...
    def step(self) -> None: ...
    def stop_member(self, k: int) -> None: ...
    def evaluate(self, progress=None) -> list: ...
    def checkpoint(self, members: Sequence[int] | None = None,
                   progress: Sequence[dict] | None = None) -> list[Path]: ...
    def restore(self, paths: Sequence[Path]) -> None: ...


class Diverged(AllconvError):
    """The training loss became NaN or infinite."""


def format_epoch(epoch: float) -> str:
    """An epoch with the decimals it needs: two, or two significant digits below 0.1
    (0.0051, not 0.01)."""
    if epoch >= 0.1 or epoch <= 0:
        return f"{epoch:.2f}"
    return f"{epoch:.{math.ceil(-math.log10(epoch)) + 1}f}"


def format_speed(images_per_s: float) -> str:
    """Images per second: whole numbers from 100 on, else three significant digits; "–"
    before a step has been timed."""
    if math.isnan(images_per_s):
        return "–"
    if math.isinf(images_per_s) or images_per_s >= 100:
        return f"{images_per_s:,.0f}"
    return f"{images_per_s:.3g}"


class DeferredInterrupt:
    """Holds Ctrl-C (SIGINT), SIGTERM (a scheduler's, ``timeout``'s, ``docker stop``'s) and
    SIGHUP (a closed terminal or ssh session) until
    the current iteration has finished, so that the weights, momentum and data order a
    checkpoint saves belong to one iteration. The request is one per process: a worker process
    `install`s the handler for good, so a signal that comes while it loads data still stops its
    run before the first iteration."""

    requested = False
    received = "SIGINT"  # the signal's name, for the message
    stopping = False     # a worker process, once a Ctrl-C reached it: it starts no further run
    installed = False

    @classmethod
    def request(cls, signum=signal.SIGINT, frame=None) -> None:
        """The handler: the request, said once on stderr by the process that trains (not a
        --rows-in-parallel worker, whose parent says it, nor a torchrun process but 0's)."""
        said = cls.requested
        cls.requested = True
        cls.received = signal.Signals(signum).name
        cls.stopping = cls.installed
        if not said and not cls.installed and not not_process_zero():
            cls.say()

    @classmethod
    def say(cls) -> None:
        """On a line of its own: a terminal's (after its ^C, or a progress bar) begins one."""
        fresh_line = "\n" if sys.stderr.isatty() else ""
        print(f"{fresh_line}replicate: {cls.by_whom()}: stopping when the running iteration "
              "(and its evaluation, when one is due) ends", file=sys.stderr, flush=True)

    @classmethod
    def handled(cls) -> list[signal.Signals]:
        """The stop signals, but SIGHUP where this process ignores it: ``nohup``'s run
        outlives the terminal. (SIGINT and SIGTERM are taken even when ignored, as before: a
        shell starts a script's background job with SIGINT ignored, and ``kill -INT`` stops it
        cleanly.)"""
        return [s for s in STOP_SIGNALS
                if s != signal.SIGHUP or signal.getsignal(s) is not signal.SIG_IGN]

    @classmethod
    def install(cls) -> None:
        cls.installed = True
        for signum in cls.handled():
            signal.signal(signum, cls.request)

    @classmethod
    def by_whom(cls) -> str:
        """What stopped the command, as its message says it."""
        return "Ctrl-C" if cls.received == "SIGINT" else cls.received

    @classmethod
    def agree(cls, ranks) -> bool:
        """Under torchrun (every process calls it): whether a process holds a request, taken;
        every process then names the same signal (the lowest number held), so that process 0's
        message and exit status say the signal another process got (it said Ctrl-C)."""
        none = max(STOP_SIGNALS) + 1
        held = int(ranks.min(torch.tensor(signal.Signals[cls.received].value if cls.requested
                                          else none, device=ranks.device)))
        if held == none:
            return False
        cls.received = signal.Signals(held).name
        cls.consume()
        return True

    @classmethod
    def consume(cls) -> bool:
        requested, cls.requested = cls.requested, False
        return requested

    def __enter__(self):
        self._active = (threading.current_thread() is threading.main_thread()
                        and not self.installed)
        if self._active:
            self._previous = {s: signal.signal(s, self.request) for s in self.handled()}
        return self

    def __exit__(self, *exc):
        if self._active:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


class Progress:
    """The run's tqdm bar (rank 0 only): iterations, then loss, test accuracy and speed once
    each exists (a pack: each member's, separated by /), and the evaluation's progress while
    it runs."""

    def __init__(self, run: Trainable, opts, ranks, last: dict):
        self.label = run.label
        self.bar = tqdm(total=run.max_iter, initial=run.iter, desc=self.label, unit="it",
                        position=opts.position, dynamic_ncols=True,
                        disable=not (opts.progress and ranks.is_main))
        self.fields = {}
        if "test_error" in last:
            self.show(run.iter, **{"test acc": f"{100 - last['test_error']:.2f}%"})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def show(self, iteration: int, **fields) -> None:
        self.fields.update(fields)
        self.bar.update(iteration - self.bar.n)
        self.bar.set_postfix_str(" ".join(f"{k} {v}" for k, v in self.fields.items()))

    def write(self, line: str) -> None:
        """A line above the bar; a terminal gone (a hangup) loses it, not the stop it tells."""
        try:
            tqdm.write(line, file=sys.stderr)
        except OSError:
            pass


def shared_label_records(layers, ranks) -> torch.Tensor:
    """`label_records` of every process: an out-of-range label one process saw is raised by
    all (one raising alone left the others waiting in their next all-reduce)."""
    records = label_records(layers)
    if ranks.world == 1:
        return records
    seen = records[:, :1] != NONE_SEEN
    shared = ranks.min(torch.where(seen, records, NEVER))
    return torch.where(shared == NEVER, NONE_SEEN, shared)


class Loop:
    """The loop's bookkeeping between host syncs. The run's device tensors (each member's loss
    sum, its first non-finite loss, the label records) are read every TICK_SECONDS (every
    ``display`` iterations under torchrun, where every rank must sync at the same iteration),
    at evaluations, and on the CPU, where reading costs nothing, every iteration (under
    torchrun too: there a Ctrl-C must stop every process within torchrun's 30 s grace, and
    ``display`` CPU iterations take minutes)."""

    def __init__(self, run: Trainable, logs: list[MetricsLog] | None, bar: Progress,
                 done_before: list[float]):
        self.run, self.logs, self.bar = run, logs, bar
        self.count = 0
        self.start, self.done_before = time.perf_counter(), list(done_before)
        restored = run.restored_progress   # a resumed run goes on with its checkpoint's figures
        for k, progress in enumerate(restored):
            if progress is not None:
                self.count = progress["count"]
                run.loss_sum[k] = progress["loss_sum"]
                self.done_before[k] = progress["seconds"]
        self.start_iter = run.iter
        self.tick, self.tick_iter = self.start, run.iter
        self.train_loss = [float("nan")] * run.K
        self.images_per_s = float("nan")          # each member's
        self.every_iteration = run.net.device.type == "cpu"
        self.diverged_message: list[str | None] = [None] * run.K
        self.class_warned = [{key: [] for key in self.CLASS_WARNINGS}   # the last warnings'
                             for _ in range(run.K)]
        self.step_seconds = self.checkpoint_seconds = self.eval_seconds = None

    @property
    def alive(self) -> bool:
        return any(message is None for message in self.diverged_message)

    def step(self) -> None:
        """One training step; the first one's time (compiling included) is kept apart."""
        begin = time.perf_counter()
        self.run.step()
        self.count += 1
        if self.step_seconds is None:   # the first step (compiling included), until a tick
            self.step_seconds = time.perf_counter() - begin
            # ticks time steady steps: the first window starts after this one
            self.tick, self.tick_iter = time.perf_counter(), self.run.iter

    def sync_due(self, evaluate: bool) -> bool:
        """Whether this step reads the device's loss: at an evaluation, every step when asked,
        at each display interval under torchrun, else once per tick of the clock."""
        if evaluate or self.every_iteration:
            return True
        if self.run.ranks.world > 1:
            return self.syncs_at(self.run.iter)
        return time.perf_counter() - self.tick >= TICK_SECONDS

    def syncs_at(self, iteration: int) -> bool:
        """Whether torchrun's processes read the device together after step ``iteration`` in
        any case: every step on the CPU, else at an evaluation or a display interval."""
        display = self.run.solver_param.display
        return (self.every_iteration or self.run.evaluates_at(iteration)
                or bool(display) and iteration % display == 0)

    def sync(self, evaluate: bool) -> None:
        """Read the device once: a label outside the classes is an error; a member with a
        non-finite loss diverged; the bar is refreshed when a tick is due."""
        run, ranks = self.run, self.run.ranks
        first_bad = ranks.min(torch.where(run.first_bad < 0, NEVER, run.first_bad))
        values = [first_bad.double(), ranks.mean(run.loss_sum).double()]
        if run.label_layers:
            values.append(shared_label_records(run.label_layers, ranks).double().flatten())
        host = torch.cat(values).cpu()
        error = deferred_label_error(run.label_layers, host[2 * run.K:].long().reshape(-1, 3))
        if error is not None:
            raise error
        for k, iteration in enumerate(host[:run.K].long().tolist()):
            if iteration != NEVER and self.diverged_message[k] is None:
                self.diverged(k, iteration)
        now = time.perf_counter()
        if not (evaluate or ranks.world > 1 or now - self.tick >= TICK_SECONDS):
            return
        self.train_loss = [float(v) / max(self.count, 1) for v in host[run.K:2 * run.K]]
        if run.iter > self.tick_iter:
            self.step_seconds = (now - self.tick) / (run.iter - self.tick_iter)
            self.images_per_s = run.global_batch / self.step_seconds
        alive = [k for k in range(run.K) if self.diverged_message[k] is None]
        self.bar.show(run.iter, loss="/".join(f"{self.train_loss[k]:.4f}" for k in alive),
                      speed=f"{format_speed(self.images_per_s * run.K)} img/s")
        self.tick, self.tick_iter = now, run.iter

    def evaluate(self) -> list[dict | None]:
        """Evaluate every member in one pass; write each live member's record (None for a
        member that diverged, now or before)."""
        run = self.run
        self.bar.show(run.iter)
        begin = time.perf_counter()
        metrics = run.evaluate(lambda done, total: self.bar.show(
            run.iter, **{"test acc": f"evaluating {done}/{total}"}))
        self.eval_seconds = time.perf_counter() - begin
        records = []
        for k, member_metrics in enumerate(metrics):
            if self.diverged_message[k] is None and not math.isfinite(
                    member_metrics["test_loss"]):
                self.diverged(k, run.iter, member_metrics["test_loss"])
            if self.diverged_message[k] is not None:
                records.append(None)
                continue
            records.append(self._record(k, member_metrics))
        shown = [f"{100 - r['test_error']:.2f}%" for r in records if r is not None]
        if shown:
            self.bar.show(run.iter, **{"test acc": "/".join(shown)})
        run.loss_sum.zero_()
        self.count = 0
        self.tick, self.tick_iter = time.perf_counter(), run.iter
        return records

    def _record(self, k: int, metrics: dict) -> dict:
        run = self.run
        record = {"iter": run.iter, "epoch": round(run.epoch, 4), "lr": run.rates[k],
                  "train_loss": self.train_loss[k], **metrics,
                  "seconds": round(self.done_before[k] + time.perf_counter() - self.start, 3),
                  "images_per_s": round(self.images_per_s, 1), "smoke": run.smoke}
        if self.logs is not None:
            self.logs[k].write(record)
            self._warn_classes(k, metrics)
        return record

    # the class sets an evaluation warns of: metrics key -> (what they are, when none is left)
    CLASS_WARNINGS = {
        "never_predicted": ("classes never predicted", "every class predicted again"),
        "dead_units": ("dead class units (0 on every test image)", "no class unit dead any more")}

    def _warn_classes(self, k: int, metrics: dict) -> None:
        """Warn when member ``k``'s classes never predicted or dead class units change
        (metrics.jsonl has every evaluation's): a net dead from epoch 1 says so once, not at
        each of 350 evaluations."""
        at = f"{self._name(k)}, epoch {format_epoch(self.run.epoch)}: "
        for key, (what, none_left) in self.CLASS_WARNINGS.items():
            classes = metrics[key]
            if classes == self.class_warned[k][key]:
                continue
            self.class_warned[k][key] = list(classes)
            names = [self.run.data.classes[c] for c in classes]
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            self.bar.write(warning_line(
                at + (f"{what}: {', '.join(names[:10])}{more} (warned again when this changes)"
                      if classes else none_left)))

    def _name(self, k: int) -> str:
        opts = self.run.members[k].opts
        return (f"{self.run.spec.key} at lr {opts.lr:g}"
                + (f" seed {opts.seed}" if opts.seed else ""))

    def diverged(self, k: int, iteration: int, loss: float = float("nan")) -> None:
        """Member ``k``'s loss was not finite at ``iteration``: its folder gets the event, it
        stops (the others of a pack go on), its last good checkpoint stays."""
        run = self.run
        epoch = iteration * run.global_batch / run.data.train_size
        if self.logs is not None:
            self.logs[k].write({"iter": iteration, "epoch": round(epoch, 4),
                                "event": "diverged", "loss": str(loss), "smoke": run.smoke})
        state = run.members[k].folder.latest_checkpoint()
        kept = (f"the last good checkpoint is {state}" if state
                else "no checkpoint had been written yet")
        self.diverged_message[k] = (f"{self._name(k)} diverged at iteration {iteration} "
                                    f"(epoch {format_epoch(epoch)}): the loss is {loss}; "
                                    f"{kept}; try a smaller lr")
        run.stop_member(k)
        if run.K > 1 and self.alive:
            self.bar.write(warning_line(f"{self.diverged_message[k]}; the other runs of the "
                                        "pack go on"))

    def checkpoint(self) -> list:
        """Checkpoint the live members with the loop's running figures (the loss summed since
        the last evaluation, its step count, the training seconds so far, the records its log
        holds), so that a resume goes on with them; timed, for the deadline's estimate."""
        begin = time.perf_counter()
        sums = self.run.loss_sum.tolist()
        progress = [{"loss_sum": sums[k], "count": self.count,
                     "seconds": self.done_before[k] + begin - self.start,
                     "records": self.logs[k].held if self.logs else None}
                    for k in range(self.run.K)]
        written = self.run.checkpoint([k for k in range(self.run.K)
                                       if self.diverged_message[k] is None], progress)
        self.checkpoint_seconds = time.perf_counter() - begin
        return written

    def deadline_reached(self) -> bool:
        """Whether the run stops for its --deadline before this step. One process asks its
        clock before every step. Under torchrun the processes agree (one all-reduce) only at
        the steps where they sync anyway (`syncs_at`), each guessing up to the next such
        step."""
        run = self.run
        if run.opts.deadline is None:
            return False
        if run.ranks.world == 1:
            return self.deadline_due()
        if not (run.iter == self.start_iter or self.syncs_at(run.iter)):
            return False
        return run.ranks.any(self.deadline_due(self._steps_to_sync()))

    def _steps_to_sync(self) -> int:
        """The steps from here to the next one that `syncs_at` (or to the run's end)."""
        run, sp = self.run, self.run.solver_param
        if self.every_iteration:
            return 1
        ahead = [run.max_iter, (run.iter // sp.test_interval + 1) * sp.test_interval]
        if sp.display:
            ahead.append((run.iter // sp.display + 1) * sp.display)
        return min(ahead) - run.iter

    def deadline_due(self, steps: int = 1) -> bool:
        """Whether the next ``steps`` steps, the evaluation the last of them may bring, a
        checkpoint and a margin of one more step (and on CUDA one tick, which the host may run
        ahead of the device) would pass the run's deadline: then the loop checkpoints now and
        stops."""
        run = self.run
        after = run.iter + steps
        evaluation = self.eval_guess() if run.evaluates_at(after) else 0.0
        checkpoint = (self.checkpoint_seconds if self.checkpoint_seconds is not None
                      else CHECKPOINT_GUESS * run.K)
        ahead = 0.0 if self.every_iteration else TICK_SECONDS
        need = (steps + 1) * self._step_guess() + evaluation + checkpoint + ahead
        return time.monotonic() + need >= run.opts.deadline

    def _step_guess(self) -> float:
        """A step's seconds: the first step's or a tick's in this process; before any, a
        resumed run's mean over its earlier sessions (evaluations included); else 0."""
        if self.step_seconds is not None:
            return self.step_seconds
        return self.done_before[0] / self.start_iter if self.start_iter else 0.0

    def eval_guess(self) -> float:
        """The last evaluation's seconds; before one in this process, a third of a steady
        training step (the forward alone) per batch of test images, plus, on CUDA, the
        compiling of the evaluator's first call. The first step's time (compiling, capture)
        is no guide to a forward: the step part waits for a tick after it."""
        if self.eval_seconds is not None:
            return self.eval_seconds
        run = self.run
        steady = self.step_seconds if self.tick_iter > self.start_iter + 1 else 0.0
        # one compiled evaluation a process: runs side by side share its graph
        compiling = EVAL_COMPILE_GUESS if run.net.device.type == "cuda" else 0.0
        return steady * run.test_size / run.global_batch / 3 + compiling

    def stopped(self, reason: str) -> list[dict]:
        """Each member's outcome when ``reason`` (time_limit, deadline) stopped the loop."""
        run = self.run
        return [{"diverged": message} if message is not None else
                {"finished": False, "stopped_by": reason, "iter": run.iter, "epoch": run.epoch,
                 "run_dir": str(member.folder.path)}
                for member, message in zip(run.members, self.diverged_message)]
