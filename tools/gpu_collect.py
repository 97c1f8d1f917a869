"""File what a lease's device calls brought back (docs/GPU_SESSION.md, "What to commit").

    python tools/gpu_collect.py FOLDER [FOLDER ...]

Each FOLDER holds one call's files (the device tool's ``files_at``):

    run-ROW-NAME.tar             a finished run: the one folder it holds, TABLE/ROW/NAME, goes
                                 to RESULTS/TABLE/ROW/NAME with its final .caffemodel (git
                                 ignores results/**/*.caffemodel); that run's unfinished tar in
                                 CARRY_RUNS, if any, is dropped
    run-ROW-NAME-unfinished.tar  kept in CARRY_RUNS (.carry-runs), which the next lease's
                                 `next` call carries and resumes, unless the run has finished
    train_throughput*.json       copied to RESULTS/benchmarks/

A CPU dry run's files (a benchmark JSON of a CPU device, a smoke run's tar) are refused for
the repository's own results (they would replace the device's measurements): collect a dry
run with --results and --carry-runs in a scratch folder.

Then it prints each finished run (test error, wall time, images/s) for CAMPAIGN.md and
rebuilds the tables they are in: ``replicate TABLE --lr-search --report --out RESULTS`` (exit
status 0 with rows that FAIL: a result, not an error).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.train_throughput import read_device  # noqa: E402
from harness import cli  # noqa: E402
from harness.run_folder import RunFolder, table_of  # noqa: E402
from runtime.cli_support import run_cli  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402
from runtime.files import atomic_writer, replace_folder  # noqa: E402

UNFINISHED = "-unfinished.tar"


def copy(source: Path, target: Path) -> None:
    """``source`` to ``target``, atomically: a Ctrl-C leaves no half tar for the next lease."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as read, atomic_writer(target) as write:
        shutil.copyfileobj(read, write)


def run_prefix(tar_path: Path) -> str:
    """TABLE/ROW/NAME: the one run folder the tar holds (its first entry's)."""
    try:
        with tarfile.open(tar_path, "r:") as tar:    # gpu_session.sh's tars are plain
            names = tar.getnames()
    except (tarfile.TarError, OSError) as err:
        raise AllconvError(f"{tar_path}: cannot read it as a tar: {err}") from None
    parts = Path(names[0]).parts[:3] if names else ()
    if len(parts) != 3:
        raise AllconvError(f"{tar_path}: holds no run folder TABLE/ROW/NAME")
    prefix = "/".join(parts)
    strays = [n for n in names if n != prefix and not n.startswith(prefix + "/")]
    if strays:
        raise AllconvError(f"{tar_path}: holds {strays[0]}, outside {prefix}/")
    return prefix


def unpack_run(tar_path: Path, prefix: str, results: Path) -> Path:
    """Replace RESULTS/PREFIX by the tar's folder (`run_prefix`)."""
    results.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, "r:") as tar, \
                tempfile.TemporaryDirectory(dir=results) as tmp:
            tar.extractall(tmp, filter="data")
            target = results / prefix
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_folder(Path(tmp) / prefix, target)
    except (tarfile.TarError, OSError) as err:
        raise AllconvError(f"{tar_path}: cannot unpack it: {err}") from None
    return target


def dry_run_file(path: Path, prefix: str | None) -> str | None:
    """What makes ``path`` a CPU dry run's file (a benchmark on a CPU, a smoke run's tar whose
    folder is ``prefix``), or None."""
    if prefix is not None:
        return "a smoke run" if prefix.endswith("-smoke") else None
    device = read_device(path)
    return f"a benchmark on {device}" if device.startswith("CPU") else None


def collect(folders: list[Path], results: Path, carry_runs: Path,
            dry_run_ok: bool = True) -> list[RunFolder]:
    """File every call's files; the finished runs' folders (a CPU dry run's files refused,
    before anything is filed, unless ``dry_run_ok``)."""
    benchmarks, tars = [], {}        # tars: path -> the run folder it holds
    for folder in folders:
        if not folder.is_dir():
            raise AllconvError(f"{folder}: no such folder")
        for path in sorted(folder.iterdir()):
            if path.name.startswith("train_throughput") and path.suffix == ".json":
                benchmarks.append(path)
            elif path.name.startswith("run-") and path.suffix == ".tar":
                tars[path] = run_prefix(path)
    for path in [] if dry_run_ok else benchmarks + list(tars):
        if what := dry_run_file(path, tars.get(path)):
            raise AllconvError(f"{path}: {what}, from a CPU dry run: collect a dry run with "
                               "--results and --carry-runs in a scratch folder, not into the "
                               "repository's")
    for path in benchmarks:
        copy(path, results / "benchmarks" / path.name)
        print(f"{path.name} -> {results / 'benchmarks'}")
    finished = []
    for path in sorted(tars, key=lambda p: p.name.endswith(UNFINISHED)):   # finished first
        prefix = tars[path]
        if path.name.endswith(UNFINISHED):
            if RunFolder(results / prefix).result() is not None:
                print(f"{path.name}: left (the run finished in a later call)")
                continue
            copy(path, carry_runs / path.name)
            print(f"{path.name} -> {carry_runs} (unfinished: the next lease resumes it)")
            continue
        finished.append(RunFolder.read(unpack_run(path, prefix, results)))
        (carry_runs / (path.name.removesuffix(".tar") + UNFINISHED)).unlink(missing_ok=True)
    return finished


def describe(run: RunFolder) -> str:
    result = run.result()
    if result is None:
        return f"{run.path}: no result.json (a finished run's tar should hold one)"
    seconds = result["wall_seconds"]
    speed = result["iterations"] * result["batch_size"] / seconds if seconds else float("nan")
    return (f"{run.path}: {result['test_error']:.2f} % after {result['epochs']:g} epochs, "
            f"{seconds:.0f} s, {speed:.0f} img/s, {result['device']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_collect", description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                   help="a device call's files (files_at)")
    p.add_argument("--results", type=Path, default=ROOT / "results",
                   help="the results folder (default: the repository's, which takes no CPU "
                        "dry run's files)")
    p.add_argument("--carry-runs", type=Path, default=ROOT / ".carry-runs",
                   help="where unfinished runs wait for the next lease (default .carry-runs)")
    args = p.parse_args(argv)
    own = args.results.resolve() == (ROOT / "results").resolve()
    finished = collect(args.folders, args.results, args.carry_runs, dry_run_ok=not own)
    for run in finished:
        print(describe(run))
    if not finished:
        print("no finished run: no table to rebuild")
    for table in sorted({table_of(run.path) for run in finished}):
        code = cli.main([table, "--lr-search", "--report", "--out", str(args.results)])
        if code not in (0, cli.EXIT_FAIL):      # a row's FAIL is a result, not an error
            return code
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "gpu_collect"))
