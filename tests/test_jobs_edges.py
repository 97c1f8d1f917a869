"""harness/jobs.py edges: the length check before any run, and the note on packs resumed apart."""
import pytest

from harness import jobs
from harness.run import RunOptions
from harness.specs import SPECS_DIR, load_spec
from runtime.errors import AllconvError

REAL = SPECS_DIR / "table3"


def _jobs(spec, tmp_path, pairs, **kw):
    return [(spec, RunOptions(lr=lr, seed=seed, epochs=1, device="cpu", **kw),
             tmp_path / f"lr-{lr:g}-seed-{seed}") for lr, seed in pairs]


def test_the_batch_is_checked_against_the_processes_before_any_run(tmp_path, monkeypatch):
    """jobs.check_lengths: 'Every run's batch splits into the world processes', before any
    data is read: 128 does not split into 3."""
    spec = load_spec(REAL / "all-cnn-c.toml")
    monkeypatch.setattr(jobs, "train_size", lambda spec, data_dir, verify: 50_000)
    jobs.check_lengths(_jobs(spec, tmp_path, [(0.01, 0)]), None, 2)
    with pytest.raises(AllconvError, match="does not split into 3 processes"):
        jobs.check_lengths(_jobs(spec, tmp_path, [(0.01, 0)]), None, 3)


def test_a_row_of_unknown_size_is_left_to_its_run_start(tmp_path):
    """jobs.check_lengths: rows whose size only reading tells (CIFAR-100's pickles) are checked
    as their run starts; a short --epochs is no error here (nor a TypeError)."""
    spec = load_spec(SPECS_DIR / "table4" / "all-cnn-c-cifar100.toml")
    jobs.check_lengths(_jobs(spec, tmp_path, [(0.01, 0)], data_dir=str(tmp_path)),
                       str(tmp_path), 1)
    short = [(spec, RunOptions(lr=0.01, epochs=1e-6, device="cpu", data_dir=str(tmp_path)),
              tmp_path / "run")]
    jobs.check_lengths(short, str(tmp_path), 1)


def test_no_resume_note_when_a_row_resumes_from_one_iteration(tmp_path):
    """jobs.resumed_apart notes rows whose runs resume from checkpoints of *different*
    iterations; two runs both at iteration 4 resume as one pack: no note."""
    spec = load_spec(REAL / "model-a.toml")
    pairs = [(0.25, 0), (0.1, 0)]
    js = _jobs(spec, tmp_path, pairs, resume=True)
    for _, _, run_dir in js:
        run_dir.mkdir()
        for ext in (".caffemodel", ".solverstate", ".rngstate"):
            (run_dir / f"checkpoint_iter_4{ext}").write_bytes(b"")
    assert jobs.resumed_apart(js, 2) == []
    for ext in (".caffemodel", ".solverstate", ".rngstate"):   # run 2 checkpointed apart
        (js[1][2] / f"checkpoint_iter_4{ext}").rename(js[1][2] / f"checkpoint_iter_6{ext}")
    notes = jobs.resumed_apart(js, 2)
    assert len(notes) == 1 and "iterations 4 (lr-0.25-seed-0), 6 (lr-0.1-seed-0)" in notes[0]


def test_a_resumed_run_with_an_incomplete_checkpoint_is_refused_before_any_trains(tmp_path):
    """jobs.check_runs_kept, one of the checks made before any trains: a resumed run's
    checkpoint files must be a complete set, or one line names what it lacks."""
    spec = load_spec(REAL / "model-a.toml")
    [job] = _jobs(spec, tmp_path, [(0.25, 0)], resume=True)
    job[2].mkdir()
    for ext in (".caffemodel", ".solverstate", ".rngstate"):
        (job[2] / f"checkpoint_iter_4{ext}").write_bytes(b"")
    jobs.check_runs_kept([job])                     # a complete set: resumed
    (job[2] / "checkpoint_iter_4.solverstate").unlink()
    with pytest.raises(AllconvError, match=r"lr-0\.25-seed-0: its checkpoint of iteration 4 "
                                           r"lacks its \.solverstate file\(s\)"):
        jobs.check_runs_kept([job])
