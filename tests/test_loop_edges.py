"""Training-loop cases the mutation round of harness/loop.py and harness/train.py found
untested: the checkpoint cadence at the end and across a resume, the
metrics a resume drops, the running loss, the seconds a resume carries on from, the
iteration a divergence names, the time limit's boundary."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from types import SimpleNamespace

import pytest

from harness import loop as harness_loop
from harness.loop import DeferredInterrupt, Loop
from harness.run import Run
from harness.run_folder import MetricsLog
from harness.specs import load_spec
from harness.train import _checkpoint_out_of_time, train
from runtime.distributed import SINGLE
from test_harness import cache, options, tiny_data, tiny_spec  # noqa: F401 (fixtures)


def _records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _spy_checkpoints(monkeypatch) -> list[int]:
    at, real = [], Loop.checkpoint

    def spy(self):
        at.append(self.run.iter)
        return real(self)
    monkeypatch.setattr(Loop, "checkpoint", spy)
    return at


def test_the_last_evaluation_checkpoints_off_the_cadence(tmp_path, tiny_data, monkeypatch):
    """--checkpoint-every 2 over 3 evaluations: the 2nd, and the last (the run's end), which
    the cadence does not reach."""
    at = _spy_checkpoints(monkeypatch)
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=8))      # 4 iterations an epoch
    result = train(spec, options(tiny_data, epochs=1.5, eval_every=0.5, checkpoint_every=2),
                   tmp_path / "run")
    assert result["iterations"] == 6 and at == [4, 6]
    assert sorted(p.name for p in (tmp_path / "run").glob("*.solverstate")) == [
        "checkpoint_iter_6.solverstate"]


def _stop_after_evaluation(monkeypatch, iteration: int, how: str) -> None:
    """At ``iteration``'s evaluation: a Ctrl-C during it (``how`` "interrupt"), or a kill
    after it (its record written, no checkpoint)."""
    real = Loop.evaluate

    def evaluate(self):
        records = real(self)
        if self.run.iter == iteration:
            if how == "kill":
                raise RuntimeError("killed")
            DeferredInterrupt.requested = True
        return records
    monkeypatch.setattr(Loop, "evaluate", evaluate)


def test_a_resumed_run_keeps_its_checkpoint_cadence(tmp_path, tiny_data, monkeypatch):
    """The evaluations counted before the stop go on: the 4th and 6th of 6 are checkpointed
    after a Ctrl-C at the 3rd, as in a straight run (not the resumed run's 2nd and 4th)."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=8))
    opts = options(tiny_data, epochs=3, eval_every=0.5, checkpoint_every=2)
    with monkeypatch.context() as patched:
        straight = _spy_checkpoints(patched)
        train(spec, opts, tmp_path / "straight")
    assert straight == [4, 8, 12]
    with monkeypatch.context() as patched:
        _stop_after_evaluation(patched, 6, "interrupt")
        with pytest.raises(KeyboardInterrupt):
            train(spec, opts, tmp_path / "run")
    resumed = _spy_checkpoints(monkeypatch)
    train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")
    assert resumed == [8, 12]


def test_records_written_after_the_checkpoint_are_dropped_by_a_resume(tmp_path, tiny_data,
                                                                      monkeypatch):
    """A kill after the 3rd evaluation (its record written; the checkpoint is the 2nd's):
    the resumed run evaluates iteration 6 again, and its log holds it once."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=8))
    opts = options(tiny_data, epochs=2, eval_every=0.5, checkpoint_every=2)
    with monkeypatch.context() as patched:
        _stop_after_evaluation(patched, 6, "kill")
        with pytest.raises(RuntimeError, match="killed"):
            train(spec, opts, tmp_path / "run")
    assert [r["iter"] for r in _records(tmp_path / "run")] == [2, 4, 6]
    train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")
    assert [r["iter"] for r in _records(tmp_path / "run")] == [2, 4, 6, 8]


def test_the_train_loss_is_the_mean_of_the_steps_since_the_last_evaluation(
        tmp_path, tiny_data, monkeypatch):
    losses, real = [], Run.step

    def step(self):
        before = float(self.loss_sum[0])
        real(self)
        losses.append(float(self.loss_sum[0]) - before)
    monkeypatch.setattr(Run, "step", step)
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=8))
    train(spec, options(tiny_data, epochs=1.5, eval_every=0.5), tmp_path / "run")
    assert len(losses) == 6
    assert [r["train_loss"] for r in _records(tmp_path / "run")] == pytest.approx(
        [(losses[0] + losses[1]) / 2, (losses[2] + losses[3]) / 2,
         (losses[4] + losses[5]) / 2], rel=1e-5)


def test_a_resumed_run_counts_the_seconds_before_its_checkpoint(tmp_path, tiny_data,
                                                                monkeypatch):
    """A Ctrl-C before the first evaluation: the checkpoint's seconds (here 200 on a clock
    that runs 100 s a step) are where the resumed run's seconds go on from."""
    offset = [0.0]
    monkeypatch.setattr(harness_loop, "time", SimpleNamespace(
        perf_counter=lambda: time.perf_counter() + offset[0], monotonic=time.monotonic))
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)                 # evaluations at iterations 3 and 5
    real = Run.step

    def step(self):
        offset[0] += 100.0
        if self.iter == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    with monkeypatch.context() as patched:
        patched.setattr(Run, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train(spec, opts, tmp_path / "run")
    train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")
    first = _records(tmp_path / "run")[0]
    assert first["iter"] == 3 and first["seconds"] >= 200.0


def test_a_divergence_names_the_iteration_of_its_first_non_finite_loss(tmp_path):
    """On CUDA the flags are read a tick later than the step that set them: the event and
    the message give that step's iteration and epoch, not the one reached."""
    run = SimpleNamespace(iter=20, global_batch=8, data=SimpleNamespace(train_size=32),
                          smoke=False, K=1, spec=SimpleNamespace(key="tiny/model-a"),
                          members=[SimpleNamespace(opts=SimpleNamespace(lr=0.01, seed=0),
                                                   folder=SimpleNamespace(
                                                       latest_checkpoint=lambda: None))],
                          stop_member=lambda k: None)
    loop = Loop.__new__(Loop)
    loop.run, loop.logs, loop.diverged_message = run, [MetricsLog(tmp_path / "m.jsonl")], [None]
    loop.diverged(0, 12)
    event = json.loads((tmp_path / "m.jsonl").read_text())
    assert (event["iter"], event["epoch"]) == (12, 3.0)
    assert "diverged at iteration 12 (epoch 3.00)" in loop.diverged_message[0]


def test_the_time_limit_stops_a_run_at_exactly_its_seconds():
    loop = SimpleNamespace(checkpoint=lambda: [])
    run = SimpleNamespace(opts=SimpleNamespace(time_limit=10.0), iter=3, max_iter=5)
    assert _checkpoint_out_of_time(run, loop, SINGLE, [{"seconds": 10.0}])
    assert not _checkpoint_out_of_time(run, loop, SINGLE, [{"seconds": 9.999}])


def _deadline_loop(monkeypatch, iteration: int, max_iter: int = 9) -> Loop:
    """A loop at ``iteration`` of a CPU run on a clock standing at 1000 s: a step 1 s, a
    checkpoint 0.5 s, an evaluation 10 s, one every 5 iterations."""
    monkeypatch.setattr(harness_loop, "time", SimpleNamespace(
        monotonic=lambda: 1000.0, perf_counter=time.perf_counter))
    loop = Loop.__new__(Loop)
    loop.run = SimpleNamespace(opts=SimpleNamespace(deadline=None), iter=iteration,
                               max_iter=max_iter, K=1, ranks=SimpleNamespace(world=1),
                               solver_param=SimpleNamespace(test_interval=5, display=0))
    loop.run.evaluates_at = lambda i: Run.evaluates_at(loop.run, i)
    loop.every_iteration, loop.start_iter = True, iteration
    loop.step_seconds, loop.checkpoint_seconds, loop.eval_seconds = 1.0, 0.5, 10.0
    return loop


def test_the_deadline_counts_a_margin_step_and_is_reached_at_its_second(monkeypatch):
    """Iteration 2 of 9: the next step and a step's margin (2 s) and a checkpoint (0.5 s)."""
    loop = _deadline_loop(monkeypatch, 2)
    for deadline, due in ((1002.5, True), (1002.2, True), (1002.6, False)):
        loop.run.opts.deadline = deadline
        assert loop.deadline_due() is due, deadline


def test_the_deadline_counts_the_final_evaluation_off_the_interval(monkeypatch):
    """Iteration 8 of 9: the last step brings the run's final evaluation (9 is no multiple
    of the test interval 5): 2 + 10 + 0.5 s."""
    loop = _deadline_loop(monkeypatch, 8)
    for deadline, due in ((1012.0, True), (1012.6, False)):
        loop.run.opts.deadline = deadline
        assert loop.deadline_due() is due, deadline


def test_torchrun_processes_guess_the_steps_up_to_the_runs_end(monkeypatch):
    """Under torchrun on GPUs the steps guessed run to the next evaluation or the run's end,
    whichever comes first: from 75 of 90, 15 (not the 25 to an evaluation at 100)."""
    loop = _deadline_loop(monkeypatch, 75, max_iter=90)
    loop.every_iteration = False        # a CUDA run's loop (on the CPU every step syncs)
    loop.run.opts.deadline, loop.run.solver_param.test_interval = 1e18, 25
    loop.run.ranks = SimpleNamespace(world=2, any=lambda flag: flag)
    seen = []
    loop.deadline_due = lambda steps=1: seen.append(steps) or False
    assert loop.deadline_reached() is False and seen == [15]


@pytest.mark.parametrize("device, world, every", [("cpu", 1, True), ("cpu", 2, True),
                                                  ("cuda", 2, False)])
def test_on_the_cpu_every_step_syncs_under_torchrun_too(device, world, every):
    """A Ctrl-C under torchrun is agreed on where the processes sync: on the CPU every step,
    so that it stops them within torchrun's 30 s grace (before, only every `display` steps,
    minutes on a CPU: torchrun killed the processes before their checkpoint)."""
    import torch
    run = SimpleNamespace(restored_progress=[None], iter=7, K=1, max_iter=100,
                          net=SimpleNamespace(device=torch.device(device)),
                          ranks=SimpleNamespace(world=world),
                          solver_param=SimpleNamespace(display=100, test_interval=50))
    run.evaluates_at = lambda i: Run.evaluates_at(run, i)
    loop = Loop(run, None, None, done_before=[0.0])
    assert loop.sync_due(evaluate=False) is every
    assert loop.syncs_at(7) is every and loop.syncs_at(100) is True


def test_one_process_stops_when_the_next_step_would_pass_the_deadline(monkeypatch):
    """One process asks before every step for the next one: at 2 of 9 the step, a step's
    margin and a checkpoint need 2.5 s."""
    loop = _deadline_loop(monkeypatch, 2)
    for deadline, due in ((1002.5, True), (1002.6, False)):
        loop.run.opts.deadline = deadline
        assert loop.deadline_reached() is due, deadline
