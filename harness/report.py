"""Row results (results/<table>/<row>.json) and the table's paper-vs-measured README.md."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from generator.draw import pyplot
from harness.specs import Spec
from runtime.errors import AllconvError

COMMIT_ENV = "ALLCONV_COMMIT"
RULES = ("PASS: measured error <= paper error + tolerance (one-sided: beating the paper passes). "
         "SMOKE: a short run (--epochs below the spec's, --batch-size or --eval-limit), never a "
         "replication. "
         "With --lr-search the lr is the grid's best by final test error, as the paper chose it.")


def git_commit() -> str | None:
    """HEAD of the checkout holding this file, with '-dirty' for uncommitted tracked changes.
    $ALLCONV_COMMIT, when set, names it instead: a copy of the tree on a remote GPU machine has
    no .git, or a stale one."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def status(result: dict) -> str:
    """FAIL when no run finished (every lr diverged), short runs included; else SMOKE for
    short runs, PASS or FAIL against the row's tolerance."""
    error = result["measured"]["error"]
    if error is None:
        return "FAIL"
    if result["smoke"]:
        return "SMOKE"
    return "PASS" if error <= result["paper"]["error"] + result["paper"]["tolerance"] else "FAIL"


def row_result(spec: Spec, runs: dict[float, dict], smoke: bool, lr_search: bool,
               command: str) -> dict:
    """The row's result from its finished runs by lr (a diverged run holds only 'diverged')."""
    good = {lr: r for lr, r in runs.items() if "diverged" not in r}
    best_lr = min(good, key=lambda lr: good[lr]["test_error"]) if good else None
    best = good.get(best_lr, {})
    result = {
        "table": spec.table, "row": spec.name, "title": spec.title,
        "variant": spec.variant.name, "dataset": spec.dataset.name, "augmentation": spec.augmentation,
        "smoke": smoke,
        "paper": {"error": spec.paper.error, "params": spec.paper.params,
                  "tolerance": spec.paper.tolerance, "sources": spec.sources},
        "params_counted": best.get("params_counted", spec.paper.counted_params),
        "measured": {
            "error": best.get("test_error"), "top5_error": best.get("top5_error"), "lr": best_lr,
            "per_class_accuracy": best.get("per_class_accuracy"),
            "dead_class_units": best.get("dead_class_units"),
            "never_predicted": best.get("never_predicted"),
        },
        "lr_search": lr_search,
        "runs": [{"lr": lr, "test_error": r.get("test_error"), "diverged": r.get("diverged"),
                  "wall_seconds": r.get("wall_seconds")} for lr, r in sorted(runs.items())],
        **{k: best.get(k) for k in ("epochs", "iterations", "batch_size", "seed", "precision",
                                    "options", "wall_seconds", "device", "torch", "train_size",
                                    "test_size")},
        "commit": git_commit(), "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["status"] = status(result)
    return result


def check_writable(out: Path, table: str, row: str, smoke: bool) -> Path:
    """``out/<table>/<row>.json``, unless a smoke result would replace a full one there (checked
    before training too, so that a smoke run does not train only to be refused)."""
    path = out / table / f"{row}.json"
    if smoke and path.is_file() and not json.loads(path.read_text())["smoke"]:
        raise AllconvError(f"{path} holds a full replication; a smoke run will not overwrite it "
                           "(pass --out to write elsewhere)")
    return path


def write_row(out: Path, result: dict) -> Path:
    """Write ``out/<table>/<row>.json``; a smoke result never replaces a full one."""
    path = check_writable(out, result["table"], result["row"], result["smoke"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def _fmt(value, spec: str = ".2f", missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


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
    notes += [f"lr {r['lr']:g} diverged" for r in result["runs"] if r["diverged"]]
    notes += [f"lr {lr} {why}" for lr, why in result.get("incomplete_grid", {}).items()]
    return "; ".join(notes)


def _row_line(spec: Spec, result: dict | None) -> str:
    head = f"| {spec.title} | `{spec.name}` | {spec.paper.error:.2f} |"
    if result is None:
        return f"{head} — | — | {spec.paper.tolerance:g} | not run | — | " \
               f"{_millions(spec.paper.params)} / {_millions(spec.paper.counted_params)} | — | — | — |"
    error = result["measured"]["error"]
    delta = None if error is None else error - spec.paper.error
    minutes = None if result["wall_seconds"] is None else result["wall_seconds"] / 60
    return (f"{head} {_fmt(error)} | {_fmt(delta, '+.2f')} | {spec.paper.tolerance:g} | "
            f"**{result['status']}** | {_fmt(result['measured']['lr'], 'g')} | "
            f"{_millions(spec.paper.params)} / {_millions(result['params_counted'])} | "
            f"{_fmt(result['epochs'], 'g')} | {_fmt(minutes, '.1f')} | {_notes(result)} |")


def table_markdown(table: str, specs: list[Spec], results: dict[str, dict],
                   figure: str | None = None) -> str:
    """Markdown: paper vs measured for every row of ``table`` (``results`` by row name), under
    the ``figure`` image when one is given."""
    lines = [f"# {table}: paper vs measured", ""]
    if figure:
        lines += [f"![{table}: paper vs measured]({figure})", ""]
    lines += ["| Model | Row | Paper error % | Measured error % | Δ points | Tolerance | Result | "
              "lr | Params paper / counted | Epochs | Minutes | Notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
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

    colours = {"PASS": "tab:green", "FAIL": "tab:red", "SMOKE": "tab:grey",
               "INCOMPLETE": "tab:orange"}
    low = min(s.paper.error for s in specs) - 2
    high = max(s.paper.error + s.paper.tolerance for s in specs) + 4
    height = 0.4 * len(specs) + 1.8
    fig, axis = plt.subplots(figsize=(8, height))
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
        if low <= error <= high:
            axis.plot(error, y, "o", color=colour)
        else:
            edge = high if error > high else low
            axis.plot(edge, y, ">" if error > high else "<", color=colour)
            axis.annotate(f"{error:.1f}", (edge, y), textcoords="offset points",
                          xytext=(-8 if error > high else 8, 6),
                          ha="right" if error > high else "left", color=colour, fontsize=8)
    axis.set_yticks(range(len(specs)), [s.title for s in reversed(specs)])
    axis.set(xlabel="test error %", xlim=(low - 0.5, high + 0.5), ylim=(-0.7, len(specs) - 0.3),
             title=f"{table}: paper vs measured")
    axis.grid(axis="x", alpha=0.3)
    key = [Line2D([], [], color="k", marker="|", linestyle="", markersize=12, label="paper"),
           Line2D([], [], color="tab:green", alpha=0.3, linewidth=8, label="PASS band")]
    key += [Line2D([], [], color=c, marker="o", linestyle="", label=f"measured: {name}")
            for name, c in colours.items()]
    fig.legend(handles=key, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_table_readme(out: Path, table: str, specs: list[Spec]) -> str:
    """Rebuild ``out/<table>/README.md`` and its figure ``<table>.png`` from the row JSONs there;
    returns the Markdown."""
    folder = out / table
    results = {s.name: json.loads((folder / f"{s.name}.json").read_text())
               for s in specs if (folder / f"{s.name}.json").is_file()}
    folder.mkdir(parents=True, exist_ok=True)
    plot_table(table, specs, results, folder / f"{table}.png")
    text = table_markdown(table, specs, results, figure=f"{table}.png")
    (folder / "README.md").write_text(text)
    return text
