"""Reading a `replicate` run folder as harness/train.py writes it today: ``run.json`` (with the
row's spec TOML under ``"spec"``) and ``checkpoint_iter_N.caffemodel`` snapshots."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import NamedTuple

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from runtime.errors import AllconvError


class RunFolder(NamedTuple):
    deploy_prototxt: str    # the row's net with an Input layer (batch 1), from the generator
    weights: Path           # the newest checkpoint
    dataset: str            # cifar10 or cifar100: whose whitening the inputs get


def read_run(run_dir) -> RunFolder:
    """The deploy net, newest weights and dataset of a run folder; one-line errors."""
    run_dir = Path(run_dir)
    config_path = run_dir / "run.json"
    try:
        spec = tomllib.loads(json.loads(config_path.read_text())["spec"])
        variant, dataset = get_variant(spec["variant"]), spec["dataset"]
    except FileNotFoundError:
        raise AllconvError(f"{run_dir} is not a replicate run folder (no run.json)") from None
    except (ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as err:
        raise AllconvError(f"{config_path}: cannot read the row's spec ({err})") from None
    snapshots = {int(m.group(1)): path for path in run_dir.glob("checkpoint_iter_*.caffemodel")
                 if (m := re.fullmatch(r"checkpoint_iter_(\d+)\.caffemodel", path.name))}
    if not snapshots:
        raise AllconvError(f"{run_dir} holds no checkpoint_iter_N.caffemodel yet")
    classes = 100 if dataset == "cifar100" else None
    text = render_net(variant, NetOptions(num_classes=classes, deploy=True))
    return RunFolder(text, snapshots[max(snapshots)], dataset)
