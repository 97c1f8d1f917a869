"""harness/curves.py (a mutation round): what curves.png draws, read off the figure before it
is saved: the test loss is the test loss, the PASS band runs from the paper's error up by the
tolerance, a minor tick is labelled only when it starts with 2, 3 or 5, a rise of the lr is no
drop, and an event of the log is neither a point nor an lr step."""
import pytest

from harness import curves

RECORDS = [{"epoch": e, "lr": lr, "train_loss": 1.0 / e, "test_loss": 1.5 / e,
            "test_error": 50.0 / e} for e, lr in
           [(1, 0.01), (2, 0.01), (3, 0.001), (4, 0.001), (5, 0.0001)]]


@pytest.fixture
def figure(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, path, dpi: saved.append(fig))
    curves.plot_curves(RECORDS, tmp_path / "curves.png", "title", paper_error=9.0,
                       tolerance=0.5)
    return saved[0]


def test_the_curves_are_the_records_own(figure):
    left, right = figure.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in left.get_lines()}
    assert lines["test"] == [r["test_loss"] for r in RECORDS]
    assert lines["train (mean since last eval)"] == [r["train_loss"] for r in RECORDS]
    measured = {line.get_label(): list(line.get_ydata()) for line in right.get_lines()}
    assert measured["measured"] == [r["test_error"] for r in RECORDS]


def test_the_pass_band_is_paper_to_paper_plus_tolerance(figure):
    _, right = figure.axes
    band, = [p for p in right.patches if p.get_label().startswith("PASS")]
    ys = band.get_patch_transform().transform(band.get_path().vertices)[:, 1]
    assert (min(ys), max(ys)) == pytest.approx((9.0, 9.5))


def test_minor_ticks_are_labelled_at_2_3_and_5_only(figure):
    minor = figure.axes[1].yaxis.get_minor_formatter()
    assert [minor(v, 0) for v in (0.02, 0.03, 0.05, 0.07, 0.4, 6.0, 30.0)] == [
        "0.02", "0.03", "0.05", "", "", "", "30"]


def test_a_rise_of_the_lr_is_no_drop():
    records = [{"epoch": e, "lr": lr} for e, lr in [(1, 0.01), (2, 0.1), (3, 0.01)]]
    assert curves.lr_drops(records) == [3]


EVALS = [{"iter": 100 * e, "epoch": e, "lr": lr, "train_loss": 1.0 / e, "test_loss": 1.5 / e,
          "test_error": 50.0 / e} for e, lr in [(1, 0.01), (2, 0.01), (3, 0.001)]]
EVENT = {"iter": 350, "epoch": 3.5, "event": "diverged", "loss": "nan", "smoke": False}


def test_an_event_in_the_log_is_no_point_of_the_curves_nor_an_lr_drop(tmp_path, monkeypatch):
    """A run's metrics.jsonl holds evaluations and events (a divergence; run_folder.py): an
    event has no losses, no test error and no lr, so it is neither a point of a curve nor a
    step of the lr schedule."""
    saved = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, path, dpi: saved.append(fig))
    curves.plot_curves(EVALS[:2] + [EVENT] + EVALS[2:] + [EVENT], tmp_path / "curves.png",
                       "title", paper_error=9.0, tolerance=0.5)
    left, right = saved[0].axes
    lines = {line.get_label(): list(line.get_xdata()) for line in left.get_lines()}
    assert lines["test"] == lines["train (mean since last eval)"] == [1, 2, 3]
    drops = [line for line in right.get_lines() if line.get_linestyle() == ":"]
    assert [list(line.get_xdata())[0] for line in drops] == [3]
