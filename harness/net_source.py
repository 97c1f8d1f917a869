"""The net a command's options name (export-onnx, visualize): ``--run DIR`` (its deploy
prototxt and newest snapshot, or --weights) or ``--prototxt`` with ``--weights``."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from harness.pipelines import Pipeline, test_pipeline
from harness.run_folder import RunFolder
from runtime.data.datasets import Dataset, dataset_names, get_dataset
from runtime.errors import AllconvError
from runtime.reconstruction import input_blob


class NetSource(NamedTuple):
    """Where a command's net comes from (export-onnx, visualize): its deploy prototxt and
    weights, its dataset's registry entry (the run's; with --prototxt, --dataset, by default
    the first whitened one), and the run folder, if any."""

    prototxt: str | Path
    weights: str | Path | None
    dataset: Dataset
    run: RunFolder | None

    def pipeline(self, net) -> Pipeline:
        """The augmentation whose TEST input ``net`` takes, as the harness trained it on the
        source's dataset (harness/pipelines.py)."""
        return test_pipeline(self.dataset, net.blobs[input_blob(net)].shape[1:])


def net_source(args, weights_required: bool = True) -> NetSource:
    """--prototxt/--weights or --run (with --weights, instead of its newest snapshot), read
    but not yet loaded; without ``weights_required``, --prototxt alone (weights None: a net
    without learnable layers)."""
    if args.run is not None:
        if args.prototxt:
            raise AllconvError("give --run or --prototxt, not both (--weights goes with either)")
        run = RunFolder.read(args.run)
        run.check_dataset(args.dataset)
        weights = args.weights or run.weights()      # --weights: instead of the newest snapshot
        return NetSource(run.deploy(), weights, get_dataset(run.dataset), run)
    if args.prototxt and (args.weights or not weights_required):
        name = args.dataset or dataset_names(whitening=True)[0]
        return NetSource(args.prototxt, args.weights, get_dataset(name), None)
    raise AllconvError("the weights: give --prototxt NET --weights W.caffemodel, or --run DIR")

