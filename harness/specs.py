"""Reproduction specs: one TOML file per paper table row, loaded and validated.

A table is a folder of ``reproductions/`` (``table3``), a row is a file stem in it
(``all-cnn-c``). Rows are looked up case-insensitively, with the generator's variant aliases
(``All-CNN-C``, ``all-c``), and may be qualified by their table (``table3/all-cnn-c``).
The schema is documented in reproductions/README.md.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from generator.render import Filler, Init, constant_filler
from generator.variants import Variant, get_variant
from harness.pipelines import PIPELINES, Pipeline
from runtime.cli_support import check_number
from runtime.data.datasets import DATASETS, Dataset, get_dataset
from runtime.errors import AllconvError
from runtime.fillers import FILLERS
from runtime.files import read_text
from runtime.limits import INT_MAX, INT_MIN, UINT32_MAX
from runtime.registry import did_you_mean
from runtime.proto import pb

SPECS_DIR = Path(__file__).resolve().parent.parent / "reproductions"

AUGMENTATIONS = tuple(PIPELINES)
SOURCES = ("quoted", "recalled", "chosen", "counted")

@dataclass(frozen=True)
class Number:
    """A TOML number: an int (``kind`` int) or any number, checked by cli_support's
    `check_number` as the command line checks its options."""
    kind: type = float
    low: str | None = "positive"
    high: float | None = None


ANY, POSITIVE, RATE = Number(low=None), Number(), Number(low="non-negative")
# key -> (kind, required): a type, a Number, a list of distinct Numbers ([Number]), or a dict
# of its own keys (a TOML table).
SCHEMA = {
    "order": (int, True), "title": (str, True), "variant": (str, True),
    "dataset": (str, True), "augmentation": (str, True),
    "paper": ({
        "error": (Number(low="non-negative", high=100), True),
        "params": (Number(int), False), "counted_params": (Number(int), True),
        "tolerance": (RATE, True), "tolerance_why": (str, True)}, True),
    "training": ({
        "batch_size": (Number(int, high=UINT32_MAX), True), "lr_grid": ([POSITIVE], True),
        "lr": (POSITIVE, True)}, True),
    "init": ({
        "weight_filler": (str, True), "weight_filler_args": (dict, True),
        "bias_value": (ANY, True), "weight_lr_mult": (RATE, True),
        "weight_decay_mult": (RATE, True), "bias_lr_mult": (RATE, True),
        "bias_decay_mult": (RATE, True)}, True),
    "augment": (dict, False),
    "sources": ({**{key: (str, key != "params") for key in (
        "error", "params", "counted_params", "lr_grid", "lr", "schedule", "batch_size",
        "init")}, "augment": (dict, False)}, True),
}


@dataclass(frozen=True)
class Paper:
    error: float
    params: int | None
    counted_params: int
    tolerance: float
    tolerance_why: str


@dataclass(frozen=True)
class Training:
    batch_size: int
    lr_grid: tuple[float, ...]
    lr: float


@dataclass(frozen=True)
class Spec:
    """One row: what to train and what the paper measured."""

    path: Path
    table: str
    name: str
    order: int
    title: str
    variant: Variant
    dataset: Dataset
    pipeline: Pipeline
    paper: Paper
    training: Training
    init: Init
    sources: dict
    augment: object = None    # the pipeline's parameters (its ``params`` class), if it has any

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def key(self) -> str:
        return f"{self.table}/{self.name}"

    @property
    def epochs(self) -> float:
        """The run's length in epochs of the variant's training set: its variant's schedule
        (the paper's), an iteration length converted at the spec's batch."""
        schedule = self.variant.schedule
        return float(schedule.length) if schedule.unit == "epoch" else \
            schedule.length * self.training.batch_size / self.variant.train_size

    def is_smoke(self, epochs: float | None, batch_size: int | None = None,
                 eval_limit: int | None = None) -> bool:
        """A run of another length than the spec's (``epochs``: shorter, or longer than the
        paper trained), at another batch, or evaluated on fewer test images than the variant's
        test set is a smoke run, never a replication; None leaves the spec's."""
        return ((epochs is not None and epochs != self.epochs)
                or (batch_size is not None and batch_size != self.training.batch_size)
                or (eval_limit is not None and eval_limit < self.variant.test_size))


def _check_keys(data: dict, schema: dict, path: Path, where: str) -> None:
    """Unknown keys, missing keys, wrong types and numbers out of range of one TOML table,
    against ``schema``."""
    for key in data:
        if key not in schema:
            raise AllconvError(f"{path}: unknown key '{where}{key}'; valid keys: "
                               f"{', '.join(schema)}")
    for key, (kind, required) in schema.items():
        if key not in data:
            if required:
                raise AllconvError(f"{path}: missing key '{where}{key}'")
            continue
        if isinstance(kind, dict):
            if not isinstance(data[key], dict):
                raise AllconvError(f"{path}: '{where}{key}' must be a table [{key}]")
            _check_keys(data[key], kind, path, f"{where}{key}.")
        elif isinstance(kind, list):
            _check_list(data[key], kind[0], path, where + key)
        else:
            _check_value(data[key], kind, path, where + key)


def _check_value(value, kind, path: Path, key: str) -> None:
    if isinstance(kind, Number):
        types = (int,) if kind.kind is int else (int, float)
    else:
        types = (kind,)
    if isinstance(value, bool) or not isinstance(value, types):
        names = "/".join(k.__name__ for k in types)
        raise AllconvError(f"{path}: '{key}' must be {names}, "
                           f"not {type(value).__name__} {value!r}")
    if isinstance(kind, Number):
        try:
            if kind.kind is float:
                float(value)        # an int past the float range is no finite number
            check_number(value, kind.low, kind.high)
        except OverflowError:
            raise AllconvError(f"{path}: '{key}' must be a finite number, not {value}") \
                from None
        except ValueError as err:
            raise AllconvError(f"{path}: '{key}' {err}") from None


def _check_list(values, kind: Number, path: Path, key: str) -> None:
    """A list of distinct numbers of ``kind``."""
    if not isinstance(values, list) or not values:
        raise AllconvError(f"{path}: '{key}' must be a list of numbers, not {values!r}")
    for i, value in enumerate(values):
        _check_value(value, kind, path, key)
        if value in values[:i]:
            raise AllconvError(f"{path}: '{key}' gives {value:g} twice")


def _choice(value: str, allowed, path: Path, key: str) -> str:
    if value not in allowed:
        raise AllconvError(f"{path}: {key!r} is {value!r}; expected one of {', '.join(allowed)}")
    return value


def _init(data: dict, path: Path) -> Init:
    _choice(data["weight_filler"], sorted(FILLERS), path, "init.weight_filler")
    fields = pb.FillerParameter.DESCRIPTOR.fields_by_name
    for key, value in data["weight_filler_args"].items():
        if key not in fields or key == "type":
            raise AllconvError(f"{path}: unknown key 'init.weight_filler_args.{key}'; valid "
                               f"keys: {', '.join(f for f in fields if f != 'type')}")
        _check_filler_arg(fields[key], value, path, f"init.weight_filler_args.{key}")
    return Init(weight_filler=Filler(data["weight_filler"],
                                     tuple(data["weight_filler_args"].items())),
                bias_filler=constant_filler(data["bias_value"]),
                weight_lr_mult=data["weight_lr_mult"], weight_decay_mult=data["weight_decay_mult"],
                bias_lr_mult=data["bias_lr_mult"], bias_decay_mult=data["bias_decay_mult"])


def _check_filler_arg(field, value, path: Path, key: str) -> None:
    """A FillerParameter field's value as caffe.proto types it: an enum value's name, an
    integer, or a finite number."""
    if field.enum_type is not None:
        names = [v.name for v in field.enum_type.values]
        if value not in names:
            raise AllconvError(f"{path}: '{key}' is {value!r}; expected one of "
                               f"{', '.join(names)}")
    else:
        is_int = field.cpp_type in (field.CPPTYPE_INT32, field.CPPTYPE_INT64)
        _check_value(value, Number(int if is_int else float, low=None), path, key)
        if is_int and not INT_MIN <= value <= INT_MAX:
            raise AllconvError(f"{path}: '{key}' {value} is past the int32 range")


def _check_fit(variant: Variant, dataset: Dataset, pipeline: Pipeline, path: Path) -> None:
    """The dataset, augmentation and variant fit together: the pipeline reads the dataset, the
    variant (the registry entry) takes its class count and the pipeline's input size."""
    if not pipeline.reads(dataset):
        raise AllconvError(f"{path}: 'augmentation' {pipeline.name!r} reads "
                           f"{', '.join(pipeline.datasets)}, not 'dataset' {dataset.name!r}")
    if dataset.num_classes not in variant.classes:
        raise AllconvError(f"{path}: 'dataset' {dataset.name!r} has {dataset.num_classes} "
                           f"classes; variant {variant.name!r} takes "
                           f"{' or '.join(map(str, variant.classes))}")
    if pipeline.input_size != variant.input_size:
        raise AllconvError(f"{path}: 'augmentation' {pipeline.name!r} makes "
                           f"{pipeline.input_size}x{pipeline.input_size} inputs; variant "
                           f"{variant.name!r} takes {variant.input_size}x{variant.input_size}")


def _augment(data: dict, pipeline: Pipeline, path: Path):
    """The pipeline's parameters from ``[augment]``, every one given, each with a
    ``[sources.augment]`` entry "KIND: reason" (KIND one of SOURCES)."""
    params = pipeline.params
    table, sources = data.get("augment"), data["sources"].get("augment")
    if params is None:
        if table is not None or sources is not None:
            raise AllconvError(f"{path}: augmentation {pipeline.name!r} takes no [augment] "
                               "table or 'sources.augment'")
        return None
    fields = [f.name for f in dataclasses.fields(params)]
    for where, given in (("augment", table), ("sources.augment", sources)):
        if given is None:
            raise AllconvError(f"{path}: missing table [{where}] (augmentation "
                               f"{pipeline.name!r}: {', '.join(fields)})")
        missing = [f for f in fields if f not in given]
        if missing:
            raise AllconvError(f"{path}: missing key '{where}.{missing[0]}'")
    config = params.from_table(table, f"{path}: [augment]")
    for key, text in sources.items():
        if key not in fields:
            raise AllconvError(f"{path}: unknown key 'sources.augment.{key}'; valid keys: "
                               f"{', '.join(fields)}")
        kind, _, why = text.partition(":") if isinstance(text, str) else ("", "", "")
        if kind not in SOURCES or not why.strip():
            raise AllconvError(f"{path}: 'sources.augment.{key}' must read 'KIND: reason' "
                               f"with KIND one of {', '.join(SOURCES)}, not {text!r}")
    return config


def load_spec(path: str | Path) -> Spec:
    """Read and validate one row's TOML file; every problem is an AllconvError naming file and
    key."""
    path = Path(path)
    text = read_text(path, "TOML")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise AllconvError(f"{path}: {err}") from None
    except RecursionError:
        raise AllconvError(f"{path}: nested deeper than Python's TOML reader goes") from None
    _check_keys(data, SCHEMA, path, "")
    try:
        variant = get_variant(data["variant"])
    except AllconvError as err:
        raise AllconvError(f"{path}: 'variant': {err}") from None
    dataset = get_dataset(_choice(data["dataset"], DATASETS, path, "dataset"))
    pipeline = PIPELINES[_choice(data["augmentation"], AUGMENTATIONS, path, "augmentation")]
    _check_fit(variant, dataset, pipeline, path)
    paper, train, sources = data["paper"], data["training"], data["sources"]
    if ("params" in paper) != ("params" in sources):
        raise AllconvError(f"{path}: 'sources.params' must be given exactly when 'paper.params' is")
    for key, value in sources.items():
        if key != "augment":
            _choice(value, SOURCES, path, f"sources.{key}")
    training = Training(batch_size=train["batch_size"],
                        lr_grid=tuple(float(lr) for lr in train["lr_grid"]),
                        lr=float(train["lr"]))
    if training.lr not in training.lr_grid:
        raise AllconvError(f"{path}: 'training.lr' {training.lr:g} is not in 'training.lr_grid'")
    return Spec(path=path, table=path.parent.name, name=path.stem, order=data["order"],
                title=data["title"], variant=variant, dataset=dataset,
                pipeline=pipeline,
                paper=Paper(float(paper["error"]), paper.get("params"), paper["counted_params"],
                            float(paper["tolerance"]), paper["tolerance_why"]),
                training=training, init=_init(data["init"], path), sources=dict(sources),
                augment=_augment(data, pipeline, path))


def same_row(recorded, current: str) -> bool:
    """Whether a run.json's spec text and today's define the same row: equal once parsed
    (comments and layout aside), a row of before the schedule was its variant's (its
    ``training`` table's unit, length and steps) the same when those were the variant's."""
    if recorded == current:
        return True
    try:
        then, now = (_current_form(tomllib.loads(text)) for text in (recorded, current))
    except (TypeError, tomllib.TOMLDecodeError, RecursionError, AllconvError):
        return False
    return then == now


def _current_form(data: dict) -> dict:
    """A spec's TOML data without the schedule keys of before, where they held the variant's
    schedule (the steps an iteration schedule kept were never read)."""
    training = data.get("training", {})
    if not isinstance(training, dict):          # no such spec loads: not the same row
        return data
    old = {key: training.get(key) for key in ("unit", "length", "steps")}
    if all(value is None for value in old.values()):
        return data
    schedule = get_variant(str(data.get("variant"))).schedule
    if (old["unit"], old["length"]) == (schedule.unit, schedule.length) and (
            schedule.unit == "iteration" or tuple(old["steps"] or ()) == schedule.steps):
        data["training"] = {k: v for k, v in training.items() if k not in old}
    return data


def load_tables(root: str | Path = SPECS_DIR) -> dict[str, list[Spec]]:
    """Every table folder under ``root`` with its rows in the paper's order."""
    root = Path(root)
    if not root.is_dir():
        raise AllconvError(f"spec folder {root} " + ("is a file" if root.exists() else
                                                      "not found"))
    tables = {}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.toml")))
    for folder in _one_per_key(folders, lambda p: table_key(p.name), "table"):
        files = _one_per_key(sorted(folder.glob("*.toml")), lambda p: row_key(p.stem), "row")
        tables[folder.name] = sorted((load_spec(p) for p in files), key=lambda s: s.order)
    if not tables:
        raise AllconvError(f"no table folders with .toml specs in {root}")
    return tables


def _one_per_key(paths: list[Path], key, what: str) -> list[Path]:
    """``paths``; two that one lookup name reaches (``key`` folds case, separators and aliases)
    are refused, as only one of them could ever be selected."""
    seen: dict[str, Path] = {}
    for path in paths:
        name = key(path)
        if name in seen:
            raise AllconvError(f"{seen[name]} and {path} both name the {what} {name!r}; "
                               "rename one")
        seen[name] = path
    return paths


def row_key(name: str) -> str:
    """Lookup key of a row name: case and separators folded, variant aliases resolved."""
    try:
        return get_variant(name).name
    except AllconvError:
        return re.sub(r"[\s_]+", "-", name.strip().lower())


def table_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.strip().lower())


def select(targets: list[str], tables: dict[str, list[Spec]]) -> list[Spec]:
    """The rows named by ``targets``: table names (every row), rows, or ``table/row``."""
    chosen: list[Spec] = []
    for target in targets:
        found = _table_rows(target, tables) or _matching_rows(target, tables)
        chosen += [s for s in found if s not in chosen]
    return chosen


def _table_rows(target: str, tables: dict[str, list[Spec]]) -> list[Spec]:
    return next((specs for t, specs in tables.items() if table_key(t) == table_key(target)), [])


def _matching_rows(target: str, tables: dict[str, list[Spec]]) -> list[Spec]:
    table, _, row = target.rpartition("/")
    found = [s for t, specs in tables.items() for s in specs
             if row_key(s.name) == row_key(row) and (not table or table_key(t) == table_key(table))]
    if not found:
        rows = [s.name for specs in tables.values() for s in specs]
        raise AllconvError(f"unknown table or row {target!r}{did_you_mean(row, [*tables, *rows])}"
                           f"; valid tables: {', '.join(tables)}; valid rows: {', '.join(rows)}")
    if len(found) > 1:
        raise AllconvError(f"row {target!r} is ambiguous: {', '.join(s.key for s in found)}; "
                           "name one of these")
    return found
