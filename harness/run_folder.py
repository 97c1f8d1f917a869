"""A run folder: the one module that writes and reads what a run keeps. `replicate` writes it;
`--resume`, `--report`, `export-onnx --run` and `visualize --run` read it.

    <out>/<table>/<row>/<run_name(lr, seed, smoke)>/
        run.json              settings (what a resume must match) and "provenance"
        train_test.prototxt   the row's net and solver as the generator rendered them
        solver.prototxt
        deploy.prototxt       the row's net with an Input layer and Softmax "prob"
        metrics.jsonl         one JSON record per evaluation, and events (a divergence)
        checkpoint_iter_N.caffemodel, .solverstate, .rngstate   the latest snapshot (its bytes:
                              runtime/snapshot.py)
        curves.png, result.json   when the run has finished

run.json's ``provenance`` is what readers need besides the settings: the commit, the variant,
the dataset (its registry name) and the run's class names, and the whitening's identity (its
cache folder, named by the hash of the CIFAR files' md5s and the GCN+ZCA settings; None for a
run on data handed to it in memory or not whitened); ``lr_from``, how the lr was chosen (the
spec's, the grid of --lr-search, or a hand-set --lr); optionally a ``note`` for the row's
table. A resume compares the settings only: a resumed run may run another commit, and
records that one. A pack of runs (harness/train.py) writes one such folder per member, with
its own lr and seed: nothing in it says it was packed but result.json's ``options``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from generator.variants import get_variant
from harness.json_fields import (AMOUNT, COUNT, FLAG, INTEGER, NAME, NUMBER, OBJECT, PERCENT,
                                 POSITIVE, SECONDS, SHARE, TEXT, checked_fields, one_of)
from harness.specs import same_row
from runtime import snapshot
from runtime import files
from runtime.data import cifar, preprocess
from runtime.data.datasets import get_dataset
from runtime.errors import AllconvError
from runtime.files import (TEMPORARY, atomic_write_bytes, json_text, json_value,
                           read_json_object, read_text)
from runtime.prototxt import read_solver
from runtime.registry import did_you_mean

RUN_JSON, RESULT_JSON, METRICS = "run.json", "result.json", "metrics.jsonl"


# the fields readers take from each file (a metrics record: every record's, then an
# evaluation's or an event's), with what they hold
RECORDED_PRECISIONS = ("fp32", "tf32", "bf16")    # what a run records ("auto" chooses one)
FIELDS = {RUN_JSON: {"row": TEXT, "lr": NUMBER, "seed": INTEGER, "epochs": POSITIVE,
                     "batch_size": COUNT, "eval_limit": COUNT.or_none(), "spec": TEXT,
                     # absent from a run.json of before they were recorded
                     "precision": one_of(*RECORDED_PRECISIONS).or_absent(),
                     "eval_every": AMOUNT.or_absent(), "checkpoint_every": COUNT.or_absent(),
                     "processes": COUNT.or_absent(), "batch_per_process": FLAG.or_absent()},
          RESULT_JSON: {"row": TEXT, "lr": NUMBER, "seed": INTEGER, "epochs": NUMBER,
                        "wall_seconds": SECONDS, "test_error": PERCENT,
                        "never_predicted": TEXT.list(), "dead_class_units": TEXT.list(),
                        "per_class_accuracy": SHARE.or_none().in_object().or_absent(),
                        "iterations": COUNT.or_absent(), "batch_size": COUNT.or_absent(),
                        "train_size": COUNT.or_absent(), "test_size": COUNT.or_absent(),
                        "params_counted": COUNT.or_absent(),
                        "precision": one_of(*RECORDED_PRECISIONS).or_absent(),
                        "device": TEXT.or_absent(), "torch": TEXT.or_absent(),
                        "options": OBJECT.or_absent()},
          METRICS: {"iter": INTEGER, "epoch": AMOUNT}}
EVALUATION = {"lr": NUMBER, "train_loss": NUMBER, "test_loss": NUMBER, "test_error": PERCENT,
              "per_class": SHARE.or_none().list(), "never_predicted": INTEGER.list(),
              "dead_units": INTEGER.list(), "seconds": NUMBER}
EVENT = {"event": TEXT}
PROVENANCE_FIELDS = {"commit": TEXT.or_none(), "variant": TEXT, "dataset": TEXT,
                     "classes": NAME.list(), "whitening": OBJECT.or_none(),
                     "lr_from": TEXT.or_none().or_absent(), "note": TEXT.or_absent()}
WHITENING = {"cache_entry": TEXT}     # what readers take of it
NET, SOLVER, DEPLOY, CURVES = ("train_test.prototxt", "solver.prototxt", "deploy.prototxt",
                               "curves.png")
CHECKPOINT = "checkpoint"
PROVENANCE = "provenance"
PROVENANCE_KEYS = ("commit", "variant", "dataset", "classes", "whitening")


def row_folder(out, table: str, row: str) -> Path:
    """Where a row's run folders lie: ``<out>/<table>/<row>/``."""
    return Path(out) / table / row


def table_of(run_dir) -> str:
    """The table a run folder ``<out>/<table>/<row>/<run>`` belongs to."""
    return Path(run_dir).parent.parent.name


def run_name(lr: float, seed: int = 0, smoke: bool = False) -> str:
    """A run's folder within its row's: ``lr-0.05`` at seed 0, ``lr-0.05-seed-4`` at another
    seed, each followed by ``-smoke`` for a smoke run."""
    return f"lr-{lr:g}" + (f"-seed-{seed}" if seed else "") + ("-smoke" if smoke else "")


def length_settings(spec, epochs: float | None, batch_size: int | None,
                    eval_limit: int | None) -> dict:
    """The settings of run.json that set a run's length, batch and test subset (None: the
    spec's; an ``eval_limit`` of the whole test set or more is None too): a row's table is
    made of the runs of one such setting (``replicate --report``)."""
    whole = eval_limit is None or eval_limit >= spec.variant.test_size
    return {"epochs": epochs or spec.epochs,
            "batch_size": batch_size or spec.training.batch_size,
            "eval_limit": None if whole else eval_limit}


def length_flags(spec, length: dict) -> str:
    """The replicate options that give ``length`` (a `length_settings`), "" for the spec's."""
    flags = [f"--epochs {length['epochs']}" if length["epochs"] != spec.epochs
             else "",
             f"--batch-size {length['batch_size']}"
             if length["batch_size"] != spec.training.batch_size else "",
             f"--eval-limit {length['eval_limit']}" if length["eval_limit"] is not None else ""]
    return " ".join(f for f in flags if f)


def settings(spec, opts, precision: str, processes: int) -> dict:
    """run.json's settings for ``spec`` trained with ``opts`` (harness.run.RunOptions): what a
    checkpoint must have been made with to be resumed."""
    return {"row": spec.key, "lr": opts.lr, "seed": opts.seed, "precision": precision,
            **length_settings(spec, opts.epochs, opts.batch_size, opts.eval_limit),
            "eval_every": opts.eval_every, "checkpoint_every": opts.checkpoint_every,
            "processes": processes, "batch_per_process": opts.batch_per_process,
            "spec": spec.path.read_text()}


def whitening_identity(dataset: str, data_dir, verify: bool = True) -> dict | None:
    """The whitening's cache folder and settings, when the CIFAR release lies in ``data_dir``
    (or the cache); None for a run on data handed to it in memory (tests, benchmarks)."""
    entry = get_dataset(dataset)
    root = Path(data_dir) if data_dir else files.cache_dir()
    if not all(cifar.search_release(entry.releases, split, root) for split in entry.splits):
        return None
    path = preprocess.prepared_entry(dataset, data_dir, verify=verify)
    return {"cache_entry": str(path), "scale": preprocess.GCN_SCALE,
            "filter_bias": preprocess.FILTER_BIAS}


def provenance(*, commit: str | None, variant: str, dataset: str, classes,
               whitening: dict | None, lr_from: str | None = None,
               note: str | None = None) -> dict:
    """run.json's provenance (see the module's docstring)."""
    found = {"commit": commit, "variant": variant, "dataset": get_dataset(dataset).name,
             "classes": list(classes), "whitening": whitening, "lr_from": lr_from}
    return {**found, "note": note} if note else found


def row_runs(row_dir) -> list["RunFolder"]:
    """The run folders in a row's folder (those holding a run.json), by name; a folder with a
    run's metrics or result but no run.json is an error naming it."""
    row_dir = Path(row_dir)
    if not row_dir.is_dir():
        return []
    runs = []
    for run in map(RunFolder, sorted(row_dir.iterdir())):
        if run.has_record:
            runs.append(run)
        elif any(os.path.lexists(run.file(name)) for name in (METRICS, RESULT_JSON)):
            raise AllconvError(f"{run.path}: holds a run's {METRICS} or {RESULT_JSON} but no "
                               f"{RUN_JSON}, its record; put it back, or move the folder away")
    return runs


def check_named_iteration(state_path: Path, held: int) -> None:
    """A checkpoint's .solverstate must hold the iteration its name says: a set renamed to
    another iteration would take another iteration's metrics record and schedule."""
    named = snapshot.iteration(state_path)
    if named != held:
        raise AllconvError(f"{state_path}: named iteration {named} but holds iteration {held}; "
                           "was the checkpoint renamed? (give its files their own name back)")


def resume_points(folders: Sequence[RunFolder]) -> list[Path | None]:
    """The checkpoint (.solverstate) each folder's run resumes from, None where it has none:
    the newest of its complete ones that every other folder sharing one of them also holds.
    So a pack killed while checkpointing resumes as one: a kill between its members' renames
    leaves some at the newer iteration and the older, others at the older only; one while
    pruning leaves some at the newer only. A run that shares none keeps its newest."""
    sets = [folder.complete_checkpoints() for folder in folders]

    def point(mine: dict[int, Path]) -> Path | None:
        if not mine:
            return None
        sharing = [set(other) for other in sets if other is not mine and set(other) & set(mine)]
        fits = [n for n in mine if all(n in other for other in sharing)]
        return mine[max(fits or mine)]
    return [point(s) for s in sets]


class MetricsLog:
    """Append-only JSONL of a run: one line per evaluation (and one per event, e.g. divergence)."""

    def __init__(self, path: Path):
        self.path = path
        self.held: int | None = None   # the records in the file, once read (kept by write)

    def records(self) -> list[dict]:
        """The records; a last line that is neither whole JSON nor ended by its newline (cut
        short by a kill while it was written) is left out."""
        if not self.path.is_file():
            self.held = 0
            return []
        lines = [line for line in read_text(self.path, "JSON lines").splitlines(keepends=True)
                 if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                record = json_value(line, non_finite_as_null=True)
            except ValueError as err:
                if i == len(lines) - 1 and not line.endswith("\n"):
                    break
                where, why = ((f", column {err.colno}", err.msg.removesuffix(" at"))
                              if isinstance(err, json.JSONDecodeError) else ("", str(err)))
                raise AllconvError(f"{self.path}, line {i + 1}{where}: not JSON ({why}); was "
                                   "it edited? (the run writes it)") from None
            if not isinstance(record, dict):
                raise AllconvError(f"{self.path}, line {i + 1}: not a JSON object")
            where = f", line {i + 1}"
            checked_fields(self.path, record, FIELDS[METRICS], where)
            records.append(checked_fields(self.path, record,
                                          EVENT if "event" in record else EVALUATION, where))
        self.held = len(records)
        return records

    def truncate(self, iteration: int) -> list[dict]:
        """Drop records after ``iteration`` (written after the checkpoint we resume from)."""
        kept = [r for r in self.records() if r["iter"] <= iteration]
        atomic_write_bytes(self.path, "".join(map(_json_line, kept)).encode())
        self.held = len(kept)
        return kept

    def write(self, record: dict) -> None:
        """Append ``record`` as a line, synced before the checkpoint that follows it (a line
        torn by a kill is skipped by `records`)."""
        try:
            with open(self.path, "a") as f:
                f.write(_json_line(record))
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise AllconvError(f"{self.path}: cannot write: {err.strerror or err}") from None
        if self.held is not None:
            self.held += 1


def _json_line(record: dict) -> str:
    """``record`` as one line of JSON (a speed not measured yet, NaN, is written null)."""
    return json_text(record) + "\n"


class RunFolder:
    """The run folder at ``path``: the writer's calls (process 0 only) and the readers'."""

    def __init__(self, path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def _holds(self, name: str) -> bool:
        """Whether the folder holds the file ``name``; something else by that name (a folder,
        a link to nothing) is an error naming it."""
        path = self.file(name)
        if path.is_file():
            return True
        if os.path.lexists(path):
            kind = ("a folder" if path.is_dir() else "a link to nothing" if path.is_symlink()
                    else "not a regular file")
            raise AllconvError(f"{path}: {kind}, where a run folder holds its {name} file")
        return False

    @property
    def has_record(self) -> bool:
        """Whether the folder holds a run's record (its run.json): what makes it a run folder."""
        return self._holds(RUN_JSON)

    @property
    def checkpoint_prefix(self) -> Path:
        """The snapshot prefix: `runtime.snapshot.write` adds ``_iter_N.<extension>``."""
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> MetricsLog:
        return MetricsLog(self.file(METRICS))

    # ------------------------------------------------------------------ writing

    def resumable(self, settings: dict) -> bool:
        """Whether the folder holds a run of ``settings`` to resume (False: no run.json); a run
        of other settings is an error, as are checkpoints without their run.json. Reads
        only."""
        if not self.has_record:
            if self.path.is_dir() and self._checkpoints(".*"):
                raise AllconvError(f"cannot resume {self.path}: it holds checkpoints but no "
                                   f"{RUN_JSON} file (the record of their settings); put it "
                                   "back, or remove the folder (or --out DIR) to start the run "
                                   "again")
            return False
        old = self.settings
        differ = [k for k in settings if not (same_row(old.get(k), settings[k]) if k == "spec"
                                              else old.get(k) == settings[k])]
        if differ:
            changed = "; ".join(
                "the row's spec file has changed" if k == "spec" else
                f"{k} {json.dumps(old.get(k))} there, {json.dumps(settings[k])} here"
                for k in differ)
            raise AllconvError(f"cannot resume {self.path}: it was started with other "
                               f"settings ({changed}); give its settings, or remove the "
                               "folder (or --out DIR) to start it again")
        return True

    def start(self, settings: dict, resume: bool) -> None:
        """Ready the folder for a run with ``settings``. With ``resume``, a folder whose run.json
        has the same settings is kept, less the temporary files of a write that was killed;
        other settings are an error (`resumable`). Otherwise the folder is emptied."""
        if resume and self.resumable(settings):
            for stale in self.path.glob(TEMPORARY):   # a killed write's
                stale.unlink()
            return
        folder = Path(os.path.realpath(self.path))     # a linked folder is emptied where it is
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def write_record(self, settings: dict, provenance: dict, **prototxt: str) -> None:
        """The run's record: the prototxt given (``net``, ``solver``, ``deploy``: texts as
        rendered), then run.json (last, so that a run.json means a complete record)."""
        names = {"net": NET, "solver": SOLVER, "deploy": DEPLOY}
        for key, text in prototxt.items():
            atomic_write_bytes(self.file(names[key]), text.encode())
        self._write_json(RUN_JSON, {**settings, PROVENANCE: provenance})

    @contextlib.contextmanager
    def lock(self):
        """Held while a process trains into the folder: a second command training the same
        run is refused, whatever its environment (an advisory lock on the empty file
        ``.<folder name>.lock`` beside the folder, which a fresh start does not remove and
        the kernel releases when the process dies, however)."""
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as handle:
            self._flock(handle)
            yield

    def check_free(self) -> None:
        """`lock`'s error, now, if another process trains into the folder, or an error if
        something else stands where the folder goes (a file, a link that leads to no folder);
        makes nothing."""
        if not self.path.is_dir() and (self.path.is_symlink() or self.path.exists()):
            what = "a symbolic link that leads to no folder" if self.path.is_symlink() else (
                "a file")
            raise AllconvError(f"{self.path}: {what}, where this run's folder goes: remove "
                               "it, or give another --out")
        if self._lock_file.is_file():
            with open(self._lock_file, "a") as handle:
                self._flock(handle)

    @property
    def _lock_file(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    def _flock(self, handle) -> None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AllconvError(f"{self.path}: another process is training this run (it holds "
                               f"{self._lock_file}); wait for it to end, or stop it") from None

    def check_same_whitening(self, whitening: dict | None) -> None:
        """A resumed run must go on with the whitened data it trained on (the settings leave
        out where the data lies, not what it is); a run.json of before provenance passes."""
        found = self.config.get(PROVENANCE)
        if not isinstance(found, dict) or "whitening" not in found:
            return
        before, now = ((Path(w["cache_entry"]).name if w is not None else None)
                       for w in (self._checked_whitening(found), whitening))
        if before != now:
            raise AllconvError(f"cannot resume {self.path}: it trained on the whitening "
                               f"{before or '(none: data given in memory)'}, the data given now "
                               f"gives {now or '(none: data given in memory)'}; give --data "
                               "with the release it trained on")

    def write_result(self, result: dict) -> None:
        self._write_json(RESULT_JSON, result)

    def prune_checkpoints(self, keep: int) -> None:
        """Delete every checkpoint file but iteration ``keep``'s."""
        for path, iteration in self._checkpoints(".*"):
            if iteration != keep:
                path.unlink()

    def _write_json(self, name: str, data: dict) -> None:
        atomic_write_bytes(self.file(name), json_text(data, indent=1).encode())

    # ------------------------------------------------------------------ reading

    @classmethod
    def read(cls, path) -> RunFolder:
        """The run folder at ``path`` for reading, its run.json and provenance checked."""
        folder = cls(path)
        folder.provenance
        return folder

    @property
    def config(self) -> dict:
        """run.json as written."""
        path = self.file(RUN_JSON)
        if self.path.is_file():
            raise AllconvError(f"{self.path}: a file; give its run folder, "
                               f"{self.path.parent}")
        if not self.path.is_dir():
            runs = sorted(q.parent.name for q in self.path.parent.glob(f"*/{RUN_JSON}"))
            beside = ", ".join(runs[:6]) + (f" and {len(runs) - 6} more" if runs[6:] else "")
            near = did_you_mean(self.path.name, runs) or (
                f" (the run folders beside it: {beside})" if runs else "")
            raise AllconvError(f"{self.path}: no such run folder{near}")
        if not self._holds(RUN_JSON):
            inside = sorted(str(run.parent.relative_to(self.path))   # <table>/<row>/<run>
                            for depth in ("*", "*/*", "*/*/*")
                            for run in self.path.glob(f"{depth}/{RUN_JSON}"))
            shown = ", ".join(inside[:6]) + (f" and {len(inside) - 6} more" if inside[6:] else "")
            raise AllconvError(f"{self.path}: not a replicate run folder (no {RUN_JSON})"
                               + (f"; the run folders in it: {shown}" if inside else ""))
        return read_json_object(path)

    @property
    def settings(self) -> dict:
        """run.json without its provenance: what a resume must match (and a report reads)."""
        return checked_fields(self.file(RUN_JSON), {k: v for k, v in self.config.items()
                                                    if k != PROVENANCE}, FIELDS[RUN_JSON])

    @property
    def provenance(self) -> dict:
        """run.json's provenance, checked: every key, its fields' types, a known dataset and
        variant, one class name per class; an AllconvError naming run.json otherwise."""
        found = self.config.get(PROVENANCE)
        missing = [k for k in PROVENANCE_KEYS if not isinstance(found, dict) or k not in found]
        if missing:
            raise AllconvError(f"{self.file(RUN_JSON)}: its provenance lacks "
                               f"{', '.join(missing)}; run the row again to record them")
        path = self.file(RUN_JSON)
        checked_fields(path, found, PROVENANCE_FIELDS, ", provenance")
        self._checked_whitening(found)
        try:
            dataset, _ = get_dataset(found["dataset"]), get_variant(found["variant"])
        except AllconvError as err:
            raise AllconvError(f"{path}: {err}") from None
        if len(found["classes"]) != dataset.num_classes:
            raise AllconvError(f"{path}, provenance: {len(found['classes'])} class names for "
                               f"{dataset.name}'s {dataset.num_classes} classes; was it edited? "
                               "(the run writes it)")
        twice = next((name for i, name in enumerate(found["classes"])
                      if name in found["classes"][:i]), None)
        if twice is not None:
            raise AllconvError(f"{path}, provenance: the class name {twice!r} is given twice; "
                               "was it edited? (the run writes it)")
        return found

    def _checked_whitening(self, provenance: dict) -> dict | None:
        """The provenance's whitening, checked as `provenance` checks it."""
        path, found = self.file(RUN_JSON), provenance["whitening"]
        checked_fields(path, provenance, {"whitening": PROVENANCE_FIELDS["whitening"]},
                       ", provenance")
        if found is not None:
            checked_fields(path, found, WHITENING, ", provenance's whitening")
        return found

    @property
    def dataset(self) -> str:
        """The run's dataset, by its registry name."""
        return self.provenance["dataset"]

    @property
    def classes(self) -> list[str]:
        return list(self.provenance["classes"])

    @property
    def variant(self) -> str:
        return self.provenance["variant"]

    @property
    def lr_from(self) -> str | None:
        """How the run's lr was chosen ("spec", "grid", "--lr"; None when not recorded)."""
        return self.provenance.get("lr_from")

    def recorded(self, key: str) -> str | None:
        """``key`` of the provenance of the run.json the folder holds (what a resume keeps:
        ``lr_from``, ``note``); None without a run.json, or where its provenance does not read
        (a run of before provenance: its resume records it anew)."""
        if not self.has_record:
            return None
        try:
            return self.provenance.get(key)
        except AllconvError:
            return None

    @property
    def note(self) -> str | None:
        return self.provenance.get("note")

    def deploy(self) -> Path:
        """The deploy net's prototxt file (a path, so that a parse error names it)."""
        path = self.file(DEPLOY)
        if not path.is_file():
            raise AllconvError(f"{self.path}: no {DEPLOY} in the run folder")
        return path

    def result(self) -> dict | None:
        """result.json, written when the run finished; None before."""
        path = self.file(RESULT_JSON)
        if not self._holds(RESULT_JSON):
            return None
        result = checked_fields(path, read_json_object(path), FIELDS[RESULT_JSON])
        settings = self.settings
        differ = [f"{key} {json.dumps(result[key])} there, {json.dumps(settings[key])} in "
                  f"{RUN_JSON}"
                  for key in ("row", "lr", "seed") if result[key] != settings[key]]
        if differ:
            raise AllconvError(f"{path}: not this run's result ({'; '.join(differ)}); was it "
                               "copied from another run?")
        named = result.get("per_class_accuracy")
        if named is not None and list(named) != self.classes:
            raise AllconvError(f"{path}: its 'per_class_accuracy' names the classes "
                               f"{', '.join(named) or 'none'}, not the run's; was it edited? "
                               "(the run writes it)")
        return result

    def outcome(self) -> dict:
        """What the folder holds: its result, ``{'diverged': why}``, or ``{'missing': why}``."""
        result = self.result()
        if result is not None:
            return result
        records = self.metrics.records()
        last = records[-1] if records else {}
        if last.get("event") == "diverged":
            return {"diverged": f"diverged at iteration {last['iter']} "
                                f"(epoch {last['epoch']:.2f})"}
        # a stop before the first record (a deadline, a signal) leaves a checkpoint alone
        checkpoints = self._checkpoints(".solverstate")
        reached = max([last.get("iter", 0)] + [n for _, n in checkpoints])
        return {"missing": f"unfinished at iteration {reached}" if reached or records
                else "not started"}

    def latest_checkpoint(self) -> Path | None:
        """The .solverstate of the newest complete checkpoint, or None (see
        `complete_checkpoints`)."""
        complete = self.complete_checkpoints()
        return complete[max(complete)] if complete else None

    def complete_checkpoints(self) -> dict[int, Path]:
        """{iteration: .solverstate} of the checkpoints whose three files (.caffemodel,
        .solverstate, .rngstate) are all here: two only when a kill came between a
        checkpoint's renames and the pruning of the one before (`resume_points`). Checkpoint
        files without a complete set are an error, not a run to start over, but for a
        finished run's (its final .caffemodel kept alone, as a lease's collected runs are)."""
        files: dict[int, dict[str, Path]] = {}
        for path, iteration in self._checkpoints(".*"):
            files.setdefault(iteration, {})[path.suffix] = path
        complete = {n: got[".solverstate"] for n, got in files.items()
                    if set(snapshot.BINARY_FILES) <= set(got)}
        if files and not complete and not self.file(RESULT_JSON).is_file():
            n = max(files)
            lacking = ", ".join(e for e in snapshot.BINARY_FILES if e not in files[n])
            raise AllconvError(f"{self.path}: its checkpoint of iteration {n} lacks its "
                               f"{lacking} file(s); put them back, or remove the folder (or "
                               "--out DIR) to start the run again")
        return complete

    def newest_checkpoint_file(self) -> Path | None:
        """The newest checkpoint file of any kind (what a fresh start would delete), or None."""
        found = self._checkpoints(".*")
        return found[-1][0] if found else None

    def weights(self) -> Path:
        """The newest checkpoint's .caffemodel."""
        found = self._checkpoints(".caffemodel")
        if not found:
            raise AllconvError(f"{self.path}: no snapshot ({CHECKPOINT}_iter_N.caffemodel) in "
                               "the run folder; give --weights")
        return found[-1][0]

    def whitening(self, data_dir=None, verify: bool = True) -> preprocess.Whitening:
        """The run's whitening, from ``prepared_folder``."""
        return preprocess.entry_whitening(self.prepared_folder(data_dir, verify))

    def prepared_folder(self, data_dir=None, verify: bool = True) -> Path:
        """The cache folder of the run's whitened dataset (where run.json says, or under this
        machine's cache by the same name); gone from the cache, it is rebuilt from ``data_dir``
        (or the default CIFAR location) when the files hash the same. A ``data_dir`` given is
        always checked to hold the release the run trained on."""
        identity = self.provenance["whitening"]
        if identity is None:   # trained on data given in memory
            if data_dir is None:
                raise AllconvError(f"{self.path}: the run names no whitening (it trained on data "
                                   "given in memory); give --data with the CIFAR release to use")
            return preprocess.prepared_folder(self.dataset, data_dir, verify=verify)
        entry, recorded = self.cache_entry(), Path(identity["cache_entry"])
        if data_dir is not None or entry is None:
            found = preprocess.prepared_entry(self.dataset, data_dir, verify=verify)
            if found.name != recorded.name:
                where = f"in --data {data_dir}" if data_dir is not None else "found"
                raise AllconvError(f"{self.path}: the run trained on the whitening "
                                   f"{recorded.name}; the CIFAR files {where} give {found.name}; "
                                   "give --data with the release the run trained on")
        return entry or preprocess.prepared_folder(self.dataset, data_dir, verify=verify)

    def cache_entry(self) -> Path | None:
        """The cache folder of the run's whitened dataset on this machine (where run.json
        says, or under this machine's cache by the same name); None when it is in neither or
        the run names no whitening."""
        identity = self.provenance["whitening"]
        if identity is None:
            return None
        recorded = Path(identity["cache_entry"])
        return next((entry for entry in (recorded, preprocess.prepared_root() / recorded.name)
                     if preprocess.is_entry(entry)), None)

    def export_provenance(self, weights: Path) -> dict:
        """``allconv.provenance`` of an export of ``weights``: commit, seed, test error (of the
        evaluation of these weights: the result's for the newest snapshot of a finished run,
        else the record at the snapshot's iteration; None for weights from elsewhere), row,
        lr, how long it trained and on how many test images it was measured (``epochs`` and
        ``eval_limit``: a SMOKE run's shortened ones), the snapshot and the spec's text."""
        config, result = self.config, self.result()
        at, newest = self._snapshot_at(weights)
        if at is not None and result and at == newest:
            error = result["test_error"]
        else:
            error = next((r["test_error"] for r in self.metrics.records()
                          if "test_error" in r and r["iter"] == at), None)
        return {"commit": self.provenance["commit"], "seed": config.get("seed"),
                "row": config.get("row"), "lr": config.get("lr"), "test_error": error,
                "finished": result is not None, "epochs": config.get("epochs"),
                "eval_limit": config.get("eval_limit"), "snapshot": Path(weights).name,
                "spec": config.get("spec")}

    def snapshot_warning(self, weights) -> str | None:
        """What a user of ``weights`` should be told when they are one of this run's snapshots
        but not a finished run's final weights (an unfinished or diverged run, or an earlier
        snapshot); None otherwise, and for weights from elsewhere."""
        at, newest = self._snapshot_at(weights)
        if at is None:
            return None
        epoch = self._epoch_at(at)
        where = f"iteration {at:,}" + (f" (epoch {epoch:g} of {self.settings['epochs']:g})"
                                       if epoch is not None else "")
        outcome = self.outcome()
        if "missing" in outcome:
            return (f"the run {self.path} is unfinished: these weights are its snapshot of "
                    f"{where}, not a trained net's")
        if "diverged" in outcome:
            return (f"the run {self.path} {outcome['diverged']}: these weights are its snapshot "
                    f"of {where}")
        if at != newest:
            return f"{weights} is the snapshot of {where} of {self.path}, not its final one"
        return None

    def _epoch_at(self, at: int) -> float | None:
        """The epoch at iteration ``at``: its record's, else the solver's iterations per epoch
        (max_iter over the run's epochs); None when neither can be read."""
        epoch = next((r["epoch"] for r in self.metrics.records()
                      if r.get("iter") == at and "epoch" in r), None)
        if epoch is not None:
            return epoch
        try:
            max_iter = read_solver(self.file(SOLVER)).max_iter
        except AllconvError:
            return None
        return round(at * self.settings["epochs"] / max_iter, 4) if max_iter > 0 else None

    def _snapshot_at(self, weights) -> tuple[int | None, int | None]:
        """(the iteration of ``weights`` when they are one of this run's snapshots, else None;
        the newest snapshot's iteration, None without one); an AllconvError when their
        .solverstate holds another iteration than their name (`check_named_iteration`)."""
        # realpath, not resolve: a link in a loop is named where it is read, not here
        checkpoints = {os.path.realpath(path): n for path, n in self._checkpoints(".caffemodel")}
        real = os.path.realpath(weights)
        at = checkpoints.get(real)
        state = Path(real).with_suffix(".solverstate")
        if at is not None and state.is_file():
            check_named_iteration(state, snapshot.read_state(state).iter)
        return at, max(checkpoints.values(), default=None)

    def check_dataset(self, given: str | None, option: str = "--dataset") -> None:
        """A ``--dataset`` given beside ``--run`` must be the run's own."""
        if given is not None and given != self.dataset:
            raise AllconvError(f"{option} {given} contradicts the run {self.path}, which "
                               f"trained on {self.dataset}; drop {option}")

    def _checkpoints(self, extension: str) -> list[tuple[Path, int]]:
        """(path, iteration) of the checkpoint files with ``extension`` (".*": any), oldest
        first."""
        found = [(p, n) for p in self.path.glob(snapshot.filename(CHECKPOINT, "*", extension))
                 if (n := snapshot.iteration(p)) is not None]
        return sorted(found, key=lambda item: item[1])
