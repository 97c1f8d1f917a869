"""Run-folder cases the mutation round of harness/run_folder.py found untested: folders
written by hand as a run writes them (test_edited_files' helpers)."""
from __future__ import annotations

import json

import pytest

from runtime.proto import pb
from runtime.errors import AllconvError
from test_edited_files import RECORD, RESULT, SETTINGS, _folder


def _checkpoint(folder, iteration: int, holds: int | None = None) -> None:
    """A checkpoint's three files, its .solverstate holding iteration ``holds`` (default: its
    own)."""
    for extension in (".caffemodel", ".rngstate"):
        folder.file(f"checkpoint_iter_{iteration}{extension}").write_bytes(b"")
    state = pb.SolverState(iter=iteration if holds is None else holds)
    folder.file(f"checkpoint_iter_{iteration}.solverstate").write_bytes(state.SerializeToString())


def test_the_newest_snapshot_is_by_iteration_not_by_name(tmp_path):
    """A kill between a checkpoint's renames and the pruning leaves two: iteration 12 is
    newer than 8, though its name sorts first."""
    folder = _folder(tmp_path)
    for iteration in (8, 12):
        _checkpoint(folder, iteration)
    assert folder.weights().name == "checkpoint_iter_12.caffemodel"
    assert folder.newest_checkpoint_file().name.startswith("checkpoint_iter_12.")
    assert folder.latest_checkpoint().name == "checkpoint_iter_12.solverstate"


def test_pruning_keeps_only_the_checkpoint_given(tmp_path):
    folder = _folder(tmp_path)
    for iteration in (9, 10, 20):
        _checkpoint(folder, iteration)
    folder.prune_checkpoints(10)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == [
        "checkpoint_iter_10.caffemodel", "checkpoint_iter_10.rngstate",
        "checkpoint_iter_10.solverstate"]


def test_a_resume_compares_every_setting_checkpoint_every_too(tmp_path):
    settings = {**SETTINGS, "checkpoint_every": 1, "eval_every": 0.5}
    folder = _folder(tmp_path, settings)
    assert folder.resumable(settings)
    with pytest.raises(AllconvError, match=r"other settings \(checkpoint_every 1 there, 2 "
                                           r"here\)"):
        folder.resumable({**settings, "checkpoint_every": 2})


def test_a_resume_removes_the_temporary_files_of_a_killed_write(tmp_path):
    folder = _folder(tmp_path)
    stale = tmp_path / ".metrics.jsonl.1234.abcd.tmp"
    stale.write_text("half")
    folder.start(SETTINGS, resume=True)
    assert not stale.exists() and folder.file("run.json").is_file()


def test_a_result_of_another_seed_is_not_this_runs(tmp_path):
    folder = _folder(tmp_path)
    folder.file("result.json").write_text(json.dumps({**RESULT, "seed": 3}))
    with pytest.raises(AllconvError, match=r"not this run's result \(seed 3 there, 0 in "
                                           r"run.json\)"):
        folder.result()


def test_an_earlier_snapshot_of_a_finished_run_exports_its_own_test_error(tmp_path):
    """The result's error is the final snapshot's; a snapshot kept from before has the error
    of the evaluation at its iteration."""
    folder = _folder(tmp_path)
    for iteration, error in ((2, 70.0), (4, 90.0)):
        folder.metrics.write({**RECORD, "iter": iteration, "test_error": error})
        folder.file(f"checkpoint_iter_{iteration}.caffemodel").write_bytes(b"")
    folder.file("result.json").write_text(json.dumps(RESULT))          # test_error 90.0
    early = folder.export_provenance(folder.file("checkpoint_iter_2.caffemodel"))
    final = folder.export_provenance(folder.file("checkpoint_iter_4.caffemodel"))
    assert (early["test_error"], final["test_error"]) == (70.0, 90.0)
    assert early["finished"] and early["snapshot"] == "checkpoint_iter_2.caffemodel"
    assert "not its final one" in folder.snapshot_warning(
        folder.file("checkpoint_iter_2.caffemodel"))


def test_a_snapshot_without_a_record_is_placed_by_the_solvers_iterations(tmp_path):
    """No evaluation at its iteration (a Ctrl-C's checkpoint): its epoch is iteration x
    epochs / max_iter, to 4 decimals as a record's."""
    folder = _folder(tmp_path)
    folder.file("solver.prototxt").write_text('net: "train_test.prototxt" base_lr: 0.01 '
                                              'lr_policy: "fixed" max_iter: 3\n')
    _checkpoint(folder, 1)
    warning = folder.snapshot_warning(folder.file("checkpoint_iter_1.caffemodel"))
    assert "snapshot of iteration 1 (epoch 0.3333 of 1)" in warning


def test_a_checkpoint_renamed_to_another_iteration_is_named_by_export_and_visualize(tmp_path):
    """Found by fuzzing: the files of iteration 1 renamed to iteration 3 were taken as
    iteration 3's (its record's test error in the export's provenance); the .solverstate
    holds the iteration the files are of."""
    folder = _folder(tmp_path)
    _checkpoint(folder, 3, holds=1)
    weights = folder.file("checkpoint_iter_3.caffemodel")
    (tmp_path / "best.caffemodel").symlink_to(weights.name)      # read through a link too
    for read in (folder.export_provenance, folder.snapshot_warning):
        for given in (weights, tmp_path / "best.caffemodel"):
            with pytest.raises(AllconvError, match=r"checkpoint_iter_3.solverstate: named "
                                                   r"iteration 3 but holds iteration 1; was the "
                                                   r"checkpoint renamed\?"):
                read(given)
