"""The replication harness: specs, metrics, reports, and training end to end on tiny CIFAR files."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import re
import sys
import shlex
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from generator.render import NetOptions, render_net
from harness import cli, commit, jobs, run_folder
from runtime.cli_support import run_cli
from harness.jobs import default_levers
from harness.pipelines import PIPELINES
from harness.evaluation import class_counts, summarize
from harness.report import row_result, status, table_markdown, write_row
from harness.specs import SPECS_DIR, load_spec, load_tables, select
from harness.loop import DeferredInterrupt, Diverged
from harness.run import Run, RunOptions
from harness.train import train
from runtime.data import preprocess
from runtime.distributed import SINGLE
from runtime.errors import AllconvError
from runtime.meta import count_params, meta_net
from same_weights import assert_same_weights

REAL = SPECS_DIR / "table3"
ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- tiny data

def write_cifar10_bin(folder: Path, n_train: int, n_test: int) -> Path:
    """A CIFAR-10 binary release in the official record format, with random pixels."""
    folder = folder / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(path, n, offset):
        labels = ((np.arange(n) + offset) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], 1).tofile(path)
    sizes = np.array_split(np.arange(n_train), 5)
    for i, part in enumerate(sizes, 1):
        write(folder / f"data_batch_{i}.bin", len(part), int(part[0]))
    write(folder / "test_batch.bin", n_test, 0)
    return folder.parent


def cheap_whitening(train, test, device=None, stage=None):
    """Stands in for GCN+ZCA (tested in test_data.py): its 3072x3072 eigh takes a minute here."""
    def scale(x):
        return ((x.astype(np.float32) - 127.5) / 64).astype(np.float32)
    return scale(train), scale(test), preprocess.Whitening(np.zeros(2), np.eye(2))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """This module's XDG cache, with cheap whitening of the tiny data."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(path))
        mp.setattr(preprocess, "gcn_zca", cheap_whitening)
        yield path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, cache):
    return write_cifar10_bin(tmp_path_factory.mktemp("cifar"), n_train=32, n_test=16)


def tiny_spec(folder: Path, row: str, table: str = "tiny", **training) -> Path:
    """A copy of a real table-3 row with its [training] values replaced (e.g. batch_size)."""
    text = (REAL / f"{row}.toml").read_text()
    for key, value in training.items():
        text, n = re.subn(rf"^{key} = [^\"\n]*$", f"{key} = {json.dumps(value)}", text,
                          flags=re.M)
        assert n == 1, key
    path = folder / table / f"{row}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def options(tiny_data, **kw) -> RunOptions:
    return RunOptions(**{"lr": 0.01, "epochs": 1, "data_dir": str(tiny_data), "verify": False,
                         "device": "cpu", "progress": False, "checkpoint_every": 1, **kw})


def test_the_whitening_bar_goes_as_the_progress_bars_go(tiny_data, monkeypatch, capsys):
    """On a terminal the whitening's stage bar shows, but not with --no-progress, nor on a
    torchrun process other than 0 (each drew its own bar on one terminal)."""
    from harness.run import run_data
    spec = load_spec(SPECS_DIR / "table3" / "all-cnn-c.toml")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = {}
    for name, progress, rank in [("on", True, None), ("--no-progress", False, None),
                                 ("rank 1", True, "1")]:
        if rank:
            monkeypatch.setenv("RANK", rank)
            monkeypatch.setenv("WORLD_SIZE", "2")
        run_data(spec, options(tiny_data, progress=progress), torch.device("cpu"))
        shown[name] = "stages" in capsys.readouterr().err
    assert shown == {"on": True, "--no-progress": False, "rank 1": False}


# ----------------------------------------------------------------------------- specs

def test_reproductions_hold_every_paper_row():
    tables = load_tables()
    assert {t: len(rows) for t, rows in tables.items()} == {"table3": 12, "table4": 3, "table6": 1}
    errors = {s.title: s.paper.error for s in tables["table3"]}
    assert errors["Model A"] == 12.47 and errors["ALL-CNN-C"] == 9.08
    assert [s.paper.error for s in tables["table4"]] == [7.25, 33.71, 4.41]
    assert tables["table6"][0].paper.error == 41.2
    for spec in (s for rows in tables.values() for s in rows):
        assert spec.training.lr in spec.training.lr_grid
        assert spec.sources["init"] == "chosen"
        opts = NetOptions(num_classes=spec.num_classes, deploy=True)
        net = meta_net(render_net(spec.variant, opts), 1)
        assert count_params(net) == spec.paper.counted_params, spec.key


@pytest.mark.parametrize("edit, message", [
    (("batch_size = 128", "batch_size = 128\ncolour = 1"), "unknown key 'training.colour'"),
    (("title = ", "titel = "), "unknown key 'titel'"),
    (("tolerance = 0.5\n", ""), "missing key 'paper.tolerance'"),
    (("batch_size = 128", 'batch_size = "128"'), "'training.batch_size' must be int, not str"),
    (("lr = 0.01 ", "lr = true "), "'training.lr' must be int/float, not bool"),
    (('variant = "all-cnn-c"', 'variant = "all-cnn-d"'), "'variant': unknown variant 'all-cnn-d'"),
    (('error = "quoted"', 'error = "guessed"'), "'sources.error' is 'guessed'"),
    (("lr = 0.01 ", "lr = 0.5 "), "'training.lr' 0.5 is not in 'training.lr_grid'"),
    (('dataset = "cifar10"', 'dataset = "mnist"'), "'dataset' is 'mnist'"),
    (('{ variance_norm = "FAN_IN" }', "{ sdt = 1 }"), "'init.weight_filler_args.sdt'"),
    (("batch_size = 128", "batch_size = 128\nsteps = [200, 400]"), "unknown key 'training.steps'"),
    (("batch_size = 128", "batch_size = 0"), "'training.batch_size' must be positive, not 0"),
    # the spec's numbers are checked as the command line's options are (cli_support)
    (("lr_grid = [0.25, 0.1,", "lr_grid = [0.1, 0.1,"), "'training.lr_grid' gives 0.1 twice"),
    (("lr_grid = [0.25,", "lr_grid = [-0.25,"), "'training.lr_grid' must be positive, not -0.25"),
    (("error = 9.08", "error = nan"), "'paper.error' must be a finite number, not nan"),
    (("error = 9.08", "error = 109.08"), "'paper.error' must be at most 100, not 109.08"),
    (("tolerance = 0.5", "tolerance = -3"), "'paper.tolerance' must be 0 or more, not -3"),
    (("tolerance = 0.5", "tolerance = inf"), "'paper.tolerance' must be a finite number"),
    (("lr_grid = [0.25, 0.1, 0.05, 0.01]", "lr_grid = []"), "'training.lr_grid' must be a list"),
    # the filler's arguments as caffe.proto types them
    (('{ variance_norm = "FAN_IN" }', '{ variance_norm = "FAN_OUTX" }'),
     "'init.weight_filler_args.variance_norm' is 'FAN_OUTX'; expected one of FAN_IN, FAN_OUT"),
    (('{ variance_norm = "FAN_IN" }', "{ std = nan }"),
     "'init.weight_filler_args.std' must be a finite number, not nan"),
    (("[paper]", "[paper"), "all-cnn-c.toml: "),
])
def test_spec_errors_name_file_and_key(tmp_path, edit, message):
    text = (REAL / "all-cnn-c.toml").read_text()
    assert edit[0] in text
    path = tmp_path / "all-cnn-c.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(AllconvError, match=re.escape(message)) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_rows_are_found_by_table_name_and_alias():
    tables = load_tables()
    assert [s.key for s in select(["All-CNN-C"], tables)] == ["table3/all-cnn-c"]
    assert [s.key for s in select(["ALL_CNN_C", "all-c", "table3/all-cnn-c"], tables)] == \
        ["table3/all-cnn-c"]
    assert [s.name for s in select(["Table4"], tables)] == \
        ["all-cnn-c-augmented", "all-cnn-c-cifar100", "large-all-cnn"]
    assert select(["strided-c"], tables)[0].name == "strided-cnn-c"
    with pytest.raises(AllconvError, match="unknown table or row 'all-cnn-d' \\(did you mean "
                                           "all-cnn-c, all-cnn-b, all-cnn-a\\?\\); valid tables: "
                                           "table3, table4, table6; valid rows: model-a, "):
        select(["all-cnn-d"], tables)


def test_an_ambiguous_row_asks_for_its_table(tmp_path):
    for table in ("t1", "t2"):
        tiny_spec(tmp_path, "model-a", table)
    with pytest.raises(AllconvError, match="ambiguous: t1/model-a, t2/model-a"):
        select(["model-a"], load_tables(tmp_path))
    assert select(["t2/Model-A"], load_tables(tmp_path))[0].key == "t2/model-a"


# ----------------------------------------------------------------------------- metrics

def test_test_metrics_on_a_hand_made_example():
    scores = torch.tensor([[2.0, 1.0, 0.0, 0.0],    # label 0: right
                           [1.0, 1.0, 0.0, 0.0],    # label 0: the tie goes to class 1 (Caffe)
                           [0.0, 3.0, 0.0, 0.0],    # label 1: right
                           [0.5, 0.0, 0.0, 0.0]])   # label 2: wrong
    labels = torch.tensor([0, 0, 1, 2])
    counts, maxima = class_counts(scores[None], labels)
    m = summarize(counts[0].tolist(), maxima[0].tolist(), 0.0, len(labels))
    assert m["test_error"] == pytest.approx(50.0)
    assert m["per_class"] == [0.5, 1.0, 0.0, None]
    assert m["never_predicted"] == [2, 3]          # the tie predicts class 1
    assert m["dead_units"] == [2, 3]               # zero score on every image


# ----------------------------------------------------------------------------- reports

def _run(error, **kw):
    return {"test_error": error, "params_counted": 1, "per_class_accuracy": {},
            "dead_class_units": ["cat"], "never_predicted": [], "device": "CPU",
            "wall_seconds": 60.0, "epochs": 350, **kw}


def _result(spec, error, smoke=False, runs=None):
    runs = runs or {(spec.training.lr, 0): _run(error)}
    return row_result(spec, runs, smoke, "replicate test",
                      run_folder.length_settings(spec, None, None, None))


def test_pass_fail_smoke_against_the_tolerance():
    spec = load_spec(REAL / "all-cnn-c.toml")             # paper 9.08, tolerance 0.5
    assert status(_result(spec, 9.58)) == "PASS"           # on the edge
    assert status(_result(spec, 5.0)) == "PASS"            # one-sided
    assert status(_result(spec, 9.59)) == "FAIL"
    assert status(_result(spec, 9.0, smoke=True)) == "SMOKE"
    diverged = _result(spec, None, runs={(0.05, 0): {"diverged": "diverged at iteration 3"}})
    assert status(diverged) == "FAIL" and diverged["measured"]["error"] is None
    other = load_spec(REAL / "model-a.toml")
    text = table_markdown("table3", [other, spec], {"all-cnn-c": _result(spec, 9.2)})
    model_a, all_c = [line for line in text.splitlines() if line.startswith("| Model A")
                      or line.startswith("| ALL-CNN-C")]
    assert "| not run |" in model_a
    assert "| 9.20 | +0.12 | 0.5 | **PASS** (partial) | 0.01 | 0 | 9.20 (lr 0.01, seed 0) |" \
        in all_c
    assert "dead class units: cat" in all_c and "Device: CPU." in text
    assert "grid partial: 0.25, 0.1, 0.05 not trained" in all_c


def test_the_table_figure_says_smoke_in_its_title(tmp_path, monkeypatch):
    """Before: only the grey marker's key said so (newcomer24)."""
    import matplotlib.axes
    from harness.report import plot_table
    titles, real = [], matplotlib.axes.Axes.set

    def keep(self, **kwargs):
        titles.append(kwargs.get("title"))
        return real(self, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, "set", keep)
    spec = load_spec(REAL / "all-cnn-c.toml")
    for smoke in (False, True):
        plot_table("table3", [spec], {"all-cnn-c": _result(spec, 9.2, smoke)}, tmp_path / "a.png")
    assert [t for t in titles if t] == ["table3: paper vs measured", "table3: paper vs measured "
                                        "(with SMOKE runs: off the spec's protocol)"]


def test_the_table_figure_keys_its_off_scale_markers(tmp_path, monkeypatch):
    """A 90 % run sits at the edge as an arrow with its value; the key now says what the arrow
    is (it had no entry), and only when one is drawn."""
    import matplotlib.figure
    from harness.report import plot_table
    labels, real = [], matplotlib.figure.Figure.legend

    def legend(self, *args, handles=(), **kwargs):
        labels.extend(h.get_label() for h in handles)
        return real(self, *args, handles=handles, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "legend", legend)
    spec = load_spec(REAL / "all-cnn-c.toml")
    plot_table("table3", [spec], {"all-cnn-c": _result(spec, 9.2)}, tmp_path / "a.png")
    assert "partial grid" in labels and "off the scale (its value)" not in labels
    labels.clear()
    plot_table("table3", [spec], {"all-cnn-c": _result(spec, 90.0)}, tmp_path / "b.png")
    assert "off the scale (its value)" in labels


def test_the_best_lr_is_the_grid_seeds_and_its_seeds_give_mean_and_spread():
    spec = load_spec(REAL / "model-a.toml")
    runs = {(0.1, 0): _run(20.0), (0.05, 0): _run(12.0), (0.01, 0): {"diverged": "boom"},
            (0.25, 0): {"missing": "unfinished at iteration 9"},
            (0.05, 1): _run(12.5), (0.05, 2): _run(11.5, lr_from="--lr"),
            (0.1, 1): _run(11.0)}      # a better single run, at a seed the grid has not
    result = _result(spec, None, runs=runs)
    measured = result["measured"]
    assert measured["lr"] == 0.05 and measured["seeds"] == [0, 1, 2]
    assert measured["error"] == pytest.approx(12.0) and measured["std"] == pytest.approx(0.5)
    assert measured["best_run"] == {"lr": 0.1, "seed": 1, "error": 11.0}
    assert result["partial"] and result["grid"]["missing"] == [0.25]
    line = table_markdown("table3", [spec], {"model-a": result}).splitlines()[4]
    assert "| 12.00 ± 0.50 | -0.47 |" in line and "| 0.05 | 0, 1, 2 | 11.00 (lr 0.1, seed 1) |" \
        in line
    assert "lr 0.01 diverged" in line and "lr 0.25 unfinished at iteration 9" in line
    assert "grid partial: 0.25 not trained" in line
    tie = {(0.01, 0): _run(12.0), (0.05, 0): _run(11.0), (0.01, 1): _run(10.5),
           (0.05, 1): _run(10.5)}      # a tie for the best run goes to the row's lr
    assert _result(spec, None, runs=tie)["measured"]["best_run"] == {
        "lr": 0.05, "seed": 1, "error": 10.5}
    every = {(lr, 0): _run(12.0, lr_from="--lr") for lr in spec.training.lr_grid}
    assert _result(spec, None, runs=every)["measured"]["lr_from"] == "grid"   # the grid chose
    diverged = {(lr, 0): {"diverged": "boom"} for lr in spec.training.lr_grid}
    assert _result(spec, None, runs=diverged)["measured"]["lr_from"] is None


def test_an_unfinished_run_at_a_lower_seed_leaves_the_row_partial_not_failed():
    """Before: seed 0 unfinished and seed 1 finished made seed 0 the grid seed, with nothing
    finished there: no measurement, and a SMOKE row rated FAIL."""
    spec = load_spec(REAL / "model-a.toml")
    runs = {(0.05, 0): {"missing": "unfinished at iteration 9"}, (0.05, 1): _run(12.0)}
    for smoke, rated in ((True, "SMOKE"), (False, "PASS")):      # paper 12.47
        result = _result(spec, None, runs=runs, smoke=smoke)
        assert result["grid"]["seed"] == 1 and result["partial"]
        assert result["measured"]["error"] == 12.0 and status(result) == rated


def test_the_rows_details_are_the_grid_seeds_run_at_the_best_lr():
    """With seeds 0, 1 and 2 at the best lr, the row's per-class figures, dead units, classes
    never predicted, wall time and device are seed 0's, the run that chose the lr (the mean is
    over all three)."""
    spec = load_spec(REAL / "model-a.toml")
    runs = {(lr, 0): _run(20.0) for lr in spec.training.lr_grid}
    runs[0.05, 0] = _run(12.0, per_class_accuracy={"cat": 0.9}, dead_class_units=[],
                         never_predicted=["dog"], wall_seconds=10.0, device="seed 0's")
    for seed in (1, 2):
        runs[0.05, seed] = _run(11.0, per_class_accuracy={"cat": 0.1}, never_predicted=[],
                                wall_seconds=99.0, device="another seed's", lr_from="--lr")
    result = _result(spec, None, runs=runs)
    measured = result["measured"]
    assert measured["seeds"] == [0, 1, 2] and measured["error"] == pytest.approx(34 / 3)
    assert (measured["per_class_accuracy"], measured["dead_class_units"],
            measured["never_predicted"]) == ({"cat": 0.9}, [], ["dog"])
    assert (result["wall_seconds"], result["device"], measured["lr_from"]) == (
        10.0, "seed 0's", "grid")
    line = table_markdown("table3", [spec], {"model-a": result}).splitlines()[4]
    assert "never predicted: dog" in line and "dead class units: cat" not in line


def test_an_eval_limit_of_the_whole_test_set_is_no_limit():
    """--eval-limit 10000 or more evaluates every test image: the run is not a smoke run, and
    its run.json's settings are those of a run without the option (one row in --report)."""
    spec = load_spec(REAL / "all-cnn-c.toml")
    length = run_folder.length_settings
    assert length(spec, None, None, 10_000) == length(spec, None, None, 10**20) == \
        length(spec, None, None, None) and length(spec, None, None, None)["eval_limit"] is None
    assert length(spec, None, None, 9_999)["eval_limit"] == 9_999
    assert not spec.is_smoke(None, None, 10**20) and spec.is_smoke(None, None, 9_999)


def test_the_epochs_column_says_what_the_best_run_trained():
    """--epochs 0.0001 at batch 2 trains 2 iterations, 4 of 50,000 images: 0.00008 epochs
    (written out, as the other rows' 0.03072; it read 8e-05)."""
    spec = load_spec(REAL / "model-a.toml")
    short = _run(80.0, epochs=0.0001, iterations=2, batch_size=2, train_size=50000)
    line = table_markdown("table3", [spec], {"model-a": _result(
        spec, None, runs={(0.05, 0): short})}).splitlines()[4]
    assert "| 0.00008 | 1.0 |" in line
    full = _run(9.0, iterations=136719, batch_size=128, train_size=50000)
    line = table_markdown("table3", [spec], {"model-a": _result(
        spec, None, runs={(0.05, 0): full})}).splitlines()[4]
    assert "| 350 | 1.0 |" in line


def test_a_smoke_result_never_replaces_a_full_one(tmp_path):
    spec = load_spec(REAL / "model-a.toml")
    write_row(tmp_path, _result(spec, 12.0))
    with pytest.raises(AllconvError, match="holds a full replication"):
        write_row(tmp_path, _result(spec, 50.0, smoke=True))


def test_a_metrics_line_cut_short_by_a_kill_is_left_out_and_a_bad_one_named(tmp_path):
    MetricsLog, path = run_folder.MetricsLog, tmp_path / "metrics.jsonl"
    one, two = ({"iter": i, "epoch": i / 10, "event": "diverged"} for i in (1, 2))
    lines = [json.dumps(one), json.dumps(two)]
    path.write_text(f'{lines[0]}\n{lines[1]}\n{{"iter": 3, "test_e')
    assert MetricsLog(path).records() == [one, two]
    path.write_text(f'{lines[0]}\n{lines[1]}')                  # whole, its newline not yet
    assert MetricsLog(path).records() == [one, two]
    path.write_text(f'{lines[0]}\n{{"iter": 2, "te\n{lines[1]}\n')
    # the file's line, not the JSON parser's (before: "a line is not JSON: ... line 1 column 16")
    with pytest.raises(AllconvError, match=f"^{path}, line 2, column 16: not JSON \\(Invalid "
                                           r"control character\); was it edited\?"):
        MetricsLog(path).records()
    path.write_text(f'{lines[0]}\n{{"iter": 2, "te\n')             # complete, so not cut short
    with pytest.raises(AllconvError, match=f"^{path}, line 2, column 16: not JSON"):
        MetricsLog(path).records()


def test_metrics_lines_are_strict_json_a_speed_not_measured_is_null(tmp_path):
    """Found by a new user: the first evaluation after a start or a resume wrote
    "images_per_s": NaN, which JSON has not (Node's JSON.parse throws; jq made it null)."""
    log = run_folder.MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"iter": 1, "epoch": 0.1, "event": "start", "images_per_s": float("nan")})
    log.write({"iter": 2, "epoch": 0.2, "event": "next", "images_per_s": float("inf")})
    log.truncate(2)

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line, parse_constant=strict)["images_per_s"] for line in lines] == [
        None, None]


@pytest.mark.parametrize("text, why", [('{"bad', "cannot read it as JSON"),
                                       ("[1]", "holds a JSON list, not an object")])
def test_a_corrupt_row_json_is_named_in_one_line(tmp_path, text, why):
    spec = load_spec(REAL / "model-a.toml")
    path = tmp_path / "table3" / "model-a.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(AllconvError, match=f"^{path}: {why}"):
        write_row(tmp_path, _result(spec, 50.0, smoke=True))
    write_row(tmp_path, _result(spec, 12.0))        # a full result (--report's) replaces it
    assert json.loads(path.read_text())["smoke"] is False


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("status"), ": no 'status' field; was it edited? (replicate --report "),
    (lambda r: r.update(status="INCOMPLETE"), ": its 'status' field is \"INCOMPLETE\", not "
                                              "one of PASS, FAIL, SMOKE"),
    (lambda r: r["measured"].update(error="x"),
     ", measured: its 'error' field is \"x\", not a number or null"),
    (lambda r: r["runs"][0].update(lr=None), ", runs[0]: its 'lr' field is null")])
def test_another_rows_edited_json_is_named_when_the_table_is_rebuilt(tmp_path, edit, message):
    """Before: a KeyError traceback in every later command that rebuilt the table."""
    from harness.report import write_table_readme
    specs = load_tables()["table3"]
    row = json.loads((ROOT / "results" / "table3" / "all-cnn-c.json").read_text())
    edit(row)
    path = tmp_path / "table3" / "model-a.json"
    path.parent.mkdir()
    path.write_text(json.dumps(row))
    with pytest.raises(AllconvError, match=f"^{re.escape(str(path) + message)}"):
        write_table_readme(tmp_path, "table3", specs)


def test_a_row_schedule_is_its_variants():
    """The TOMLs hold no length or steps: 350 epochs for CIFAR, Table 6's 450,000
    iterations of batch 64 (22.5 epochs of ImageNet's 1,281,167 images) for ImageNet."""
    specs = {s.name: s for table in load_tables().values() for s in table}
    assert specs["all-cnn-c"].epochs == 350 and specs["large-all-cnn"].epochs == 350
    assert specs["imagenet"].epochs == pytest.approx(450_000 * 64 / 1_281_167)


# ----------------------------------------------------------------------------- training

def test_replicate_a_two_row_table_end_to_end(tmp_path, tiny_data, capsys):
    for row in ("model-a", "all-cnn-c"):
        tiny_spec(tmp_path / "specs", row, batch_size=16)
    out = tmp_path / "results"
    code = cli.main(["tiny", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
                     "--no-verify", "--epochs", "1", "--device", "cpu", "--out", str(out),
                     "--no-progress"])
    assert code == 0
    readme = (out / "tiny" / "README.md").read_text()
    assert readme == capsys.readouterr().out.rstrip("\n") + "\n"
    assert readme.count("**SMOKE**") == 2 and "PASS" not in readme.split("\n\n")[2]
    assert readme.split("\n\n")[1] == "![tiny: paper vs measured](tiny.png)"
    assert (out / "tiny" / "tiny.png").read_bytes()[:4] == b"\x89PNG"
    for row, params in (("model-a", 839_242), ("all-cnn-c", 1_369_738)):
        result = json.loads((out / "tiny" / f"{row}.json").read_text())
        assert result["smoke"] and result["status"] == "SMOKE"
        assert result["params_counted"] == params and result["paper"]["params"] > 0
        assert 0 <= result["measured"]["error"] <= 100 and result["measured"]["lr"] == 0.01
        assert len(result["measured"]["per_class_accuracy"]) == 10
        assert result["iterations"] == 2 and result["train_size"] == 32
        assert result["torch"] == torch.__version__ and result["seed"] == 0
        run_dir = out / "tiny" / row / "lr-0.01-smoke"
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["iter"] for r in records] == [2] and all(r["smoke"] for r in records)
        assert (run_dir / "curves.png").stat().st_size > 0
        assert [p.name for p in sorted(run_dir.glob("checkpoint_*"))] == [
            "checkpoint_iter_2.caffemodel", "checkpoint_iter_2.rngstate",
            "checkpoint_iter_2.solverstate"]


def test_resume_continues_bit_identically(tmp_path, tiny_data):
    # 32 images in batches of 12 (batches straddle passes), flips and translations on.
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    spec = dataclasses.replace(spec, pipeline=PIPELINES["flip-translate"])
    opts = options(tiny_data, epochs=2)
    straight = train(spec, opts, tmp_path / "straight")
    assert straight["iterations"] == 5
    stopped = train(spec, dataclasses.replace(opts, time_limit=0), tmp_path / "resumed")
    assert stopped == {"finished": False, "stopped_by": "time_limit", "iter": 3,
                       "epoch": 1.125, "run_dir": str(tmp_path / "resumed")}
    resumed = train(spec, dataclasses.replace(opts, resume=True), tmp_path / "resumed")
    assert resumed["test_error"] == straight["test_error"]
    assert resumed["test_loss"] == straight["test_loss"]
    assert_resumed_as_straight(tmp_path)
    for name in ("straight", "resumed"):
        records = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["iter"] for r in records] == [3, 5]


def test_resume_from_a_checkpoint_lacking_a_layer_is_refused(tmp_path, tiny_data):
    """Caffe's restore keeps a layer the weights lack at its filler's values; a resumed run
    would not continue as it was, so --resume refuses, naming the file and the layer."""
    from runtime.caffemodel import read_layers, write_weights
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    train(spec, dataclasses.replace(opts, time_limit=0), tmp_path / "run")
    weights = tmp_path / "run" / "checkpoint_iter_3.caffemodel"
    kept = [(name, "", blobs) for name, blobs in read_layers(weights) if name != "conv3"]
    write_weights(weights, kept)
    with pytest.raises(AllconvError, match=re.escape(f"{weights}: no weights for layer(s) "
                                                     "conv3 (the file has: ")):
        train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")


def test_resume_with_the_checkpoints_metrics_lost_is_refused(tmp_path, tiny_data):
    """The checkpoint keeps how many records its metrics.jsonl held: a log removed or cut
    since is refused, not continued without a word into a result with evaluations missing;
    the log is left as it was, and put back the run resumes."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    train(spec, dataclasses.replace(opts, time_limit=0), tmp_path / "run")
    log = tmp_path / "run" / "metrics.jsonl"
    whole = log.read_bytes()
    assert whole.count(b"\n") == 1
    for damaged in (None, whole[:-9]):          # removed; its last line cut short
        log.unlink(missing_ok=True)
        if damaged is not None:
            log.write_bytes(damaged)
        with pytest.raises(AllconvError, match=re.escape(
                f"{log}: 0 record(s) up to iteration 3, where the checkpoint was written after "
                "1: it was removed or cut; put it back")):
            train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")
        assert (log.read_bytes() if log.exists() else None) == damaged
    log.write_bytes(whole)
    assert train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")["iterations"] == 5


def _cuda_feed(state, device=True):
    state["feed"]["generator"] = torch.zeros(16, dtype=torch.uint8)   # a Philox state
    if device:
        state["feed"]["device"] = "cuda:0"
    else:                   # an H200's checkpoint of 2026-12-04, before the device was kept
        del state["feed"]["device"]


def _cuda_dropout(state):
    """Masks drawn from CUDA generators: harness runs key their masks (their checkpoints hold no
    generator state), so this reaches a Dropout layer through allconv-caffe's solver on CUDA;
    the edit stands in for one here."""
    state["dropout"] = {name: {"cuda:0": torch.zeros(16, dtype=torch.uint8)}
                        for name in state["dropout"]}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("edit, message", [
    (_cuda_feed, "the data order was drawn on CUDA and this run draws it on the CPU: resume the "
                 "run on CUDA"),
    (lambda state: _cuda_feed(state, device=False), "the data order's generator state does not "
     "fit this run's generator on the CPU: resume the run on the device it trained on"),
    (_cuda_dropout, "layer 'drop0' holds the state of a cuda:0 generator and this machine has "
                    "no CUDA: resume the run on CUDA"),
])
def test_resume_of_a_cuda_checkpoint_without_cuda_is_one_line(tmp_path, tiny_data, edit,
                                                              message):
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    train(spec, dataclasses.replace(opts, time_limit=0), tmp_path / "run")
    rng = tmp_path / "run" / "checkpoint_iter_3.rngstate"
    state = torch.load(rng, weights_only=True)
    assert state["feed"]["device"] == "cpu"
    assert sorted(state["dropout"]) == ["drop0", "drop1", "drop2"]
    edit(state)
    torch.save(state, rng)
    with pytest.raises(AllconvError, match=re.escape(
            f"{rng}: not a state this run can restore ({message})")):
        train(spec, dataclasses.replace(opts, resume=True), tmp_path / "run")


def assert_resumed_as_straight(tmp_path):
    """tmp_path/resumed ended with tmp_path/straight's weights at iteration 5, and its records
    go on with the checkpoint's running loss (a mean over steps on both sides of the
    interruption) and its training seconds."""
    assert_same_weights(tmp_path / "straight" / "checkpoint_iter_5.caffemodel",
                        tmp_path / "resumed" / "checkpoint_iter_5.caffemodel")
    records = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text()
                .splitlines()] for run in ("straight", "resumed")]
    assert [r["train_loss"] for r in records[0]] == [r["train_loss"] for r in records[1]]
    assert records[1][-1]["seconds"] > records[1][0]["seconds"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_checkpoints_the_finished_iteration_and_resumes_exactly(tmp_path, tiny_data,
                                                                       monkeypatch, signum):
    """Ctrl-C, or SIGTERM (a scheduler's, timeout's): the same clean stop."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    straight = train(spec, opts, tmp_path / "straight")
    real_step = Run.step

    def step(self):   # the signal arrives during iteration 2, before its update
        if self.iter == 1:
            os.kill(os.getpid(), signum)
        return real_step(self)
    monkeypatch.setattr(Run, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(spec, opts, tmp_path / "resumed")
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint_*.solverstate")) == [
        "checkpoint_iter_2.solverstate"]
    monkeypatch.setattr(Run, "step", real_step)
    resumed = train(spec, dataclasses.replace(opts, resume=True), tmp_path / "resumed")
    assert resumed["test_loss"] == straight["test_loss"]
    assert_resumed_as_straight(tmp_path)


@pytest.mark.parametrize("which", [0, -1])
def test_a_stop_at_an_evaluation_evaluates_first(tmp_path, tiny_data, monkeypatch, which):
    """Before: Ctrl-C in the step of an evaluation's iteration (the first evaluation; the
    last iteration) checkpointed without it, and the resumed run never made it: its record
    was missing, the next train_loss averaged twice the steps, and at the last iteration the
    result took the evaluation before as the final test error. At the last iteration the run
    now ends complete."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    straight = train(spec, opts, tmp_path / "straight")
    records = [json.loads(line) for line in
               (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    at = records[which]["iter"]
    real_step = Run.step

    def step(self):
        if self.iter == at - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self)
    monkeypatch.setattr(Run, "step", step)
    if which == -1:         # the last iteration: the run is complete and ends as usual
        resumed = train(spec, opts, tmp_path / "resumed")
        assert DeferredInterrupt.consume()          # the command's next run stops at once
    else:
        with pytest.raises(KeyboardInterrupt):
            train(spec, opts, tmp_path / "resumed")
        monkeypatch.setattr(Run, "step", real_step)
        resumed = train(spec, dataclasses.replace(opts, resume=True), tmp_path / "resumed")
    assert (resumed["test_error"], resumed["test_loss"]) == (straight["test_error"],
                                                             straight["test_loss"])
    again = [json.loads(line) for line in
             (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    keys = ("iter", "train_loss", "test_error", "test_loss")
    assert [[r.get(k) for k in keys] for r in again] == [[r.get(k) for k in keys]
                                                         for r in records]


def test_a_ctrl_c_during_an_evaluation_stops_after_it_and_says_so(tmp_path, tiny_data,
                                                                  monkeypatch, capsys):
    """Before: the signal waited for the next iteration and its whole evaluation (on 2 cores
    90 s of silence for CIFAR's test set), and the checkpoint was one iteration late. Now the
    run checkpoints the iteration whose evaluation it was, said at the signal."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    opts = options(tiny_data, epochs=2)
    straight = train(spec, opts, tmp_path / "straight")
    first = json.loads((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[0])
    real_evaluate = Run.evaluate

    def evaluate(self, *args, **kwargs):
        if self.iter == first["iter"]:
            os.kill(os.getpid(), signal.SIGINT)
        return real_evaluate(self, *args, **kwargs)
    monkeypatch.setattr(Run, "evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(spec, opts, tmp_path / "resumed")
    err = capsys.readouterr().err
    assert "replicate: Ctrl-C: stopping when the running iteration (and its evaluation, when " \
           "one is due) ends" in err and err.count("stopping when") == 1
    # not a terminal (no ^C, no progress bar to end): no blank line before it
    assert not err.startswith("\n") and "\n\nreplicate: Ctrl-C" not in err
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint_*.solverstate")) == [
        f"checkpoint_iter_{first['iter']}.solverstate"]
    monkeypatch.setattr(Run, "evaluate", real_evaluate)
    resumed = train(spec, dataclasses.replace(opts, resume=True), tmp_path / "resumed")
    assert (resumed["test_error"], resumed["test_loss"]) == (straight["test_error"],
                                                             straight["test_loss"])


def test_a_resumed_run_keeps_how_its_lr_was_chosen(tmp_path, tiny_data, monkeypatch):
    """Found by a new user: a grid run resumed with --lr (its lr, named by hand) was recorded
    as "--lr", which the table then notes as an lr set by hand."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    real_step = Run.step

    def step(self):
        if self.iter == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self)
    monkeypatch.setattr(Run, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(spec, options(tiny_data, epochs=2, lr_from="grid"), tmp_path / "run")
    monkeypatch.setattr(Run, "step", real_step)
    result = train(spec, options(tiny_data, epochs=2, lr_from="--lr", resume=True),
                   tmp_path / "run")
    assert result["lr_from"] == "grid"
    assert run_folder.RunFolder.read(tmp_path / "run").lr_from == "grid"


def test_a_run_another_process_trains_is_refused(tmp_path, tiny_data, monkeypatch):
    """Two commands training one run folder wrote into it together (metrics.jsonl of both);
    the lock is the kernel's flock, per open file: this process's second open conflicts too.
    It holds under another TMPDIR (before: a lock file in each command's temporary folder)."""
    import tempfile
    from harness.run_folder import RunFolder
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=16))
    folder = tmp_path / "row" / "run"
    with RunFolder(folder).lock():                  # as another process's train holds it
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with pytest.raises(AllconvError, match=f"^{re.escape(str(folder))}: another process is "
                                               "training this run"):
            train(spec, options(tiny_data), folder)
        assert not folder.exists()
    assert "test_error" in train(spec, options(tiny_data), folder)


def test_resume_of_a_run_another_process_trains_says_only_that(tmp_path, tiny_data, capsys):
    """Before: "has no checkpoint ...; it starts from the beginning" and then the refusal."""
    from harness.run_folder import RunFolder
    from runtime.cli_support import run_cli
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    folder = tmp_path / "out" / "tiny" / "model-a" / "lr-0.01-smoke"
    with RunFolder(folder).lock():
        assert run_cli(cli.main, "replicate", [
            "model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--no-progress", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (f"replicate: error: {folder}: another process is training this run (it "
                   f"holds {folder.parent / '.lr-0.01-smoke.lock'}); wait for it to end, or "
                   "stop it\n")


@pytest.mark.parametrize("place", ["file", "loop"])
def test_a_file_or_a_link_to_nothing_where_a_run_folder_goes_is_one_line(
        tmp_path, tiny_data, capsys, place):
    """Found by fuzzing: a link in a loop there was a traceback out of Path.resolve, a file
    "File exists" after the note that the run starts afresh. A link to a folder is a folder
    the run trains into, where the link leads."""
    from runtime.cli_support import run_cli
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    folder = tmp_path / "out" / "tiny" / "model-a" / "lr-0.01-smoke"
    folder.parent.mkdir(parents=True)
    if place == "file":
        folder.write_text("x")
    else:
        folder.symlink_to(folder.name)
    argv = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--no-progress"]
    for resume in ([], ["--resume"]):
        assert run_cli(cli.main, "replicate", argv + resume) == 2
        what = "a file" if place == "file" else "a symbolic link that leads to no folder"
        assert capsys.readouterr().err == (f"replicate: error: {folder}: {what}, where this "
                                           "run's folder goes: remove it, or give another --out\n")
    folder.unlink()
    (tmp_path / "elsewhere").mkdir()
    folder.symlink_to(tmp_path / "elsewhere")
    assert run_cli(cli.main, "replicate", argv) == 0
    assert (tmp_path / "elsewhere" / "result.json").is_file() and folder.is_symlink()


def test_a_batch_file_cut_short_is_named_before_the_length_check(tmp_path, capsys):
    """Before: "0.001 epochs of 40,325 images is less than one iteration" (the sizes' count
    rounded down) for a release whose data_batch_3.bin was cut mid-record."""
    from runtime.cli_support import run_cli
    data = write_cifar10_bin(tmp_path, n_train=50, n_test=10)
    cut = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    cut.write_bytes(cut.read_bytes()[:-100])
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--data", str(data), "--no-verify",
                                           "--epochs", "0.001", "--out",
                                           str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"replicate: error: {cut} is not a cifar-10-batches-bin file: its {10 * 3073 - 100} "
        "bytes are not a whole number of 3073-byte records\n")


def test_an_out_folder_inside_a_run_folder_is_refused(tmp_path, capsys):
    """Before: runs/x/table3/all-cnn-c/lr-0.01-smoke/table3/... was made without a word."""
    from runtime.cli_support import run_cli
    run = tmp_path / "table3" / "all-cnn-c" / "lr-0.01-smoke"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--epochs", "1", "--out",
                                           str(run / "again")]) == 2
    assert capsys.readouterr().err == (
        f"replicate: error: --out {run / 'again'}: inside the run folder {run.resolve()}; give "
        "the folder that holds the tables (the one above <table>/<row>/)\n")
    assert not (run / "again").exists()


def test_an_ignored_sighup_stays_ignored():
    """nohup's SIGHUP: a run the user meant to outlive the terminal is not stopped by it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with DeferredInterrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == DeferredInterrupt.request
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)    # a script's background job
    try:
        with DeferredInterrupt():
            assert signal.getsignal(signal.SIGINT) == DeferredInterrupt.request   # kill -INT
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("here, there, stops, said", [
    (None, None, False, None), ("SIGINT", None, True, "SIGINT"),
    (None, "SIGTERM", True, "SIGTERM"), ("SIGTERM", "SIGHUP", True, "SIGHUP")])
def test_torchrun_processes_agree_on_the_signal_that_stops_them(here, there, stops, said):
    """Process 0 said "Ctrl-C" (and exited 130) when another process got a SIGTERM: every
    process now takes the signal one of them holds (the lowest number, where several)."""
    from types import SimpleNamespace
    other = torch.tensor(signal.Signals[there].value if there else 99)
    ranks = SimpleNamespace(device=torch.device("cpu"),
                            min=lambda mine: torch.minimum(mine, other))
    DeferredInterrupt.requested, DeferredInterrupt.received = here is not None, here or "SIGINT"
    try:
        assert DeferredInterrupt.agree(ranks) is stops
        assert DeferredInterrupt.requested is False
        if stops:
            assert DeferredInterrupt.received == said
    finally:
        DeferredInterrupt.requested, DeferredInterrupt.received = False, "SIGINT"


def test_resume_refuses_other_settings(tmp_path, tiny_data):
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=16))
    train(spec, options(tiny_data, time_limit=0), tmp_path / "run")
    with pytest.raises(AllconvError, match=r"other settings \(seed 0 there, 1 here\); give its "
                                           r"settings, or remove the folder \(or --out DIR\) "
                                           r"to start it again$"):
        train(spec, options(tiny_data, seed=1, resume=True), tmp_path / "run")


def test_resume_refuses_other_data(tmp_path, tiny_data):
    """The settings leave out where the data lies, not which whitened data it is."""
    other = tmp_path / "other"
    shutil.copytree(tiny_data, other)
    batch = other / "cifar-10-batches-bin" / "data_batch_1.bin"
    pixels = bytearray(batch.read_bytes())
    pixels[1] ^= 0xFF
    batch.write_bytes(bytes(pixels))
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=16))
    assert train(spec, options(tiny_data, epochs=2, time_limit=0), tmp_path / "run")[
        "stopped_by"] == "time_limit"
    record = (tmp_path / "run" / "run.json").read_text()
    with pytest.raises(AllconvError, match=r"cannot resume .*run: it trained on the whitening "
                                           r"cifar10-\w+, the data given now gives cifar10-\w+; "
                                           r"give --data with the release it trained on$"):
        train(spec, options(other, epochs=2, resume=True), tmp_path / "run")
    assert (tmp_path / "run" / "run.json").read_text() == record
    assert "test_error" in train(spec, options(tiny_data, epochs=2, resume=True),
                                 tmp_path / "run")                      # its own data: goes on


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch):
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=16))
    real_inputs = Run.next_inputs

    def next_inputs(self):   # NaN images from the 3rd iteration: after epoch 1's checkpoint
        inputs = real_inputs(self)
        if self.iter >= 2:
            inputs["data"] = inputs["data"] * float("nan")
        return inputs
    monkeypatch.setattr(Run, "next_inputs", next_inputs)
    # caught at the first non-finite loss (the 3rd iteration), not at the next display
    with pytest.raises(Diverged, match=r"diverged at iteration 3 \(epoch 1.50\): the loss is nan; "
                                       r"the last good checkpoint is .*checkpoint_iter_2"):
        train(spec, options(tiny_data, epochs=3), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*")) == [
        "checkpoint_iter_2.caffemodel", "checkpoint_iter_2.rngstate",
        "checkpoint_iter_2.solverstate"]
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["iter"] == 3


def test_ctrl_c_in_the_iteration_that_diverges_keeps_the_last_good_checkpoint(
        tmp_path, tiny_data, monkeypatch):
    """Ctrl-C during the first iteration with a NaN loss: the run is reported as diverged and
    its NaN weights are not checkpointed over the good checkpoint of iteration 2."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=16))
    real_inputs = Run.next_inputs

    def next_inputs(self):
        inputs = real_inputs(self)
        if self.iter >= 2:
            inputs["data"] = inputs["data"] * float("nan")
            os.kill(os.getpid(), signal.SIGINT)
        return inputs
    monkeypatch.setattr(Run, "next_inputs", next_inputs)
    with pytest.raises(Diverged, match=r"diverged at iteration 3 .*checkpoint_iter_2"):
        train(spec, options(tiny_data, epochs=3), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*")) == [
        "checkpoint_iter_2.caffemodel", "checkpoint_iter_2.rngstate",
        "checkpoint_iter_2.solverstate"]


def test_a_huge_lr_diverges_into_a_failed_row(tmp_path, tiny_data, capsys):
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    code = cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
                     "--no-verify", "--device", "cpu", "--lr", "1e6", "--eval-every", "0.5",
                     "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == cli.EXIT_FAIL
    err = capsys.readouterr().err
    assert "tiny/model-a at lr 1e+06 diverged at iteration" in err
    result = json.loads((tmp_path / "out" / "tiny" / "model-a.json").read_text())
    assert result["status"] == "FAIL" and not result["smoke"]
    assert result["runs"][0]["diverged"]


# ----------------------------------------------------------------------------- command line

def test_cli_errors_are_one_line(capsys):
    assert run_cli(cli.main, "replicate", ["all-cnn-d"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("replicate: error: unknown table or row")
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--epochs", "0"]) == 2
    assert "argument --epochs: must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, why", [
    ("--shard", "-1/2", "--shard -1/2: K must be in 0..N-1"),
    ("--lr", "-1e-3", "argument --lr: must be positive, not -1e-3"),
    ("--epochs", "-.5", "argument --epochs: must be positive, not -.5"),
    ("--lr", "-inf", "argument --lr: must be a finite number, not -inf")])
def test_a_negative_value_is_judged_not_taken_for_an_option(capsys, option, value, why):
    """argparse took "-1/2" or "-1e-3" for an unknown option: "expected one argument"."""
    assert run_cli(cli.main, "replicate", ["all-cnn-c", option, value]) == 2
    assert why in capsys.readouterr().err


def test_cli_lists_rows_and_a_row_without_its_data_is_an_error(capsys, tmp_path):
    assert cli.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "table3/all-cnn-c" in listing and "table6/imagenet" in listing
    assert cli.main(["table4", "all-cnn-c", "--list"]) == 0      # the rows named, in order
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "table4/all-cnn-c-augmented", "table4/all-cnn-c-cifar100", "table4/large-all-cnn",
        "table3/all-cnn-c"]
    assert run_cli(cli.main, "replicate", ["table9", "--list"]) == 2
    assert "unknown table or row 'table9'" in capsys.readouterr().err
    # each column its entries' own: the dataset, the augmentation, numbers right-aligned
    assert cli.main(["large-all-cnn", "all-cnn-c", "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "row                   model          dataset  augmentation  paper %  tol    lr  batch  "
        "length",
        "table4/large-all-cnn  Large ALL-CNN  cifar10  large            4.41  0.5  0.01     64  "
        "350 epochs",
        "table3/all-cnn-c      ALL-CNN-C      cifar10  none             9.08  0.5  0.01    128  "
        "350 epochs"]
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--lr", "0.1", "--lr-search"]) == 2
    assert capsys.readouterr().err == ("replicate: error: --lr conflicts with --lr-search: "
                                       "give one\n")
    # --list lists: an option it would ignore is named, as given (--no-progress is display)
    assert cli.main(["table3", "--list", "--no-progress"]) == 0
    capsys.readouterr()
    for option, named in ((["--lr", "0.1"], "--lr"), (["--cuda-graphs"], "--cuda-graphs"),
                          (["--no-channels-last"], "--no-channels-last"),
                          (["--no-verify"], "--no-verify"), (["--pack", "3"], "--pack")):
        assert run_cli(cli.main, "replicate", ["table3", "--list"] + option) == 2
        assert capsys.readouterr().err == (f"replicate: error: {named} does nothing with "
                                           "--list, which only lists the rows: drop it\n")
    # ImageNet is never downloaded: without --data its row, alone or in its table, stops
    # before anything trains with one line and exit status 2, never a skip
    for target in ("table6", "imagenet", "table6/imagenet"):
        assert run_cli(cli.main, "replicate", [target, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err == ("replicate: error: table6/imagenet needs --data DIR: an ImageFolder tree "
                       "with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageNet is not "
                       "downloaded)\n")
    assert run_cli(cli.main, "replicate", ["table6", "--data", str(tmp_path),
                                               "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"replicate: error: table6/imagenet: {tmp_path}/train: no "
                                       "such folder (--data must hold train/<wnid>/*.JPEG and "
                                       "val/<wnid>/*.JPEG)\n")
    # a folder without CIFAR stops the table's first row before anything trains
    assert run_cli(cli.main, "replicate", ["table3", "table6", "--data", str(tmp_path),
                                               "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("replicate: error: table3/model-a: CIFAR-10 train files not found") and \
        err.count("\n") == 1
    assert not (tmp_path / "table3").exists()


def test_curves_mark_each_lr_drop_at_the_first_evaluation_after_it(tmp_path):
    from harness.curves import lr_drops, plot_curves
    records = [{"epoch": e, "lr": lr, "train_loss": 1.0 / e, "test_loss": 1.2 / e,
                "test_error": 50.0 / e} for e, lr in
               [(1, 0.01), (2, 0.01), (3, 0.001), (4, 0.001), (5, 0.0001)]]
    assert lr_drops(records) == [3, 5]
    assert lr_drops(records[:2]) == []
    plot_curves(records, tmp_path / "curves.png", "title", paper_error=9.08, tolerance=0.5)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("figure", ["curves", "table", "draw", "visualize"])
def test_a_figure_interrupted_while_written_leaves_the_one_before(figure, tmp_path, monkeypatch):
    """Before: replicate's curves.png and <table>.png and gen-prototxt --draw were written in
    place, so a kill mid-write left a broken picture where the last good one was."""
    import matplotlib.figure
    from generator.cli import main as gen_prototxt
    from harness.curves import plot_curves
    from harness.report import plot_table
    from visualize.figures import grid_figure
    path = tmp_path / "f.png"
    path.write_bytes(b"the figure before")

    def torn(self, target, **_):
        (target.write if hasattr(target, "write") else open(target, "wb").write)(b"\x89PNG")
        raise KeyboardInterrupt
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", torn)
    spec = load_spec(REAL / "all-cnn-c.toml")
    draw = {"curves": lambda: plot_curves([{"epoch": 1, "lr": 0.01, "train_loss": 1.0,
                                            "test_loss": 1.0, "test_error": 50.0}], path, "t"),
            "table": lambda: plot_table("table3", [spec], {"all-cnn-c": _result(spec, 9.2)},
                                        path),
            "draw": lambda: gen_prototxt(["--variant", "all-c", "--draw", str(path)]),
            "visualize": lambda: grid_figure(path, [("a", [np.zeros((3, 3, 3))])], "t", 1)}
    with pytest.raises(KeyboardInterrupt):
        draw[figure]()
    assert path.read_bytes() == b"the figure before"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


@pytest.mark.parametrize("epochs, ticks", [((0.0002, 0.0004), ["0.0002", "0.00025", "0.0003",
                                                             "0.00035", "0.0004"]),
                                           ((0, 350), ["0", "100", "200", "300"])])
def test_curves_label_a_few_plain_epochs(epochs, ticks):
    """Before: a SMOKE run's epochs ran into each other (0.000200, 0.000250, ... in a row)."""
    from runtime.plotting import pyplot
    from harness.curves import _label_epochs
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5, 4))
    axis.plot(epochs, [1.0, 2.0])
    _label_epochs(axis.xaxis)
    fig.canvas.draw()
    shown = [t.get_text() for t in axis.get_xticklabels()
             if epochs[0] <= t.get_position()[0] <= epochs[1]]
    plt.close(fig)
    assert shown == ticks


def test_benchmark_sweep_and_packs_side_by_side(capsys, tmp_path):
    """The tiny CPU version: every lever set against the baseline, then packs of 1 and 2
    against solo runs one after another, loops on streams of one process and loops in
    processes."""
    from benchmarks.train_throughput import main
    out_json = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "0", "--sweep",
                 "--pack", "1,2", "--routes", "pack,streams,processes",
                 "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("CPU ") for line in lines)
    record = json.loads(out_json.read_text())
    assert record["batch"] == 2 and record["torch"] == torch.__version__
    assert record["commit"] == commit.git_commit()
    rows = record["rows"]
    assert [(r["precision"], r["loop"]) for r in rows] == [
        ("fp32", "baseline"), ("fp32", "eager"), ("fp32", "channels-last")]
    base = rows[0]["train_images_per_s"]
    for row in rows[1:]:
        assert row["ratio"] == pytest.approx(row["train_images_per_s"] / base)
        assert row["projected_minutes"] == pytest.approx(
            350 * (50_000 / row["train_images_per_s"] + 10_000 / row["eval_images_per_s"]) / 60)
    fastest = max(rows[1:], key=lambda r: r["train_images_per_s"])
    assert f"CPU fastest: fp32 {fastest['loop']}: {fastest['ratio']:.2f}x" in "\n".join(lines)
    packs = record["packs"]
    routes = [(k, route) for k in (1, 2) for route in ("pack", "solo", "streams", "processes")]
    assert [(r["members"], r["route"]) for r in packs] == routes
    solo = fastest["train_images_per_s"]
    for row in packs:
        assert row["vs_solo"] == pytest.approx(row["train_images_per_s"] / solo)
    table = lines[lines.index(f"CPU packs (fp32 {fastest['loop']}): total images/s of K runs, "
                              "training and evaluation") + 2:]
    assert [tuple(line.split()[1:3]) for line in table[:8]] == [
        (str(k), route) for k, route in routes]
    best = max((r for r in packs if r["route"] != "solo"), key=lambda r: r["train_images_per_s"])
    assert table[8].startswith(f"CPU fastest: {best['route']} of K={best['members']}, ")
    assert main(["--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "0",
                 "--pack", "2", "--routes", "streams", "--profile"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines if line.startswith("CPU  2")] == ["solo", "streams"]
    assert any(line.startswith("CPU profile of the solo loop:") for line in lines)
    with pytest.raises(AllconvError, match="--routes and --profile go with --pack"):
        main(["--device", "cpu", "--routes", "streams"])


def test_benchmark_projects_350_epochs_from_slices(capsys, tmp_path):
    from benchmarks.train_throughput import EPOCHS, main
    out_json = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "0",
                 "--channels-last", "--slices", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:3] for line in lines[2:4]] == [["fp32", "baseline"],
                                                          ["fp32", "channels-last"]]
    solo, pack = json.loads(out_json.read_text())["slices"]
    assert (solo["members"], pack["members"], pack["lrs"]) == (1, 4, [0.25, 0.1, 0.05, 0.01])
    for s in (solo, pack):
        half = s["seconds"] - s["first_half_seconds"]
        assert s["projected_350_seconds"] == pytest.approx(
            s["first_half_seconds"] + (EPOCHS / 0.5 - 1) * half)
    ratio = pack["projected_350_seconds"] / solo["projected_350_seconds"]
    assert lines[-1] == (
        f"CPU slices of 1 epoch (synthetic, evaluated every 0.5): solo {solo['seconds']:.1f} s, "
        f"pack of 4 {pack['seconds']:.1f} s; projected 350 epochs: solo "
        f"{solo['projected_350_seconds']:.0f} s (target 150 s), pack "
        f"{pack['projected_350_seconds']:.0f} s = {ratio:.2f}x the solo run (target 1.5x)")


def test_commit_falls_back_to_the_environment_outside_a_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(commit.subprocess, "run", no_git)
    monkeypatch.delenv(commit.COMMIT_ENV, raising=False)
    assert commit.git_commit() is None
    monkeypatch.setenv(commit.COMMIT_ENV, "0123abc")
    assert commit.git_commit() == "0123abc"


def test_commit_in_the_environment_wins_over_a_stale_checkout(monkeypatch):
    """The device's copy of the tree once carried the session's starting .git: its HEAD named
    the wrong commit, and "-dirty"."""
    monkeypatch.setenv(commit.COMMIT_ENV, "0123abc")
    assert commit.git_commit() == "0123abc"
    monkeypatch.delenv(commit.COMMIT_ENV)
    assert commit.git_commit() != "0123abc"


def test_rows_in_parallel_match_one_after_another(tmp_path, tiny_data):
    for row in ("model-a", "model-b"):
        tiny_spec(tmp_path / "specs", row, batch_size=16)
    args = ["tiny", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data), "--no-verify",
            "--epochs", "1", "--device", "cpu", "--no-progress"]
    assert cli.main(args + ["--out", str(tmp_path / "serial")]) == 0
    # more processes than packs start one per pack (before: 2^31 was an OverflowError from
    # multiprocessing, a traceback)
    assert cli.main(args + ["--out", str(tmp_path / "parallel"), "--rows-in-parallel",
                            "2147483648"]) == 0
    for row in ("model-a", "model-b"):
        serial, parallel = (json.loads((tmp_path / out / "tiny" / f"{row}.json").read_text())
                            for out in ("serial", "parallel"))
        assert serial["measured"] == parallel["measured"]


def test_progress_shows_no_figure_before_it_exists_and_the_evaluation_as_it_runs(capsys):
    from types import SimpleNamespace

    from harness.loop import Progress
    from runtime.distributed import SINGLE

    run = SimpleNamespace(label="tiny/model-a lr 0.01 SMOKE", max_iter=10, iter=0)
    opts = RunOptions(lr=0.01, progress=True)
    with Progress(run, opts, SINGLE, {"seconds": 0.0}) as bar:
        bar.show(3)
        assert "test acc" not in str(bar.bar) and "loss" not in str(bar.bar)
        bar.show(5, loss="2.3026")
        bar.show(5, **{"test acc": "evaluating 500/10000"})
        assert "loss 2.3026 test acc evaluating 500/10000" in str(bar.bar)
        assert bar.bar.n == 5
    with Progress(run, opts, SINGLE, {"seconds": 1.0, "test_error": 60.0}) as bar:
        assert "test acc 40.00%" in bar.bar.postfix   # a resumed run shows its last figure
    capsys.readouterr()


def test_cuda_runs_default_to_the_measured_fastest_levers(monkeypatch):
    """CUDA graphs + channels-last unless a flag says otherwise; the CPU keeps eager NCHW."""
    parse = cli.build_parser().parse_args
    assert default_levers(parse(["all-cnn-c", "--device", "cpu"])) == \
        {"cuda_graphs": False, "channels_last": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_levers(parse(["all-cnn-c"])) == {"cuda_graphs": True, "channels_last": True}
    assert default_levers(parse(["all-cnn-c", "--no-cuda-graphs"])) == \
        {"cuda_graphs": False, "channels_last": True}
    assert default_levers(parse(["all-cnn-c", "--device", "cpu", "--channels-last"])) == \
        {"cuda_graphs": False, "channels_last": True}


def test_bad_runs_are_refused_before_any_row_trains(tmp_path, tiny_data, capsys):
    """Less than one iteration, CIFAR files missing from --data for a later row of a table, and
    a smoke run over a full result: one line each, exit 2, and nothing trained."""
    from runtime.cli_support import run_cli
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    base = ["model-a", "--specs", str(tmp_path / "specs"), "--no-verify", "--device", "cpu",
            "--no-progress"]
    out = tmp_path / "out"
    short = base + ["--data", str(tiny_data), "--epochs", "0.001", "--out", str(out)]
    assert run_cli(cli.main, "replicate", short) == 2
    err = capsys.readouterr().err
    assert "is less than one iteration of batch 16" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "out2"
    assert run_cli(cli.main, "replicate", base + ["--data", str(tmp_path), "--epochs", "1",
                                                  "--out", str(out)]) == 2
    assert "CIFAR-10 train files not found" in capsys.readouterr().err
    assert not (out / "tiny" / "model-a").exists()
    full = out / "tiny" / "model-a.json"
    full.parent.mkdir(parents=True)
    full.write_text((ROOT / "results" / "table3" / "all-cnn-c.json").read_text())   # not smoke
    assert run_cli(cli.main, "replicate", base + ["--data", str(tiny_data), "--epochs", "1",
                                                  "--out", str(out)]) == 2
    assert "holds a full replication" in capsys.readouterr().err
    assert not (out / "tiny" / "model-a").exists()


@pytest.mark.parametrize("device, cuda_devices, message", [
    ("tpu", 0, "unknown device 'tpu'; valid: cpu, cuda, cuda:N"),
    ("cuda", 0, "device 'cuda' asked for, but torch sees no CUDA device"),
    ("cuda:0", 0, "device 'cuda:0' asked for, but torch sees no CUDA device"),
    ("cuda:1", 1, "device 'cuda:1' asked for, but torch sees 1 CUDA device(s): cuda:0"),
    ("cuda:4", 2, "device 'cuda:4' asked for, but torch sees 2 CUDA device(s): cuda:0 to cuda:1"),
])
def test_a_device_this_machine_lacks_is_one_line(capsys, monkeypatch, device, cuda_devices,
                                                 message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_devices)
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--device", device]) == 2
    assert capsys.readouterr().err == (f"replicate: error: argument --device: {message} "
                                       "(see --help)\n")


def test_a_run_stopped_before_its_first_record_is_unfinished_not_unstarted(tmp_path):
    """A --deadline or Ctrl-C before the first evaluation leaves a checkpoint and an empty
    metrics.jsonl: the row's note said "not started"."""
    from harness.run_folder import RunFolder
    folder = RunFolder(tmp_path / "run")
    folder.start({"lr": 0.05}, resume=True)
    for extension in (".caffemodel", ".solverstate", ".rngstate"):
        (folder.path / f"checkpoint_iter_7{extension}").write_bytes(b"")
    assert folder.outcome() == {"missing": "unfinished at iteration 7"}


def test_run_folder_names_outcomes_and_checkpoints(tmp_path):
    from harness.run_folder import RunFolder, run_name
    assert [run_name(0.05), run_name(0.05, 4), run_name(0.01, smoke=True),
            run_name(0.1, 2, smoke=True)] == ["lr-0.05", "lr-0.05-seed-4", "lr-0.01-smoke",
                                              "lr-0.1-seed-2-smoke"]
    folder = RunFolder(tmp_path / "run")
    assert folder.outcome() == {"missing": "not started"}
    folder.start({"lr": 0.05}, resume=True)                      # no run.json: a fresh start
    assert folder.path.is_dir()
    folder.metrics.write({"iter": 3, "epoch": 1.5, "lr": 0.05, "train_loss": 1.0,
                          "test_loss": 1.0, "test_error": 50.0, "per_class": [0.5],
                          "never_predicted": [], "dead_units": [], "seconds": 2.0})
    assert folder.outcome() == {"missing": "unfinished at iteration 3"}
    folder.metrics.write({"iter": 4, "epoch": 2.0, "event": "diverged"})
    assert folder.outcome() == {"diverged": "diverged at iteration 4 (epoch 2.00)"}
    for iteration in (10, 7):
        for extension in (".caffemodel", ".solverstate", ".rngstate"):
            (folder.path / f"checkpoint_iter_{iteration}{extension}").write_bytes(b"")
    (folder.path / "checkpoint_iter_2.rngstate").write_bytes(b"")    # a pruning cut short
    assert folder.latest_checkpoint().name == "checkpoint_iter_10.solverstate"
    (folder.path / "checkpoint_iter_10.solverstate").unlink()
    assert folder.latest_checkpoint().name == "checkpoint_iter_7.solverstate"
    for extension in (".caffemodel", ".rngstate"):
        (folder.path / f"checkpoint_iter_7{extension}").unlink()
    # files with no complete set: refused (before: "no checkpoint", and a fresh start
    # deleted the iteration-10 weights), but beside a finished run's result
    with pytest.raises(AllconvError, match=r"run: its checkpoint of iteration 10 lacks its "
                                           r"\.solverstate file\(s\); put them back, or remove"):
        folder.latest_checkpoint()
    folder.file("result.json").write_text("{}")
    assert folder.latest_checkpoint() is None
    folder.file("result.json").unlink()
    (folder.path / "checkpoint_iter_10.solverstate").write_bytes(b"")
    folder.prune_checkpoints(10)
    assert sorted(p.name for p in folder.path.glob("checkpoint_*")) == [
        "checkpoint_iter_10.caffemodel", "checkpoint_iter_10.rngstate",
        "checkpoint_iter_10.solverstate"]
    folder.start({"lr": 0.05}, resume=False)                      # a fresh start: an empty folder
    assert list(folder.path.iterdir()) == []


@pytest.mark.parametrize("lr", ["0.01", "0.05"])
def test_the_committed_gpu_runs_read_as_run_folders(lr):
    """results/table3's runs carry the deploy net and provenance a run writes today (their
    snapshots stay out of git)."""
    from harness.run_folder import RunFolder
    from runtime.proto import pb
    run = RunFolder.read(ROOT / "results" / "table3" / "all-cnn-c" / f"lr-{lr}")
    spec = load_spec(REAL / "all-cnn-c.toml")
    assert (run.variant, run.dataset, run.config["lr"]) == ("all-c", "cifar10", float(lr))
    assert run.classes == list(spec.dataset.class_names)
    assert run.provenance["whitening"]["cache_entry"].endswith("cifar10-a29c02eb0e5081874db4")
    assert run.deploy().read_text() == render_net(
        spec.variant, NetOptions(num_classes=10, deploy=True, init=spec.init))
    assert count_params(meta_net(run.deploy(), pb.TEST)) == spec.paper.counted_params
    assert run.outcome()["lr"] == float(lr) and run.outcome()["finished"]
    with pytest.raises(AllconvError, match="no snapshot .* give --weights"):
        run.weights()


def test_a_run_parses_each_prototxt_once_and_transforms_the_message(tmp_path, monkeypatch):
    """The rendered net is parsed once (so are the solver and the deploy net); its Data layers
    become Input layers of each phase's batch in a transformed copy, from which both nets are
    built; the rendered message keeps its Data layers, as the record has them."""
    from harness.datasets import Data
    from runtime import prototxt
    parsed = []
    real = prototxt._parse_text
    monkeypatch.setattr(prototxt, "_parse_text",
                        lambda text, message, name: parsed.append(name) or real(text, message,
                                                                                 name))
    spec = load_spec(tiny_spec(tmp_path, "all-cnn-c", batch_size=6))
    g = torch.Generator().manual_seed(0)
    data = Data(torch.randn(12, 3, 32, 32, generator=g), torch.arange(12) % 10,
                torch.randn(7, 3, 32, 32, generator=g), torch.arange(7) % 10)
    run = Run(spec, [(RunOptions(lr=0.01, epochs=1, device="cpu"), tmp_path / "run")], data,
              torch.device("cpu"), "fp32")
    assert sorted(parsed) == ["<all-c solver>", "<all-c>", "<all-c>"]
    assert [l.type for l in run.prototxt.net.param.layer[:2]] == ["Data", "Data"]
    assert run.net.blobs["data"].shape == (6, 3, 32, 32)
    assert run.eval_net.blobs["data"].shape == (7, 3, 32, 32)
    assert not (tmp_path / "run").exists()   # the record is written by train(), not by Run


# ----------------------------------------------------------------------------- issue 18

def test_report_gives_back_the_table_the_runs_wrote(tmp_path, tiny_data, capsys):
    """Run folders in, the same README table out: the spec's lr, then a hand-set --lr (the
    better one) in a second command; --report, with or without --lr-search, writes what the
    second command wrote."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    base = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert cli.main(base) == 0
    assert cli.main(base + ["--lr", "0.05"]) == 0
    folder = tmp_path / "out" / "tiny"
    wrote = (folder / "README.md").read_text()
    row = json.loads((folder / "model-a.json").read_text())
    assert [(r["lr"], r["lr_from"]) for r in row["runs"]] == [(0.01, "spec"), (0.05, "--lr")]
    assert row["partial"] and row["grid"]["missing"] == [0.25, 0.1]
    line = next(line for line in wrote.splitlines() if line.startswith("| Model A"))
    best = min(row["runs"], key=lambda r: r["test_error"])
    assert f"| {best['lr']:g} | 0 |" in line and "grid partial: 0.25, 0.1 not trained" in line
    assert ("lr 0.05 set by hand (--lr)" in line) == (best["lr"] == 0.05)
    for extra in ([], ["--lr-search"]):
        (folder / "README.md").unlink()
        (folder / "model-a.json").unlink()
        report = ["model-a", "--specs", str(tmp_path / "specs"), "--epochs", "1", "--out",
                  str(tmp_path / "out"), "--report"]
        assert cli.main(report + extra) == 0
        assert (folder / "README.md").read_text() == wrote
        again = json.loads((folder / "model-a.json").read_text())
        assert again["measured"] == row["measured"] and again["runs"] == row["runs"]
    capsys.readouterr()


def test_the_committed_table3_is_what_its_run_folders_report(tmp_path, capsys):
    """results/table3 as committed: `replicate table3 --report` over a copy of its run folders
    writes the committed README: 9.96 % at lr 0.05, the complete grid's choice (its run was
    trained with a hand-set --lr, which the table no longer says), lr 0.1 and 0.25 dead."""
    import shutil
    shutil.copytree(ROOT / "results" / "table3", tmp_path / "table3",
                    ignore=shutil.ignore_patterns("*.json", "README.md", "*.png"))
    for folder in (ROOT / "results" / "table3" / "all-cnn-c").iterdir():
        for name in ("run.json", "result.json"):
            shutil.copy(folder / name, tmp_path / "table3" / "all-cnn-c" / folder.name / name)
    assert cli.main(["table3", "--report", "--out", str(tmp_path)]) == cli.EXIT_FAIL
    committed = (ROOT / "results" / "table3" / "README.md").read_text()
    assert (tmp_path / "table3" / "README.md").read_text() == committed
    line = next(line for line in committed.splitlines() if line.startswith("| ALL-CNN-C"))
    assert "| 9.96 | +0.88 | 0.5 | **FAIL** | 0.05 | 0 |" in line
    assert "set by hand" not in line and "before CaffeSGD" in line
    assert "lr 0.1: 10 dead class units, 90.00 %; lr 0.25: 10 dead class units" in line
    capsys.readouterr()


def test_a_run_in_another_rows_folder_is_named_by_report(tmp_path, capsys):
    """Before: --report left it out without a word."""
    import shutil
    moved = tmp_path / "table3" / "model-c" / "lr-0.25"
    shutil.copytree(ROOT / "results" / "table3" / "all-cnn-c" / "lr-0.25", moved)
    assert run_cli(cli.main, "replicate", ["table3", "--report", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"replicate: error: {moved}: a run of table3/all-cnn-c "
                                       "in table3/model-c's folder; move it to its own row's "
                                       "folder\n")


def test_list_columns_line_up_on_every_row(capsys):
    assert cli.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = lines[0]
    for line in lines[1:]:
        title = line.split()[1]
        assert line.index(" " + title) + 1 == head.index("model"), line
        dataset = next(d for d in ("cifar100", "cifar10", "imagenet") if f"  {d}  " in line)
        assert line.index(f"  {dataset}  ") + 2 == head.index("dataset"), line
        assert line.index(" epochs" if "epochs" in line else " iterations") > head.index(
            "length"), line
        assert line[:head.index("paper %") + 7].endswith(line.split()[-6]), line  # right-aligned
    assert any(line.startswith("table6/imagenet") for line in lines)


def test_an_evaluation_at_a_small_epoch_is_labelled_with_its_precision(tmp_path, capsys,
                                                                        cache):
    data = write_cifar10_bin(tmp_path / "cifar", n_train=400, n_test=8)
    tiny_spec(tmp_path / "specs", "model-a", batch_size=2)
    assert cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(data),
                     "--no-verify", "--epochs", "0.01", "--eval-every", "0.005", "--device",
                     "cpu", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "at lr 0.01, epoch 0.0050: classes never predicted" in err


def test_epochs_are_labelled_with_the_digits_they_need():
    from harness.loop import format_epoch
    assert [format_epoch(e) for e in (0.005, 0.0051, 0.01, 0.099, 0.1, 1.0, 350.0006)] == [
        "0.0050", "0.0051", "0.010", "0.099", "0.10", "1.00", "350.00"]


def test_the_class_warnings_follow_their_sets():
    """Never-predicted classes and dead class units: each warned at the first evaluation,
    again only when its set changes, and once when it empties (dead units were not warned)."""
    import contextvars
    from types import SimpleNamespace

    from harness.loop import Loop
    written = []
    loop = Loop.__new__(Loop)
    loop.run = SimpleNamespace(epoch=1.0, data=SimpleNamespace(classes=list("abcdefghij")),
                               spec=SimpleNamespace(key="table3/x"),
                               members=[SimpleNamespace(opts=SimpleNamespace(lr=0.1, seed=0))])
    loop.bar = SimpleNamespace(write=written.append)
    loop.class_warned = [{"never_predicted": [], "dead_units": []}]
    for epoch, never, dead in ((1, [0, 1], [1]), (2, [0, 1], [1]), (3, [1], [1]), (4, [], []),
                               (5, [], []), (6, [2], [])):
        loop.run.epoch = float(epoch)
        metrics = {"never_predicted": never, "dead_units": dead}
        contextvars.Context().run(loop._warn_classes, 0, metrics)   # outside a command line
    assert written == [
        "warning: table3/x at lr 0.1, epoch 1.00: classes never predicted: a, b (warned again "
        "when this changes)",
        "warning: table3/x at lr 0.1, epoch 1.00: dead class units (0 on every test image): b "
        "(warned again when this changes)",
        "warning: table3/x at lr 0.1, epoch 3.00: classes never predicted: b (warned again when "
        "this changes)",
        "warning: table3/x at lr 0.1, epoch 4.00: every class predicted again",
        "warning: table3/x at lr 0.1, epoch 4.00: no class unit dead any more",
        "warning: table3/x at lr 0.1, epoch 6.00: classes never predicted: c (warned again when "
        "this changes)"]
    loop.run.data.classes = [f"c{i}" for i in range(100)]
    written.clear()
    contextvars.Context().run(loop._warn_classes, 0, {"never_predicted": list(range(11)),
                                                      "dead_units": list(range(10))})
    assert written[0].endswith(": classes never predicted: c0, c1, c2, c3, c4, c5, c6, c7, c8, "
                               "c9 and 1 more (warned again when this changes)")
    assert written[1].endswith("(0 on every test image): c0, c1, c2, c3, c4, c5, c6, c7, c8, "
                               "c9 (warned again when this changes)")


def test_never_predicted_classes_are_warned_when_they_change(tmp_path, capsys, cache):
    """Once per change of the set (metrics.jsonl keeps every evaluation's), not at each
    evaluation of a net that predicts one class for 350 epochs."""
    data = write_cifar10_bin(tmp_path / "cifar", n_train=400, n_test=8)
    tiny_spec(tmp_path / "specs", "model-a", batch_size=2)
    assert cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(data),
                     "--no-verify", "--epochs", "0.05", "--eval-every", "0.005", "--device",
                     "cpu", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("replicate: warning: tiny/model-a")
                and "dead class units" not in line and "no class unit dead" not in line]
    metrics = tmp_path / "out" / "tiny" / "model-a" / "lr-0.01-smoke" / "metrics.jsonl"
    sets = [json.loads(line)["never_predicted"] for line in metrics.read_text().splitlines()
            if "never_predicted" in line]
    changes = [now for before, now in zip([[]] + sets, sets) if now != before]
    assert len(sets) == 10 and 1 <= len(changes) < len(sets)
    assert len(warnings) == len(changes)
    for warning, now in zip(warnings, changes):
        assert warning.endswith("(warned again when this changes)" if now
                                else "every class predicted again")


def test_progress_shows_a_slow_speed_with_its_precision(tmp_path, tiny_data, capsys,
                                                        monkeypatch):
    """A clock that runs 50 s a step of 2 images: 0.04 images/s, not "0 img/s" (the real
    seconds of a step, a few on a loaded machine, move only the last digits)."""
    import time
    tiny_spec(tmp_path / "specs", "model-a", batch_size=2)
    offset, real_clock, real_step = [0.0], time.perf_counter, Run.step
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + offset[0])

    def step(self):
        offset[0] += 50.0
        return real_step(self)
    monkeypatch.setattr(Run, "step", step)
    assert cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
                     "--no-verify", "--epochs", "0.125", "--device", "cpu",
                     "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"speed 0\.0[34]\d* img/s", err), err[-500:]
    assert "speed 0 img/s" not in err


def test_speed_before_any_timed_step_is_a_dash():
    """A run of one iteration ends before a step is timed: "–", not "nan img/s"."""
    from harness.loop import format_speed
    assert [format_speed(v) for v in (float("nan"), 0.0412, 57.25, 1234.5)] == [
        "–", "0.0412", "57.2", "1,234"]


def test_a_training_label_past_the_classes_is_one_line_read_with_the_flags(tmp_path, tiny_data,
                                                                          monkeypatch, capsys):
    """The loss layer clamps it and records it on the device; the loop's next host read (every
    iteration on the CPU) turns it into one line naming the layer, and exit status 2."""
    from runtime.cli_support import run_cli
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    real_inputs = Run.next_inputs

    def next_inputs(self):
        inputs = real_inputs(self)
        if self.iter == 1:
            inputs["label"] = inputs["label"].clone()
            inputs["label"][5] = 12
        return inputs
    monkeypatch.setattr(Run, "next_inputs", next_inputs)
    assert run_cli(cli.main, "replicate", [
        "model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data), "--no-verify",
        "--epochs", "2", "--device", "cpu", "--out", str(tmp_path / "out"),
        "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("replicate: error: layer 'loss' (SoftmaxWithLoss): label 12 is outside "
                        "its 10 classes (0 to 9)\n"), err


# ----------------------------------------------------------------------------- a new user

@pytest.mark.parametrize("given, message", [
    (["--seed", str(2**64)], "argument --seed: must be at most 4294967295 (Caffe's seed is an "
                             f"unsigned int), not {2**64}"),
    (["--seed", "1,4294967296"], "argument --seed: must be at most 4294967295"),
    (["--seed", "-1"], "argument --seed: must be 0 or more, not -1"),
    (["--lr", "nan"], "argument --lr: must be a finite number, not nan"),
    (["--lr", "0.01,inf"], "argument --lr: must be a finite number, not inf"),
    (["--lr", "1e400"], "argument --lr: must be a finite number, not 1e400"),
    (["--lr", "-0.1"], "argument --lr: must be positive, not -0.1"),
    (["--deadline", "nan"], "argument --deadline: must be a finite number, not nan"),
    (["--time-limit", "inf"], "argument --time-limit: must be a finite number, not inf"),
    (["--time-limit", "0"], "argument --time-limit: must be positive, not 0"),   # as --deadline
    (["--epochs", "NaN"], "argument --epochs: must be a finite number, not NaN"),
    (["--eval-every=-inf"], "argument --eval-every: must be a finite number, not -inf"),
    (["--batch-size", "1.5"], "argument --batch-size: '1.5' is not an integer"),
    (["--lr", "0.01,0.01"], "argument --lr: 0.01 is given twice in '0.01,0.01'"),
    (["--lr", "0.05,0.01,5e-2"], "argument --lr: 0.05 is given twice in '0.05,0.01,5e-2'"),
    (["--seed", "0,1,0"], "argument --seed: 0 is given twice in '0,1,0'"),
    # two lrs that differ only past the run folder's 6 digits: one folder, emptied by the other
    (["--lr", "0.05,0.05000001", "--pack", "2"], "--lr 0.05 and 0.05000001 would share the run "
                                                 "folder lr-0.05 "),
    # an option is taken only as spelt: --epoch would silently be --epochs
    (["--epoch", "1"], "unrecognized arguments: --epoch 1 (did you mean --epochs?)"),
    (["--epoch=1"], "unrecognized arguments: --epoch=1 (did you mean --epochs?)"),
    # another command's spelling of the option (export-onnx's --output)
    (["--output", "runs"], "unrecognized arguments: --output runs (did you mean --out?)"),
    (["--resume", "--report"], "--resume does nothing with --report, which trains nothing: "
                               "drop it"),
    (["--report", "--deadline", "60"], "--deadline does nothing with --report"),
    (["--report", "--pack", "2"], "--pack does nothing with --report"),
    # before: the table of every run, with the lr and seed asked for in no way chosen
    (["--report", "--lr", "0.3", "--seed", "5"], "--lr does nothing with --report"),
    (["--report", "--seed", "5"], "--seed does nothing with --report"),
    (["--report", "--no-verify"], "--no-verify does nothing with --report"),
    (["--cuda-graphs", "--device", "cpu"], "--cuda-graphs does nothing on cpu: CUDA graphs "
                                           "need a CUDA device; drop it"),
    (["--cuda-graphs"], "--cuda-graphs does nothing on this machine (torch sees no CUDA "
                        "device)"),
    (["--batch-per-process"], "--batch-per-process does nothing without torchrun: one process "
                              "takes the spec's batch; drop it"),
])
def test_a_bad_number_or_an_option_that_does_nothing_is_one_line_and_leaves_nothing(
        tmp_path, capsys, monkeypatch, given, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    assert run_cli(cli.main, "replicate", ["all-cnn-c", "--out", str(out)] + given) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"replicate: error: {message}") and err.count("\n") == 1, err
    assert not out.exists()


def test_report_on_a_missing_out_folder_is_one_line(tmp_path, capsys):
    """Before: exit 0 and twelve "no run finished yet" lines, nothing written."""
    out = tmp_path / "nonexistent"
    assert run_cli(cli.main, "replicate", ["table3", "--report", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"replicate: error: --out {out}: no such folder "
                                       "(--report reads the run folders that training wrote "
                                       "there)\n")
    assert not out.exists()
    out.write_text("")
    assert run_cli(cli.main, "replicate", ["table3", "--report", "--out", str(out)]) == 2
    assert f"--out {out}: a file, not a folder" in capsys.readouterr().err


def test_the_largest_seed_is_caffes_and_cuda_graphs_stay_with_cuda(monkeypatch):
    parse = cli.build_parser().parse_args
    assert parse(["all-cnn-c", "--seed", "4294967295,0"]).seed == [4294967295, 0]
    cli._check_args(parse(["all-cnn-c", "--device", "cpu", "--no-cuda-graphs"]), cli.build_parser())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cli._check_args(parse(["all-cnn-c", "--cuda-graphs"]), cli.build_parser())


def test_help_names_both_stops_of_exit_status_3(capsys):
    assert run_cli(cli.main, "replicate", ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "3 stopped by --time-limit or --deadline (rerun with --resume)" in text
    assert "0..4294967295 (Caffe's seed is an unsigned int)" in text


def test_the_device_line_counts_threads_and_processes(monkeypatch):
    from harness.run import device_name
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert device_name(torch.device("cpu")) == "CPU (1 thread)"
    assert device_name(torch.device("cpu"), 2) == "CPU (1 thread) × 2 processes"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert device_name(torch.device("cpu")) == "CPU (4 threads)"


def test_a_refused_length_reads_no_data_and_makes_no_folder(tmp_path, tiny_data, capsys,
                                                            monkeypatch):
    from harness import datasets
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    monkeypatch.setattr(datasets, "prepared_cifar", lambda *a, **k: pytest.fail("data read"))
    out = tmp_path / "out"
    assert run_cli(cli.main, "replicate", [
        "model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data), "--no-verify",
        "--device", "cpu", "--epochs", "0.001", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("replicate: error: tiny/model-a: 0.001 epochs of 32 "
                                       "images is less than one iteration of batch 16\n")
    assert not out.exists()


def test_a_fresh_start_refuses_a_finished_runs_folder(tmp_path, tiny_data, capsys):
    """The README's `replicate all-cnn-c` once started afresh in the committed
    results/table3/all-cnn-c/lr-0.01 and emptied it; --out is now runs/ unless given, and a
    finished run is kept: refused in one line without --resume, kept with it."""
    assert cli.build_parser().parse_args(["all-cnn-c"]).out == Path("runs")
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    out = tmp_path / "out"
    train = ["model-a", "--specs", str(tmp_path / "specs"), "--out", str(out), "--data",
             str(tiny_data), "--no-verify", "--device", "cpu", "--no-progress", "--epochs",
             "0.5", "--eval-limit", "8"]
    assert cli.main(train + ["--lr", "0.01"]) == 0
    folder = out / "tiny" / "model-a" / "lr-0.01-smoke"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    assert run_cli(cli.main, "replicate", train + ["--lr", "0.01,0.02"]) == 2
    assert capsys.readouterr().err == (f"replicate: error: {folder} holds a finished run: "
                                       "--resume keeps it, --out DIR writes elsewhere; remove "
                                       "the folder to train it again\n")
    assert not (out / "tiny" / "model-a" / "lr-0.02-smoke").exists()
    assert cli.main(train + ["--lr", "0.01", "--resume"]) == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_fresh_start_refuses_an_unfinished_runs_checkpoint(tmp_path, tiny_data, capsys):
    """Before: rerunning a stopped run's command without --resume emptied its folder, its
    checkpoint with it, without a word."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    out = tmp_path / "out"
    train = ["model-a", "--specs", str(tmp_path / "specs"), "--out", str(out), "--data",
             str(tiny_data), "--no-verify", "--device", "cpu", "--no-progress", "--epochs",
             "2", "--eval-limit", "8", "--checkpoint-every", "1", "--lr", "0.01"]
    assert run_cli(cli.main, "replicate", train + ["--time-limit", "0.001"]) == 3
    [folder] = (out / "tiny" / "model-a").glob("lr-*")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    assert run_cli(cli.main, "replicate", train) == 2
    assert capsys.readouterr().err == (f"replicate: error: {folder} holds an unfinished run "
                                       "(its checkpoint checkpoint_iter_2): --resume keeps it, "
                                       "--out DIR writes elsewhere; remove the folder to train "
                                       "it again\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert cli.main(train + ["--resume"]) == 0


def finished_smoke_run(tmp_path, tiny_data) -> tuple[list[str], Path]:
    """A finished SMOKE run of model-a at lr 0.01: the replicate arguments that choose it (add
    --report, say) and its folder."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    out = tmp_path / "out"
    base = ["model-a", "--specs", str(tmp_path / "specs"), "--out", str(out), "--epochs", "0.5"]
    assert cli.main(base + ["--data", str(tiny_data), "--no-verify", "--device", "cpu",
                            "--no-progress", "--lr", "0.01"]) == 0
    return base, out / "tiny" / "model-a" / "lr-0.01-smoke"


def test_report_names_a_run_stopped_before_its_first_record(tmp_path, tiny_data, capsys):
    """A run stopped before its first evaluation (a checkpoint, an empty metrics.jsonl) was
    "not started", and --report said only "no finished run"."""
    base, run = finished_smoke_run(tmp_path, tiny_data)
    (run / "result.json").unlink()
    (run / "metrics.jsonl").write_text("")
    assert run_cli(cli.main, "replicate", base + ["--report"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("no finished run of model-a at these settings (1 unfinished: --resume "
                        "continues)\n")


def test_report_shows_only_runs_of_its_settings_and_names_the_others(tmp_path, tiny_data,
                                                                      capsys):
    """A shard of SMOKE runs prints the --report command of its settings, which makes the
    table; a --report of other settings says which settings the runs have, prints no table
    and leaves the written one alone; --resume notes the runs it starts from the beginning
    (here at the largest seed), and only those."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    out = tmp_path / "out"
    base = ["model-a", "--specs", str(tmp_path / "specs"), "--out", str(out)]
    train = base + ["--data", str(tiny_data), "--no-verify", "--device", "cpu", "--no-progress",
                    "--epochs", "0.5", "--eval-limit", "8"]
    assert cli.main(train + ["--lr", "0.01,0.02", "--shard", "0/2"]) == 0
    err = capsys.readouterr().err
    report = shlex.split(err.split("when every shard is done, ")[1].split(" writes the")[0])
    assert report == ["replicate"] + base[:3] + ["--epochs", "0.5", "--eval-limit", "8",
                                                 "--report", "--out", str(out)]
    assert cli.main(report[1:]) == 0
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith("| Model A"))
    assert "| **SMOKE** (partial) | 0.01 | 0 |" in line
    readme = (out / "tiny" / "README.md").read_text()
    assert readme == table.rstrip("\n") + "\n"
    for other in (["--epochs", "0.25", "--eval-limit", "8"], ["--epochs", "0.5"]):
        # nothing to report is an error a script can see (it exited 0)
        assert run_cli(cli.main, "replicate", base + ["--report"] + other) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and (out / "tiny" / "README.md").read_text() == readme
        assert captured.err == (f"replicate: error: --out {out}: no finished run of model-a "
                                "at these settings (1 run of other settings: --epochs 0.5 "
                                "--eval-limit 8)\n")
    resume = train + ["--resume", "--seed", "4294967295"]
    assert cli.main(resume + ["--lr", "0.01,0.02"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "--resume:" in line]
    assert notes == [f"replicate: --resume: tiny/model-a: 2 runs have no checkpoint in "
                     f"{out}/tiny/model-a (lr-0.01-seed-4294967295-smoke, "
                     "lr-0.02-seed-4294967295-smoke); they start from the beginning when their "
                     "turns come"]     # one line a row (a table's runs gave ten before)
    assert cli.main(resume + ["--lr", "0.01"]) == 0     # finished: nothing to say
    assert "--resume:" not in capsys.readouterr().err
    full = base + ["--data", str(tiny_data), "--no-verify", "--device", "cpu", "--no-progress",
                   "--resume", "--lr", "0.01", "--deadline", "0.001"]   # notes, trains nothing
    assert cli.main(full) == cli.EXIT_STOPPED
    notes = [line for line in capsys.readouterr().err.splitlines() if "--resume:" in line]
    assert notes == [f"replicate: --resume: tiny/model-a at lr 0.01 has no checkpoint in "
                     f"{out}/tiny/model-a/lr-0.01; it starts from the beginning when its turn comes "
                     "(3 runs of other "
                     "settings: --epochs 0.5 --eval-limit 8)"]


def test_an_out_that_cannot_be_a_folder_is_one_line_naming_the_option(tmp_path, tiny_data,
                                                                      capsys):
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    (tmp_path / "file").write_text("")
    assert run_cli(cli.main, "replicate", [
        "model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data), "--no-verify",
        "--device", "cpu", "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == (f"replicate: error: --out {tmp_path / 'file'}: a file, "
                                       "not a folder\n")


@pytest.mark.parametrize("stop", [AllconvError("no data"), KeyboardInterrupt()])
def test_a_command_that_fails_before_training_leaves_no_empty_out(tmp_path, tiny_data,
                                                                   monkeypatch, stop):
    """A new user offline without --data: the download's failure left --out made and empty;
    folders made by the command and left empty are removed, one that was there stays."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)

    def fail(*args):
        raise stop
    monkeypatch.setattr(cli, "run_jobs", fail)
    argv = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--device", "cpu", "--out"]
    with pytest.raises(type(stop)):
        cli.main(argv + [str(tmp_path / "new" / "out")])
    assert not (tmp_path / "new").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(type(stop)):
        cli.main(argv + [str(tmp_path / "there")])
    assert (tmp_path / "there").is_dir()


def test_ctrl_c_before_any_checkpoint_does_not_promise_one(tmp_path, tiny_data, capsys,
                                                          monkeypatch):
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    monkeypatch.setattr(cli, "run_jobs", lambda jobs, *a: [{"interrupted": True}] * len(jobs))
    assert cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
                     "--no-verify", "--device", "cpu", "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.endswith(
        "replicate: stopped by Ctrl-C before any run wrote a checkpoint; rerun the command to "
        "start\n")


def test_a_signal_stop_exits_with_128_plus_the_signals_number(tmp_path, tiny_data, capsys,
                                                             monkeypatch):
    """Found by a new user: `timeout -s TERM` saw 130, Ctrl-C's status, where a shell and
    schedulers expect 143 for SIGTERM."""
    from harness.loop import DeferredInterrupt
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)

    def terminated(jobs, *args):
        DeferredInterrupt.received = "SIGTERM"
        return [{"interrupted": True}] * len(jobs)
    monkeypatch.setattr(cli, "run_jobs", terminated)
    assert cli.main(["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
                     "--no-verify", "--device", "cpu", "--out", str(tmp_path / "out")]) == 143
    assert "replicate: stopped by SIGTERM before any run" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_in_start_up_exits_with_128_plus_its_number(tmp_path, tiny_data, capsys,
                                                              monkeypatch, signum):
    """SIGTERM or SIGHUP while the data loads (replicate's handler, before any run's loop):
    143 or 129 and its name, inside a run's start (run_pack's stop) or before; they gave
    130 and "Ctrl-C" (found by an interruption check)."""
    from harness.loop import DeferredInterrupt
    from runtime.cli_support import run_cli
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    argv = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--device", "cpu", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(DeferredInterrupt, "received", "SIGINT")
    monkeypatch.setattr(jobs, "train_pack", lambda *a, **k: cli._stop(signum, None))
    assert run_cli(cli.main, "replicate", argv) == 128 + signum
    name = signal.Signals(signum).name
    assert f"replicate: stopped by {name} before any run" in capsys.readouterr().err
    monkeypatch.setattr(cli, "job_list", lambda *a, **k: cli._stop(signum, None))
    assert run_cli(cli.main, "replicate", argv) == 128 + signum
    assert capsys.readouterr().err == f"replicate: interrupted by {name}\n"


def test_a_metrics_line_that_cannot_be_written_is_one_line(tmp_path):
    """Before: an OSError from the append was a traceback."""
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(AllconvError, match=r"metrics.jsonl: cannot write: Is a directory$"):
        run_folder.MetricsLog(tmp_path / "metrics.jsonl").write({"iter": 1})


# ------------------------------------------------ from the mutation round (helper mutants38)

def test_the_time_limit_stops_a_pack_when_any_member_is_past_it_but_never_at_its_end():
    """The pack's most trained member decides, as --time-limit says (its time summed over
    resumes); a run at its last iteration finishes."""
    from harness.train import _checkpoint_out_of_time
    loop = SimpleNamespace(checkpoint=lambda: [])
    run = SimpleNamespace(opts=SimpleNamespace(time_limit=10.0), iter=3, max_iter=5)
    lasts = [{"seconds": 5.0}, {"seconds": 20.0}]
    assert _checkpoint_out_of_time(run, loop, SINGLE, lasts)
    assert not _checkpoint_out_of_time(run, loop, SINGLE, [{"seconds": 5.0}, None])
    run.iter = run.max_iter
    assert not _checkpoint_out_of_time(run, loop, SINGLE, lasts)


def test_a_run_whose_time_limit_passes_at_its_last_evaluation_finishes(tmp_path, tiny_data):
    """Through train(): exit 0 and a result, not "stopped, --resume"."""
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    result = train(spec, options(tiny_data, epochs=1, time_limit=0), tmp_path / "run")
    assert result["finished"] is True and (tmp_path / "run" / "result.json").exists()


def test_a_pack_its_deadline_leaves_no_time_to_start_is_not_started(tmp_path, tiny_data,
                                                                    monkeypatch):
    """Two start-ups must be left, and the start-up is measured: the folder of a run that is
    not started stays untouched (train_pack's docstring)."""
    from harness.train import StartUp
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    monkeypatch.setattr(StartUp, "seconds", 0.0)
    train(spec, options(tiny_data), tmp_path / "first")
    assert StartUp.seconds > 0
    monkeypatch.setattr(StartUp, "seconds", 100.0)
    opts = options(tiny_data, deadline=time.monotonic() + 150.0)         # 1 start-up left
    outcome = train(spec, opts, tmp_path / "second")
    assert outcome["stopped_by"] == "deadline" and outcome["iter"] == 0
    assert not (tmp_path / "second").exists()


def test_a_deadline_before_the_first_step_writes_no_checkpoint(tmp_path, tiny_data,
                                                                monkeypatch):
    """A run stopped by --deadline where it has not moved keeps no
    checkpoint of iteration 0 (it is not "unfinished", and a fresh start is not refused)."""
    from harness.loop import Loop
    monkeypatch.setattr(Loop, "deadline_reached", lambda self: True)
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=12))
    outcome = train(spec, options(tiny_data, deadline=time.monotonic() + 1e6), tmp_path / "run")
    assert outcome["stopped_by"] == "deadline" and outcome["iter"] == 0
    assert not list((tmp_path / "run").glob("checkpoint_*"))


def test_checkpoint_every_is_honoured(tmp_path, tiny_data, monkeypatch):
    """--checkpoint-every 2 over 4 evaluations checkpoints at the 2nd and the 4th
    (the last), not at every evaluation."""
    from harness.loop import Loop
    at, real = [], Loop.checkpoint

    def spy(self):
        at.append(self.run.iter)
        return real(self)
    monkeypatch.setattr(Loop, "checkpoint", spy)
    spec = load_spec(tiny_spec(tmp_path, "model-a", batch_size=8))      # 4 iterations an epoch
    train(spec, options(tiny_data, epochs=2, eval_every=0.5, checkpoint_every=2),
          tmp_path / "run")
    assert at == [4, 8]


def _check(argv, monkeypatch, torchrun=False, cuda=False):
    if torchrun:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
    if cuda:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    parser = cli.build_parser()
    cli._check_args(parser.parse_args(argv), parser)


def test_options_refused_under_torchrun_and_the_ones_that_are_not(monkeypatch):
    """--pack 1 is the torchrun default and is taken; --rows-in-parallel and CUDA graphs
    (which would capture a step without the all-reduce: each process would train alone) are
    refused."""
    _check(["all-cnn-c", "--pack", "1", "--device", "cpu"], monkeypatch, torchrun=True)
    with pytest.raises(AllconvError, match="--rows-in-parallel cannot be used under torchrun"):
        _check(["all-cnn-c", "--rows-in-parallel", "2", "--device", "cpu"], monkeypatch,
               torchrun=True)
    with pytest.raises(AllconvError, match="--cuda-graphs captures a step without torchrun's"):
        _check(["all-cnn-c", "--cuda-graphs", "--device", "cuda"], monkeypatch, torchrun=True,
               cuda=True)


def test_the_shards_advice_keeps_lr_search():
    """The --report command a shard prints must select the same runs (the grid)."""
    args = cli.build_parser().parse_args(["table3", "--lr-search", "--shard", "0/2"])
    assert "--lr-search" in cli.report_command(args).split()


def test_a_shard_of_two_writes_no_table(tmp_path, tiny_data, capsys):
    """Any --shard K/N with N > 1 trains its runs and writes no row or table: a smoke shard
    beside a full result trains (the row is not its to write)."""
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16)
    args = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--epochs", "1", "--device", "cpu", "--no-progress",
            "--out", str(tmp_path / "out"), "--lr", "0.01,0.02", "--shard", "0/2"]
    assert cli.main(args) == 0
    assert "when every shard is done" in capsys.readouterr().err
    row = tmp_path / "out" / "tiny" / "model-a.json"
    assert not row.exists()
    full = (ROOT / "results" / "table3" / "all-cnn-c.json").read_text()     # not smoke
    row.write_text(full)
    assert cli.main(args + ["--seed", "1"]) == 0 and row.read_text() == full


def test_a_torchrun_process_watches_its_agent(monkeypatch):
    """replicate under torchrun starts end_with_parent before it joins the group."""
    called = []

    class Joined(Exception):
        pass

    def joined(device):
        raise Joined
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(cli, "end_with_parent", lambda *a: called.append(a))
    monkeypatch.setattr(cli, "from_environment", joined)
    with pytest.raises(Joined):
        cli.main(["all-cnn-c", "--device", "cpu"])
    assert called == [()]


def _fake_git(status: str):
    """subprocess.run of a checkout at HEAD 0123abc whose `git status --porcelain` lists
    ``status`` untracked (as git lists them unless --untracked-files=no)."""
    def run(args, **kwargs):
        if args[:2] == ["git", "rev-parse"]:
            return SimpleNamespace(stdout="0123abc\n")
        return SimpleNamespace(stdout="" if "--untracked-files=no" in args else status)
    return run


def test_an_empty_commit_variable_is_not_given(monkeypatch):
    """$ALLCONV_COMMIT set to "" names no commit: the checkout's HEAD is recorded (not "")."""
    monkeypatch.setattr(commit.subprocess, "run", _fake_git(""))
    monkeypatch.setenv(commit.COMMIT_ENV, "")
    assert commit.git_commit() == "0123abc"


def test_untracked_files_do_not_make_the_checkout_dirty(monkeypatch):
    """'-dirty' is for uncommitted changes to tracked files (git_commit's docstring): a run
    folder or a scratch file beside the code leaves the commit as it is."""
    monkeypatch.setattr(commit.subprocess, "run", _fake_git("?? notes.txt\n"))
    monkeypatch.delenv(commit.COMMIT_ENV, raising=False)
    assert commit.git_commit() == "0123abc"


def test_an_option_of_a_pair_that_does_nothing_is_named_as_given(tmp_path, capsys, monkeypatch):
    """options_off_default: of --x / --no-x the one given (--no-channels-last, not
    --channels-last) is named in the error."""
    import torch
    from harness import cli
    from runtime.cli_support import run_cli
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for given in ("--no-channels-last", "--channels-last"):
        assert run_cli(cli.main, "replicate", ["all-cnn-c", "--out", str(tmp_path / "out"),
                                               "--report", given]) == 2
        assert capsys.readouterr().err.startswith(f"replicate: error: {given} does nothing "
                                                  "with --report")
