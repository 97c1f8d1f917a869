"""harness/report.py edges: how a row's lr is chosen, and row JSONs that must still read back."""
import json

import pytest

from harness import report, run_folder
from harness.specs import SPECS_DIR, load_spec
from runtime.errors import AllconvError

REAL = SPECS_DIR / "table3"


def _run(error, **kw):
    return {"test_error": error, "params_counted": 1, "per_class_accuracy": {},
            "dead_class_units": [], "never_predicted": [], "device": "CPU",
            "wall_seconds": 60.0, "epochs": 350, **kw}


def _result(spec, runs):
    return report.row_result(spec, runs, False, "replicate test",
                             run_folder.length_settings(spec, None, None, None))


def test_with_none_finished_at_the_grid_seed_the_lowest_finished_seed_chooses_the_lr():
    """README / report.row_result: 'where no run finished at that seed, at the lowest seed that
    did' - seed 1 (lr 0.25, 12 %), not seed 2 (lr 0.1, 10 %)."""
    spec = load_spec(REAL / "model-a.toml")
    runs = {(0.25, 0): {"diverged": "diverged at iteration 3"},
            (0.25, 1): _run(12.0), (0.1, 2): _run(10.0)}
    result = _result(spec, runs)
    assert result["grid"]["seed"] == 0
    assert (result["measured"]["lr"], result["measured"]["seeds"]) == (0.25, [1])


def test_a_row_json_of_a_harness_before_partial_still_reads(tmp_path):
    """report.ROW_FIELDS: 'partial' may be absent (FLAG.or_absent): a row JSON written before
    the field existed still makes the table."""
    spec = load_spec(REAL / "model-a.toml")
    result = _result(spec, {(0.25, 0): _run(12.0)})
    path = report.write_row(tmp_path, result)
    data = json.loads(path.read_text())
    del data["partial"]
    path.write_text(json.dumps(data))
    assert report.read_row(tmp_path, spec.table, spec.name)["measured"]["error"] == 12.0


def test_the_row_json_of_a_row_whose_runs_all_diverged_reads_back(tmp_path):
    """A row none of whose runs finished measures no dead units (null): the table, rebuilt by
    every later command, reads its JSON back."""
    spec = load_spec(REAL / "model-a.toml")
    result = _result(spec, {(lr, 0): {"diverged": "diverged at iteration 3"}
                            for lr in (0.25, 0.1)})
    report.write_row(tmp_path, result)
    back = report.read_row(tmp_path, spec.table, spec.name)
    assert back["status"] == "FAIL" and back["measured"]["error"] is None
    assert "lr 0.25 diverged" in report.write_table_readme(tmp_path, spec.table, [spec])
    # a smoke run is refused for the documented reason, not for a field the harness wrote
    with pytest.raises(AllconvError, match="holds a full replication"):
        report.result_path_for(tmp_path, spec.table, spec.name, smoke=True)
