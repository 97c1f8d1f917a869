"""Row results (results/<table>/<row>.json) and the table's paper-vs-measured README.md."""
from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.commit import git_commit
from harness.json_fields import FLAG, INTEGER, NUMBER, OBJECT, TEXT, checked_fields, one_of
from harness.run_folder import length_flags, row_folder, row_runs
from harness.specs import Spec
from runtime.errors import AllconvError
from runtime.files import atomic_write_bytes, json_text, read_json_object
from runtime.plotting import pyplot, save_figure

RULES = ("PASS: measured error <= paper error + tolerance (one-sided: beating the paper passes). "
         "SMOKE: a run off the spec's protocol (--epochs other than its length, --batch-size or "
         "--eval-limit), never a replication. "
         "The lr is the best of the row's runs by final test error at the grid's seed, as the "
         "paper chose it (where none finished at that seed, at the lowest seed that did); "
         "(partial) marks a row whose grid is not all trained yet. With more "
         "than one seed at that lr the measured error is their mean ± standard deviation.")


STATUSES = ("PASS", "FAIL", "SMOKE")


def status(result: dict) -> str:
    """FAIL when no run finished (every run diverged), short runs included; else SMOKE for
    short runs, PASS or FAIL against the row's tolerance."""
    error = result["measured"]["error"]
    if error is None:
        return "FAIL"
    if result["smoke"]:
        return "SMOKE"
    return "PASS" if error <= result["paper"]["error"] + result["paper"]["tolerance"] else "FAIL"


def _best_lr(finished: dict[tuple[float, int], dict], seed: int) -> float | None:
    """The lr with the lowest final test error among the finished runs at ``seed``, as
    the paper chose its lr; None when none finished there."""
    at_seed = {lr: r for (lr, s), r in finished.items() if s == seed}
    return min(at_seed, key=lambda lr: at_seed[lr]["test_error"]) if at_seed else None


def row_outcomes(out: Path, spec: Spec, expected: dict
                 ) -> tuple[dict[tuple[float, int], dict], Counter]:
    """Every run of ``spec`` under ``out`` of the ``expected`` length, batch and test subset
    (run_folder.length_settings), by (lr, seed): a finished run's result, or its diverged or
    missing outcome, with how its lr was chosen and its note; and how many runs of the row
    have other such settings, by the options that give them. The row's table is made from
    the first alone, so --report gives the table the runs wrote, whatever lrs and seeds the
    command names."""
    runs, others, where = {}, Counter(), {}
    for folder in row_runs(row_folder(out, spec.table, spec.name)):
        settings = folder.settings
        if settings["row"] != spec.key:
            raise AllconvError(f"{folder.path}: a run of {settings['row']} in {spec.key}'s "
                               "folder; move it to its own row's folder")
        length = {k: settings.get(k) for k in expected}
        if length != expected:
            others[length_flags(spec, length) or "the spec's length"] += 1
            continue
        key = float(settings["lr"]), int(settings["seed"])
        if key in where:
            raise AllconvError(f"{where[key]} and {folder.path} are both the run of lr "
                               f"{key[0]:g} at seed {key[1]}; keep one (a copy: move it out "
                               "of the row's folder)")
        where[key] = folder.path
        runs[key] = {**folder.outcome(), "lr_from": folder.lr_from, "note": folder.note}
    return runs, others


def other_runs(others: Counter) -> str:
    """`` (N runs of other settings: FLAGS; FLAGS)``, or "" when there are none."""
    if not others:
        return ""
    n = sum(others.values())
    return (f" ({n} run{'s' if n > 1 else ''} of other settings: "
            f"{'; '.join(sorted(others))})")


def row_result(spec: Spec, runs: dict[tuple[float, int], dict], smoke: bool,
               command: str, settings: dict) -> dict:
    """The row's result from its runs by (lr, seed): each a finished run's result, or
    ``{"diverged": why}`` or ``{"missing": why}`` (with ``lr_from`` and ``note`` when its
    folder records them). The best lr is the one of lowest final test error at the grid seed
    (where no run finished at that seed, at the lowest seed of those that did); the measured
    error is the mean over the seeds trained at that lr (± their standard deviation with more
    than one); the best single run is kept too. Grid lrs with no finished or
    diverged run at the grid seed (the lowest seed of a run that ended) make the row
    ``partial``. ``settings`` are the runs' length
    settings (harness/run_folder.py's `length_settings`), which the row JSON keeps."""
    finished = {key: r for key, r in runs.items() if "test_error" in r}
    # the lowest seed that any run finished or diverged at (of any run, when none did): an
    # unfinished run at a lower seed leaves the row partial, not without a measurement
    ended = [seed for (_, seed), r in runs.items() if "test_error" in r or "diverged" in r]
    grid_seed = min(ended or [seed for _, seed in runs], default=0)
    chosen_at = grid_seed if any(seed == grid_seed for _, seed in finished) else min(
        (seed for _, seed in finished), default=grid_seed)     # none finished at the grid seed
    best_lr = _best_lr(finished, chosen_at)
    seeds = sorted(seed for lr, seed in finished if lr == best_lr)
    errors = [finished[best_lr, seed]["test_error"] for seed in seeds]
    best = finished.get((best_lr, seeds[0]), {}) if seeds else {}
    # the best single run; of runs that tie, one at the row's lr, then the lowest seed and lr
    single = min(finished, key=lambda key: (finished[key]["test_error"], key[0] != best_lr,
                                            key[1], key[0])) if finished else None
    tried = {lr for (lr, seed), r in runs.items() if seed == grid_seed
             and ("test_error" in r or "diverged" in r)}
    missing = [lr for lr in spec.training.lr_grid if lr not in tried]
    result = {
        "table": spec.table, "row": spec.name, "title": spec.title,
        "variant": spec.variant.name, "dataset": spec.dataset.name,
        "augmentation": spec.pipeline.name,
        "smoke": smoke, "settings": settings,
        "paper": {"error": spec.paper.error, "params": spec.paper.params,
                  "tolerance": spec.paper.tolerance, "sources": spec.sources},
        "params_counted": best.get("params_counted", spec.paper.counted_params),
        "measured": {
            "error": statistics.fmean(errors) if errors else None,
            "std": statistics.stdev(errors) if len(errors) > 1 else None,
            # a complete grid chose the lr, whichever command trained its runs
            "seeds": seeds, "lr": best_lr,
            "lr_from": "grid" if best_lr is not None and chosen_at == grid_seed and not missing
                       else best.get("lr_from"),
            "top5_error": best.get("top5_error"),
            "per_class_accuracy": best.get("per_class_accuracy"),
            "dead_class_units": best.get("dead_class_units"),
            "never_predicted": best.get("never_predicted"),
            "best_run": None if single is None else {
                "lr": single[0], "seed": single[1], "error": finished[single]["test_error"]},
        },
        "grid": {"lrs": list(spec.training.lr_grid), "seed": grid_seed,
                 "missing": missing},
        "partial": bool(missing),
        "runs": [{"lr": lr, "seed": seed, "test_error": r.get("test_error"),
                  "diverged": r.get("diverged"), "missing": r.get("missing"),
                  "lr_from": r.get("lr_from"), "note": r.get("note"),
                  "wall_seconds": r.get("wall_seconds"),
                  "dead_class_units": r.get("dead_class_units"),
                  "never_predicted": r.get("never_predicted")}
                 for (lr, seed), r in sorted(runs.items())],
        **{k: best.get(k) for k in ("epochs", "iterations", "batch_size", "seed", "precision",
                                    "options", "wall_seconds", "device", "torch", "train_size",
                                    "test_size")},
        "commit": git_commit(), "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["status"] = status(result)
    return result


def result_path_for(out: Path, table: str, row: str, smoke: bool) -> Path:
    """Where a row's result goes, ``out/<table>/<row>.json``, unless a smoke result would
    replace a full one there (checked before training too, so that a smoke run does not train
    only to be refused)."""
    path = out / table / f"{row}.json"
    held = read_row(out, table, row) if smoke else None   # a full result replaces any file
    if held is not None and not held.get("smoke", False):
        raise AllconvError(f"{path} holds a full replication; a smoke run will not overwrite it "
                           "(pass --out to write elsewhere)")
    return path


def write_row(out: Path, result: dict) -> Path:
    """Write ``out/<table>/<row>.json``; a smoke result never replaces a full one."""
    path = result_path_for(out, result["table"], result["row"], result["smoke"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json_text(result, indent=1) + "\n").encode())
    return path


def _fmt(value, spec: str = ".2f", missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _decimal(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, written out (0.00008, not 8e-05)."""
    return "—" if value is None else np.format_float_positional(
        value, precision=digits, unique=False, fractional=False, trim="-")


def _millions(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} M"


def _notes(result: dict) -> str:
    measured, notes = result["measured"], []
    if measured.get("top5_error") is not None:
        notes.append(f"top-5 error {measured['top5_error']:.2f} % (the paper's figure is top-1)")
    if measured["dead_class_units"]:
        notes.append("dead class units: " + ", ".join(measured["dead_class_units"]))
    if measured["never_predicted"]:
        notes.append("never predicted: " + ", ".join(measured["never_predicted"]))
    if measured.get("lr_from") == "--lr":
        notes.append(f"lr {measured['lr']:g} set by hand (--lr)")
    runs = result["runs"]     # a row JSON of an older harness: lr only, no seed, no missing
    notes += [f"lr {r['lr']:g}{_seed(r.get('seed', 0))} diverged" for r in runs
              if r["diverged"]]
    shown = (measured["lr"], measured["seeds"][0]) if measured["seeds"] else None
    notes += [f"lr {r['lr']:g}{_seed(r.get('seed', 0))}: {len(r['dead_class_units'])} dead "
              f"class units, {r['test_error']:.2f} %" for r in runs
              if r.get("dead_class_units") and (r["lr"], r.get("seed", 0)) != shown]
    notes += [f"lr {r['lr']:g}{_seed(r.get('seed', 0))} {r['missing']}" for r in runs
              if r.get("missing")]
    if result.get("partial"):
        notes.append("grid partial: " + ", ".join(f"{lr:g}" for lr in result["grid"]["missing"])
                     + " not trained")
    notes += list(dict.fromkeys(r["note"] for r in runs if r.get("note")))
    return _cell("; ".join(notes))


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: its | escaped, its line breaks spaces."""
    return " ".join(text.split()).replace("|", "\\|")


def _seed(seed: int) -> str:
    return f" seed {seed}" if seed else ""


def _measured(result: dict) -> str:
    measured = result["measured"]
    if measured["error"] is None or measured.get("std") is None:
        return _fmt(measured["error"])
    return f"{measured['error']:.2f} ± {measured['std']:.2f}"


def _best_run(result: dict) -> str:
    best = result["measured"].get("best_run")
    return "—" if best is None else f"{best['error']:.2f} (lr {best['lr']:g}, seed {best['seed']})"


def _row_line(spec: Spec, result: dict | None) -> str:
    head = f"| {spec.title} | `{spec.name}` | {spec.paper.error:.2f} |"
    if result is None:
        return (f"{head} — | — | {spec.paper.tolerance:g} | not run | — | — | — | "
                f"{_millions(spec.paper.params)} / {_millions(spec.paper.counted_params)} "
                "| — | — | — |")
    measured = result["measured"]
    error = measured["error"]
    delta = None if error is None else error - spec.paper.error
    minutes = None if result["wall_seconds"] is None else result["wall_seconds"] / 60
    seeds = ", ".join(map(str, measured.get("seeds", [result.get("seed", 0)]))) or "—"
    partial = " (partial)" if result.get("partial") else ""
    return (f"{head} {_measured(result)} | {_fmt(delta, '+.2f')} | {spec.paper.tolerance:g} | "
            f"**{result['status']}**{partial} | {_fmt(measured['lr'], 'g')} | {seeds} | "
            f"{_best_run(result)} | "
            f"{_millions(spec.paper.params)} / {_millions(result['params_counted'])} | "
            f"{_decimal(_epochs_trained(result))} | {_fmt(minutes, '.1f')} | "
            f"{_notes(result)} |")


def _epochs_trained(result: dict) -> float | None:
    """The passes over the training set the best run made (iterations × batch, which a short
    --epochs rounds to whole batches), or the epochs asked for where a result lacks them."""
    done = [result.get(k) for k in ("iterations", "batch_size", "train_size")]
    return done[0] * done[1] / done[2] if all(done) else result.get("epochs")


def table_markdown(table: str, specs: list[Spec], results: dict[str, dict],
                   figure: str | None = None) -> str:
    """Markdown: paper vs measured for every row of ``table`` (``results`` by row name), under
    the ``figure`` image when one is given."""
    lines = [f"# {table}: paper vs measured", ""]
    if figure:
        lines += [f"![{table}: paper vs measured]({figure})", ""]
    lines += ["| Model | Row | Paper error % | Measured error % | Δ points | Tolerance | Result | "
              "lr | Seeds | Best run % | Params paper / counted | Epochs | Minutes | Notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row_line(spec, results.get(spec.name)) for spec in specs]
    devices = sorted({r["device"] for r in results.values() if r.get("device")})
    lines += ["", RULES]
    if devices:
        lines.append(f"Device: {', '.join(devices)}.")
    return "\n".join(lines) + "\n"


def plot_table(table: str, specs: list[Spec], results: dict[str, dict], path: Path) -> None:
    """One line per row: the paper's error with its PASS band, and the measured error coloured
    by status; a measured error far off the paper's range sits at the edge as an arrow with its
    value. A PNG (matplotlib's Agg backend)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    colours = dict(zip(STATUSES, ("tab:green", "tab:red", "tab:grey")))
    low = min(s.paper.error for s in specs) - 2
    high = max(s.paper.error + s.paper.tolerance for s in specs) + 4
    height = 0.4 * len(specs) + 1.8
    fig, axis = plt.subplots(figsize=(8, height))
    off_scale = False
    for y, spec in enumerate(reversed(specs)):
        paper, tol = spec.paper.error, spec.paper.tolerance
        axis.plot([paper, paper + tol], [y, y], color="tab:green", alpha=0.3, linewidth=8,
                  solid_capstyle="butt")
        axis.plot(paper, y, "k|", markersize=14)
        result = results.get(spec.name)
        error = result["measured"]["error"] if result else None
        if error is None:
            continue
        colour = colours[result["status"]]
        if result["measured"].get("std") is not None:
            axis.errorbar(error, y, xerr=result["measured"]["std"], color=colour, capsize=3)
        fill = "none" if result.get("partial") else "full"
        if low <= error <= high:
            axis.plot(error, y, "o", color=colour, fillstyle=fill)
        else:
            edge, off_scale = (high if error > high else low), True
            axis.plot(edge, y, ">" if error > high else "<", color=colour, fillstyle=fill)
            axis.annotate(f"{error:.1f}", (edge, y), textcoords="offset points",
                          xytext=(-8 if error > high else 8, 6),
                          ha="right" if error > high else "left", color=colour, fontsize=8)
    axis.set_yticks(range(len(specs)), [s.title for s in reversed(specs)])
    axis.set(xlabel="test error %", xlim=(low - 0.5, high + 0.5), ylim=(-0.7, len(specs) - 0.3),
             title=f"{table}: paper vs measured" + (
                 " (with SMOKE runs: off the spec's protocol)"
                 if any(r["status"] == "SMOKE" for r in results.values() if r) else ""))
    axis.grid(axis="x", alpha=0.3)
    key = [Line2D([], [], color="k", marker="|", linestyle="", markersize=12, label="paper"),
           Line2D([], [], color="tab:green", alpha=0.3, linewidth=8, label="PASS band")]
    key += [Line2D([], [], color=c, marker="o", linestyle="", label=f"measured: {name}")
            for name, c in colours.items()]
    key.append(Line2D([], [], color="k", marker="o", fillstyle="none", linestyle="",
                      label="partial grid"))
    if off_scale:
        key.append(Line2D([], [], color="k", marker=">", linestyle="",
                          label="off the scale (its value)"))
    columns = (len(key) + 1) // 2          # two rows of the key, whatever it holds
    fig.legend(handles=key, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    save_figure(fig, path, dpi=100)


# the fields of a row JSON that the table and its figure read, with what they hold
ROW_FIELDS = {"status": one_of(*STATUSES), "smoke": FLAG, "measured": OBJECT, "runs": OBJECT.list(),
              "wall_seconds": NUMBER.or_none(), "params_counted": INTEGER,
              "partial": FLAG.or_absent()}
# null where no run of the row finished (every run diverged): nothing was measured
MEASURED_FIELDS = {"error": NUMBER.or_none(), "lr": NUMBER.or_none(), "seeds": INTEGER.list(),
                   "dead_class_units": TEXT.list().or_none(),
                   "never_predicted": TEXT.list().or_none()}
ROW_RUN_FIELDS = {"lr": NUMBER, "diverged": TEXT.or_none()}


def read_row(out: Path, table: str, row: str) -> dict | None:
    """``out/<table>/<row>.json``, None when absent; one line naming the file and the field
    where a field the table reads is missing or wrong."""
    path = out / table / f"{row}.json"
    if not path.exists():
        return None
    writer = "replicate --report"
    result = checked_fields(path, read_json_object(path), ROW_FIELDS, writer=writer)
    checked_fields(path, result["measured"], MEASURED_FIELDS, ", measured", writer)
    for k, run in enumerate(result["runs"]):
        checked_fields(path, run, ROW_RUN_FIELDS, f", runs[{k}]", writer)
    return result


def write_table_readme(out: Path, table: str, specs: list[Spec],
                       named: dict[str, dict | None] | None = None) -> str:
    """Rebuild ``out/<table>/README.md`` and its figure ``<table>.png``: the rows in ``named``
    (by row name) from their results there (None: not run), the others from their row JSONs;
    returns the Markdown."""
    folder, named = out / table, named or {}
    results = {s.name: named[s.name] if s.name in named else read_row(out, table, s.name)
               for s in specs}
    results = {name: result for name, result in results.items() if result is not None}
    folder.mkdir(parents=True, exist_ok=True)
    plot_table(table, specs, results, folder / f"{table}.png")
    text = table_markdown(table, specs, results, figure=f"{table}.png")
    atomic_write_bytes(folder / "README.md", text.encode())
    return text
