"""Run by tests/test_distributed.py under torchrun (gloo, CPU): one tiny run trained straight
through, and the same run stopped at its first checkpoint and resumed, on every process; then
one resumed with checkpoints off the evaluations it had done; a run whose deadline one process
alone sees no time for, and one with a label out of range in one process's share.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py SPEC OUT
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.distributed import from_environment, leave  # noqa: E402
from harness.loop import Loop  # noqa: E402
from harness.specs import load_spec  # noqa: E402
from harness.train import Data, RunOptions, StartUp, train  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402


def synthetic_data() -> Data:
    """16 training and 8 test images of CIFAR's shape, the same on every process."""
    g = torch.Generator().manual_seed(0)
    return Data(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g),
                torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))


def options(**kw) -> RunOptions:
    return RunOptions(**{"lr": 0.05, "epochs": 2, "device": "cpu", "progress": False,
                         "checkpoint_every": 1, **kw})


def main(spec_path: str, out: str) -> None:
    torch.set_num_threads(1)
    spec, data, out = load_spec(spec_path), synthetic_data(), Path(out)
    ranks = from_environment(torch.device("cpu"))
    train(spec, options(), out / "straight", data, ranks)
    train(spec, options(time_limit=0), out / "resumed", data, ranks)
    train(spec, dataclasses.replace(options(), resume=True), out / "resumed", data, ranks)
    # a --deadline stop at iteration 3, after one evaluation, resumed with a checkpoint every
    # second evaluation: rank 0 alone reads the log's count, which every rank must share
    # (before, at iteration 4 rank 0 checkpointed and waited while rank 1 trained on: hung);
    # the resumed run's deadline is agreed on (never due) where the ranks sync
    off = options(epochs=3, checkpoint_every=2, deadline=float("inf"))
    with mock.patch.object(Loop, "deadline_reached", lambda loop: loop.run.iter == 3):
        train(spec, off, out / "off-schedule", data, ranks)
    train(spec, dataclasses.replace(off, resume=True), out / "off-schedule", data, ranks)
    # resumed again, finished: every rank reads process 0's result.json and trains nothing
    # (before, process 1 could read the folder before it was written, train, and hang)
    train(spec, dataclasses.replace(off, resume=True), out / "off-schedule", data, ranks)
    # near a deadline, process 0's own start-up leaves no time to start a run, process 1's
    # does: neither starts it (before, process 1 trained alone and waited for ever)
    StartUp.seconds = 60.0 if ranks.rank == 0 else 0.0
    late = train(spec, options(deadline=time.monotonic() + 100), out / "late", data, ranks)
    assert late["stopped_by"] == "deadline" and late["iter"] == 0, late
    # one label out of range, in one process's slice of an epoch: every process raises it
    # (before, that process raised alone and the other waited in its next all-reduce)
    data.train_labels[5] = 10
    try:
        train(spec, options(epochs=1), out / "bad-label", data, ranks)
    except AllconvError as err:
        assert "label 10 is outside its 10 classes" in str(err), err
    else:
        raise AssertionError(f"process {ranks.rank} trained past label 10")
    leave(ranks)


if __name__ == "__main__":
    main(*sys.argv[1:])
