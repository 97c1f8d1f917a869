"""allconv-caffe train under real signals, as Caffe's -sigint_effect / -sighup_effect: the
signal takes effect after the current iteration; stop still writes the final snapshot."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.caffemodel import read_binary
from runtime.proto import pb
from tools.tiny_caffe import write_tiny_net

ROOT = Path(__file__).resolve().parents[1]
SOLVER = """net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9
max_iter: 100000000 snapshot_prefix: "snap" solver_mode: CPU display: 1 random_seed: 1"""


@pytest.fixture
def workdir(tmp_path):
    """The tiny Data net; the solver has no test_iter, so it builds no TEST net."""
    write_tiny_net(tmp_path)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    return tmp_path


@pytest.fixture
def start(workdir):
    """start(*flags): allconv-caffe train in ``workdir``; whatever still runs at the end of
    the test is killed, so a failing test leaves no training behind."""
    started = []

    def run(*flags):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        started.append(subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "train", "-solver", "solver.prototxt", *flags],
            cwd=workdir, env=env, stderr=subprocess.PIPE, text=True))
        return started[-1]
    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(process, text: str) -> list[str]:
    """stderr lines up to the first one containing ``text``."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never logged:\n{''.join(lines)}")


def snapshots(workdir) -> list[int]:
    return sorted(read_binary(p, pb.SolverState).iter for p in workdir.glob("*.solverstate"))


def test_sigint_stops_after_the_iteration_and_snapshots(workdir, start):
    process = start()
    wait_for(process, "Iteration 3,")
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 0, rest
    assert "Optimization stopped early." in rest and "Traceback" not in rest
    (stopped,) = snapshots(workdir)
    assert 3 <= stopped < 100000000
    assert (workdir / f"snap_iter_{stopped}.caffemodel").is_file()
    # the last line says how to go on (Caffe says nothing)
    assert rest.splitlines()[-1].endswith(
        f"Stopped at iteration {stopped}; resume from its last snapshot with: allconv-caffe "
        f"train -solver solver.prototxt -snapshot snap_iter_{stopped}.solverstate")


def test_sighup_snapshots_and_goes_on_and_effects_can_be_swapped(workdir, start):
    process = start("-sigint_effect", "none", "-sighup_effect", "snapshot")
    wait_for(process, "Iteration 2,")
    process.send_signal(signal.SIGHUP)
    wait_for(process, "Snapshotting solver state")
    wait_for(process, "Iteration")                 # the snapshot is written, training goes on
    first = snapshots(workdir)
    assert len(first) == 1
    process.send_signal(signal.SIGINT)             # none: training goes on
    wait_for(process, f"Iteration {first[0] + 5},")
    assert process.poll() is None and snapshots(workdir) == first


def test_sighup_stop_without_snapshot_after_train(workdir, start):
    (workdir / "solver.prototxt").write_text(SOLVER + "\nsnapshot_after_train: false")
    process = start("-sighup_effect", "stop")
    wait_for(process, "Iteration 2,")
    process.send_signal(signal.SIGHUP)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 0 and "Optimization stopped early." in rest
    assert snapshots(workdir) == [] and "resume" not in rest


def test_sigint_while_the_nets_are_built_is_the_solvers_stop(workdir, start):
    """caffe.cpp installs its handler before it creates the solver: a Ctrl-C while the nets
    are built stops training at its first check, after iteration 1 here (no test net), with
    its final snapshot and status 0 (before: "allconv-caffe train: interrupted", 130)."""
    process = start()
    wait_for(process, "Initializing solver from parameters")
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 0, rest
    assert "Optimization stopped early." in rest and "interrupted" not in rest
    assert snapshots(workdir) == [1]
