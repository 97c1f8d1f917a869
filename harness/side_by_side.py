"""K solo runs of one row trained side by side in one process, each stepping on a CUDA stream of
its own (``--pack-route streams``, issue 20): the other route for a pack. Grouped convolutions
(runtime/pack.py) make K nets one; here they stay K solo `Run`s, whose small kernels (or whole
steps' graphs) the GPU can run at the same time. Each member is its solo run exactly, because
it is one; on the CPU they step one after another.

`SideBySide` shows the loop (harness/train.py, harness/loop.py) what a packed `Run` shows it:
K members, each one's loss sum and first non-finite iteration as one (K,) device tensor (each
run's own is a view of it), their label records, one evaluation with one record each (None for
a run that diverged: it steps and evaluates no more), and checkpoints that appear together.
Whatever the loop reads waits for every stream first, and each step's stream waits for what the
loop did on the default stream, so the host reads and writes see whole steps.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import torch

from harness.run import Run, RunOptions, one_iteration, pack_label
from harness.specs import Spec
from runtime.distributed import SINGLE, Ranks
from runtime.errors import AllconvError
from runtime.files import written_together


def on(stream: torch.cuda.Stream | None):
    """Work on ``stream`` after what the current stream has queued (None: the CPU, as is)."""
    if stream is None:
        return nullcontext()
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    return torch.cuda.stream(stream)


class SideBySide:
    """K solo `Run`s (one member each, of one row, at one iteration) as one pack."""

    @classmethod
    def of(cls, spec: Spec, members: Sequence[tuple[RunOptions, Path]], data,
           device: torch.device, precision: str, ranks: Ranks = SINGLE) -> "SideBySide":
        """A solo `Run` of each member, each built on its own stream: what it allocates there
        (its data order, say) is freed there, while its steps may still read it."""
        streams = [torch.cuda.Stream(device) if device.type == "cuda" else None
                   for _ in members]                          # None: the CPU, one stream
        runs = []
        for member, stream in zip(members, streams):
            with on(stream):
                runs.append(Run(spec, [member], data, device, precision, ranks))
        return cls(runs, streams)

    def __init__(self, runs: Sequence[Run], streams: Sequence):
        first = self.first = runs[0]
        if first.ranks.world > 1:
            raise AllconvError("a pack trains on one process: under torchrun use --pack 1")
        self.runs, self.K = list(runs), len(runs)
        self.spec, self.opts = first.spec, first.opts
        self.ranks, self.data = first.ranks, first.data
        self.members = [run.members[0] for run in runs]
        self.epochs, self.smoke, self.test_size = first.epochs, first.smoke, first.test_size
        self.global_batch, self.solver_param = first.global_batch, first.solver_param
        self.net = first.net      # the loop reads its device
        self.stopped: set[int] = set()   # members that diverged: they step no more
        device = first.net.device
        self.streams = list(streams)
        self._loss_sum = torch.zeros(self.K, device=device)
        self._first_bad = torch.full((self.K,), -1, dtype=torch.long, device=device)
        for k, run in enumerate(runs):     # before any step: a CUDA graph keeps their memory
            run.loss_sum, run.first_bad = self._loss_sum[k:k + 1], self._first_bad[k:k + 1]

    def _joined(self):
        """The default stream, after every run's stream (a read or write of what they wrote)."""
        if self.streams[0] is not None:
            main = torch.cuda.current_stream(self.net.device)
            for stream in self.streams:
                main.wait_stream(stream)

    @property
    def loss_sum(self) -> torch.Tensor:
        self._joined()
        return self._loss_sum

    @property
    def first_bad(self) -> torch.Tensor:
        self._joined()
        return self._first_bad

    @property
    def label_layers(self) -> list:
        self._joined()
        return [layer for run in self.runs for layer in run.label_layers]

    @property
    def label(self) -> str:
        return pack_label(self.spec, self.members, self.smoke) + " (streams)"

    @property
    def params_per_member(self) -> int:
        return self.first.params_per_member

    @property
    def live(self) -> Run:
        """A run still stepping (the first, once all have stopped): the pack's iteration."""
        return next((run for k, run in enumerate(self.runs) if k not in self.stopped),
                    self.first)

    @property
    def iter(self) -> int:
        return self.live.iter

    @property
    def max_iter(self) -> int:
        return self.first.max_iter

    def evaluates_at(self, iteration: int) -> bool:
        return self.first.evaluates_at(iteration)

    @property
    def epoch(self) -> float:
        return self.live.epoch

    @property
    def rates(self) -> list[float]:
        return [run.rates[0] for run in self.runs]

    @property
    def restored_progress(self) -> list[dict | None]:
        return [run.restored_progress[0] for run in self.runs]

    def record(self, k: int, settings: dict, lr_from: str | None = None,
               note: str | None = None) -> None:
        self.runs[k].record(0, settings, lr_from, note)

    def step(self) -> None:
        """One iteration of every run that has not stopped, each on its stream after the
        loop's last work."""
        for k, (run, stream) in enumerate(zip(self.runs, self.streams)):
            if k not in self.stopped:
                with on(stream):
                    run.step()

    def stop_member(self, k: int) -> None:
        """Member ``k`` (diverged) steps and evaluates no more; the loop no longer records
        or checkpoints it."""
        self.stopped.add(k)

    @torch.no_grad()
    def evaluate(self, progress=None) -> list[dict | None]:
        """Each run's evaluation, one after another on the default stream (None for a
        member that stopped)."""
        self._joined()
        live = [k for k in range(self.K) if k not in self.stopped]
        metrics: list[dict | None] = [None] * self.K
        for i, k in enumerate(live):
            metrics[k] = self.runs[k].evaluate(
                None if progress is None else
                (lambda done, total, i=i: progress(i * total + done, len(live) * total)))[0]
        return metrics

    def checkpoint(self, members: Sequence[int] | None = None,
                   progress: Sequence[dict] | None = None) -> list[Path]:
        """`Run.checkpoint` of ``members``: their files appear together, then older ones go."""
        members = range(self.K) if members is None else members
        self._joined()
        with written_together():
            written = [path for k in members for path in self.runs[k].write_checkpoints(
                [0], None if progress is None else [progress[k]])]
        for k in members:
            self.runs[k].prune_checkpoints([0])
        return written

    def restore(self, paths: Sequence[Path]) -> None:
        """Each run from its checkpoint, all of one iteration."""
        one_iteration(paths)
        for run, stream, path in zip(self.runs, self.streams, paths):
            with on(stream):
                run.restore([path])
