"""The training loop's bookkeeping: the progress bar, the device-side loss and non-finite
flag read at host syncs, evaluations with their record, and Ctrl-C held to an iteration's end."""
from __future__ import annotations

import math
import signal
import sys
import threading
import time

import torch
from tqdm import tqdm

from harness.run_folder import MetricsLog
from runtime.errors import AllconvError

TICK_SECONDS = 2.0     # the progress bar and the divergence flag are read this often
NEVER = 2**62          # "no non-finite loss yet" in the device flag's reduction


class Diverged(AllconvError):
    """The training loss became NaN or infinite."""


class DeferredInterrupt:
    """Holds Ctrl-C (SIGINT) until the current iteration has finished, so that the weights,
    momentum and data order a checkpoint saves belong to one iteration. The request is one
    per process: a worker process `install`s the handler for good, so a Ctrl-C that comes
    while it loads data still stops its run before the first iteration."""

    requested = False
    stopping = False     # a worker process, once a Ctrl-C reached it: it starts no further run
    installed = False

    @classmethod
    def request(cls, signum=None, frame=None) -> None:
        cls.requested = True
        cls.stopping = cls.installed

    @classmethod
    def install(cls) -> None:
        cls.installed = True
        signal.signal(signal.SIGINT, cls.request)

    @classmethod
    def consume(cls) -> bool:
        requested, cls.requested = cls.requested, False
        return requested

    def __enter__(self):
        self._active = (threading.current_thread() is threading.main_thread()
                        and not self.installed)
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self.request)
        return self

    def __exit__(self, *exc):
        if self._active:
            signal.signal(signal.SIGINT, self._previous)


class Progress:
    """The run's tqdm bar (rank 0 only): iterations, then loss, test accuracy and speed once
    each exists, and the evaluation's progress while it runs."""

    def __init__(self, run, opts, ranks, last: dict):
        self.label = f"{run.spec.key} lr {opts.lr:g}" + (" SMOKE" if run.smoke else "")
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
        tqdm.write(line, file=sys.stderr)


class Loop:
    """The loop's bookkeeping between host syncs: the loss sum and the first non-finite
    loss stay on the device and are read every TICK_SECONDS (every ``display`` iterations
    under torchrun, where every rank must sync at the same iteration), at evaluations, and
    on the CPU, where reading costs nothing, every iteration."""

    def __init__(self, run, log: MetricsLog | None, bar: Progress, done_before: float):
        self.run, self.log, self.bar = run, log, bar
        device = run.net.device
        self.loss_sum = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.count = 0
        self.start, self.done_before = time.perf_counter(), done_before
        self.tick, self.tick_iter = self.start, run.iter
        self.train_loss = self.images_per_s = float("nan")
        self.every_iteration = device.type == "cpu" and run.ranks.world == 1

    def step(self) -> None:
        loss = self.run.step()
        self.loss_sum += loss
        self.count += 1
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, self.run.iter, self.first_bad)

    def sync_due(self, evaluate: bool) -> bool:
        if evaluate or self.every_iteration:
            return True
        if self.run.ranks.world > 1:
            display = self.run.solver_param.display
            return bool(display) and self.run.iter % display == 0
        return time.perf_counter() - self.tick >= TICK_SECONDS

    def sync(self, evaluate: bool) -> None:
        """Read the device: stop at a non-finite loss; refresh the bar when a tick is due."""
        ranks = self.run.ranks
        first_bad = int(ranks.min(torch.where(self.first_bad < 0, NEVER, self.first_bad)))
        if first_bad != NEVER:
            self.diverged(first_bad)
        now = time.perf_counter()
        if not (evaluate or ranks.world > 1 or now - self.tick >= TICK_SECONDS):
            return
        self.train_loss = float(ranks.mean(self.loss_sum)) / max(self.count, 1)
        self.images_per_s = ((self.run.iter - self.tick_iter) * self.run.global_batch
                             / max(now - self.tick, 1e-9))
        self.bar.show(self.run.iter, loss=f"{self.train_loss:.4f}",
                      speed=f"{self.images_per_s:,.0f} img/s")
        self.tick, self.tick_iter = now, self.run.iter

    def evaluate(self) -> dict:
        run = self.run
        self.bar.show(run.iter)
        metrics = run.evaluate(lambda done, total: self.bar.show(
            run.iter, **{"test acc": f"evaluating {done}/{total}"}))
        if not math.isfinite(metrics["test_loss"]):
            self.diverged(run.iter, metrics["test_loss"])
        record = {"iter": run.iter, "epoch": round(run.epoch, 4), "lr": run.rate,
                  "train_loss": self.train_loss, **metrics,
                  "seconds": round(self.done_before + time.perf_counter() - self.start, 3),
                  "images_per_s": round(self.images_per_s, 1), "smoke": run.smoke}
        self.bar.show(run.iter, **{"test acc": f"{100 - metrics['test_error']:.2f}%"})
        if self.log is not None:
            self.log.write(record)
            if metrics["never_predicted"]:
                never = [run.data.classes[c] for c in metrics["never_predicted"]]
                more = f" and {len(never) - 10} more" if len(never) > 10 else ""
                self.bar.write(f"warning: {self.bar.label}, epoch {run.epoch:.2f}: classes "
                               f"never predicted: {', '.join(never[:10])}{more}")
        self.loss_sum.zero_()
        self.count = 0
        return record

    def diverged(self, iteration: int, loss: float = float("nan")) -> None:
        run = self.run
        epoch = iteration * run.global_batch / run.data.train_size
        if self.log is not None:
            self.log.write({"iter": iteration, "epoch": round(epoch, 4), "event": "diverged",
                            "loss": str(loss), "smoke": run.smoke})
        state = run.folder.latest_checkpoint()
        kept = (f"the last good checkpoint is {state}" if state
                else "no checkpoint had been written yet")
        raise Diverged(f"{run.spec.key} at lr {run.opts.lr:g} diverged at iteration "
                       f"{iteration} (epoch {epoch:.2f}): the loss is {loss}; {kept}; try a "
                       "smaller lr")
