"""What a run folder holds for export, and reading it back (``export-onnx --run``).

Each run writes, besides its checkpoints (Caffe snapshots ``<prefix>_iter_N.caffemodel``):

- ``deploy.prototxt``: the row's net with an Input layer and Softmax ``prob``;
- ``run.json`` key ``provenance``: the commit, the dataset and the whitening's identity (its
  cache folder, named by the hash of the CIFAR files' md5s and the GCN+ZCA settings).

``provenance`` is not part of the settings a resume compares (``run_settings``): a resumed
run may run another commit, and it records that one.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from harness.datasets import PIPELINES
from runtime.data import cifar, preprocess
from runtime.errors import AllconvError

DEPLOY = "deploy.prototxt"
RUN_JSON = "run.json"
PROVENANCE = "provenance"


def record_run_files(run_dir: Path, spec, opts) -> None:
    """Write ``deploy.prototxt`` and run.json's ``provenance`` for ``spec`` run with ``opts``."""
    from harness.report import git_commit   # harness.report imports harness.train
    opts_net = NetOptions(num_classes=spec.num_classes, deploy=True, init=spec.init)
    (run_dir / DEPLOY).write_text(render_net(spec.variant, opts_net))
    config = json.loads((run_dir / RUN_JSON).read_text())
    whitened = PIPELINES[spec.augmentation].whitened
    config[PROVENANCE] = {"commit": git_commit(), "dataset": spec.dataset,
                          "whitening": _whitening_identity(spec.dataset, opts) if whitened
                          else None}
    (run_dir / RUN_JSON).write_text(json.dumps(config, indent=1))


def _whitening_identity(dataset: str, opts) -> dict | None:
    """The whitening's cache folder, when the CIFAR release lies in ``opts.data_dir`` (or the
    cache); None for a run on data handed to it in memory (tests, benchmarks)."""
    root = Path(opts.data_dir) if opts.data_dir else cifar.cache_dir()
    if not all(cifar.search_release(dataset, split, root) for split in cifar.SPLITS):
        return None
    entry = preprocess.prepared_entry(dataset, opts.data_dir, verify=opts.verify)
    return {"cache_entry": str(entry), "scale": preprocess.GCN_SCALE,
            "filter_bias": preprocess.FILTER_BIAS}


def run_settings(config: dict) -> dict:
    """run.json without its provenance: what a resume must match."""
    return {k: v for k, v in config.items() if k != PROVENANCE}


@dataclass(frozen=True)
class RunFolder:
    """A run folder as export reads it."""

    path: Path
    config: dict
    provenance: dict
    weights: Path

    @property
    def deploy(self) -> str:
        """The deploy net's prototxt text: the folder's ``deploy.prototxt``, or for a run made
        before runs wrote one, the row's net rendered from the spec in run.json."""
        if (self.path / DEPLOY).is_file():
            return (self.path / DEPLOY).read_text()
        spec = _spec(self.path, self.config)
        classes = 100 if spec["dataset"] == "cifar100" else None
        return render_net(get_variant(spec["variant"]), NetOptions(num_classes=classes,
                                                                   deploy=True))

    @property
    def dataset(self) -> str:
        return self.provenance["dataset"]

    def classes(self) -> list[str]:
        return list(cifar.class_names(self.dataset))

    def whitening(self, data_dir=None, verify: bool = True) -> preprocess.Whitening:
        """The run's whitening from its cache folder; gone from the cache, it is rebuilt from
        ``data_dir`` (or the default CIFAR location) when the files hash the same."""
        if self.provenance["whitening"] is None:   # trained on data given in memory
            if data_dir is None:
                raise AllconvError(f"{self.path}: the run names no whitening (it trained on data "
                                   "given in memory); give --data with the CIFAR release to use")
            return preprocess.prepared_whitening(self.dataset, data_dir, verify=verify)
        entry = Path(self.provenance["whitening"]["cache_entry"])
        if not (entry / "whitening.npz").is_file():
            rebuilt = preprocess.prepared_entry(self.dataset, data_dir, verify=verify)
            if rebuilt.name != entry.name:
                raise AllconvError(f"{self.path}: the run's whitening {entry} is not in the cache "
                                   f"and the CIFAR files found give {rebuilt.name}; give --data "
                                   "with the release the run trained on")
            return preprocess.prepared_whitening(self.dataset, data_dir, verify=verify)
        return preprocess.Whitening.load(entry / "whitening.npz")

    def export_provenance(self) -> dict:
        """``allconv.provenance``: commit, seed, test error (of the run's last evaluation),
        row, lr, the snapshot exported and the spec's text."""
        result = _read_json(self.path / "result.json") if (self.path / "result.json").is_file() \
            else None
        evaluated = [r for r in _metrics(self.path) if "test_error" in r]
        return {"commit": self.provenance.get("commit"), "seed": self.config.get("seed"),
                "row": self.config.get("row"), "lr": self.config.get("lr"),
                "test_error": result["test_error"] if result else
                (evaluated[-1]["test_error"] if evaluated else None),
                "finished": result is not None, "snapshot": self.weights.name,
                "spec": self.config.get("spec")}


def read_run_folder(run_dir, weights=None) -> RunFolder:
    """The run folder ``run_dir``: its run.json, deploy net and last snapshot (or ``weights``)."""
    path = Path(run_dir)
    if not (path / RUN_JSON).is_file():
        raise AllconvError(f"{path}: not a replicate run folder (no {RUN_JSON})")
    config = _read_json(path / RUN_JSON)
    # a run made before runs recorded provenance: its dataset from the spec, no whitening known
    provenance = config.get(PROVENANCE) or {"commit": None, "whitening": None,
                                             "dataset": _spec(path, config)["dataset"]}
    if weights is None:
        snapshots = sorted(path.glob("*_iter_*.caffemodel"), key=_snapshot_iter)
        if not snapshots:
            raise AllconvError(f"{path}: no snapshot (*_iter_N.caffemodel) in the run folder; "
                               "give --weights")
        weights = snapshots[-1]
    return RunFolder(path, config, provenance, Path(weights))


def _snapshot_iter(path: Path) -> int:
    return int(re.search(r"_iter_(\d+)\.caffemodel$", path.name).group(1))


def _spec(path: Path, config: dict) -> dict:
    """The row's spec TOML that run.json holds."""
    try:
        spec = tomllib.loads(config["spec"])
        get_variant(spec["variant"])
        return spec
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as err:
        raise AllconvError(f"{path / RUN_JSON}: cannot read the row's spec ({err})") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AllconvError(f"{path}: cannot read it as JSON: {err}") from None


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as err:
        raise AllconvError(f"{path}: a line is not JSON: {err}") from None
