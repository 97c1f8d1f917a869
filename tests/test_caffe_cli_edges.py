"""allconv-caffe train's weights and its resume line (a mutation round over runtime/cli.py)."""
import logging

import pytest

from runtime import TEST, Net
from runtime.cli import main
from tools.tiny_caffe import write_tiny_net

SOLVER = """net: "net.prototxt" test_iter: 2 test_interval: 4 base_lr: 0.1 lr_policy: "fixed"
momentum: 0.9 max_iter: {max_iter} snapshot: 4 snapshot_prefix: "snap" solver_mode: CPU
random_seed: 1 display: 0"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_tiny_net(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_without_weights_or_snapshot_finetunes_from_the_solvers_weights(workdir, caplog):
    """caffe.cpp (BVLC master) clears the solver's ``weights`` only for -snapshot, and
    replaces them only for -weights: with neither, the solver's own field fills the nets.
    Mutant C06 (no -weights clears the field) trains from the fillers."""
    caplog.set_level(logging.INFO)
    Net("net.prototxt", TEST).save(workdir / "a.caffemodel")
    (workdir / "w.prototxt").write_text(SOLVER.format(max_iter=1) + '\nweights: "a.caffemodel"')
    assert main(["train", "-solver", "w.prototxt"]) == 0
    assert [m for m in caplog.messages if m.startswith("Finetuning")] == [
        "Finetuning from a.caffemodel"] * 2          # the train net and the test net


def test_a_finished_training_gives_no_resume_line(workdir, caplog):
    """The "Stopped at iteration N; resume ... with" line is for a run a signal stopped; one
    that reached max_iter (and snapshotted) ends with "Optimization Done." alone. Mutant C09
    (the line whenever a snapshot exists) prints it."""
    caplog.set_level(logging.INFO)
    (workdir / "s.prototxt").write_text(SOLVER.format(max_iter=4))
    assert main(["train", "-solver", "s.prototxt"]) == 0
    assert (workdir / "snap_iter_4.solverstate").exists()
    assert "Optimization Done." in caplog.messages
    assert not any(m.startswith("Stopped at iteration") for m in caplog.messages)
