"""Every generated net as real Caffe instantiated it (tests/fixtures/caffe_generated_nets.json,
made by tools/caffe_reference/check_generated_nets.sh): blob shapes and parameter counts agree."""
import json
import re
from pathlib import Path

import pytest

from generator.cli import INPUT_SIZE
from generator.render import NetOptions, render_net
from generator.summary import count_params, summarize
from generator.variants import VARIANTS
from runtime.prototxt import parse_net
from runtime.proto import pb

REPORT = json.loads((Path(__file__).parent / "fixtures" / "caffe_generated_nets.json").read_text())


def test_caffe_loaded_all_fourteen_nets_with_their_solvers():
    assert sorted(REPORT["nets"]) == sorted(VARIANTS)
    for name, entry in REPORT["nets"].items():
        assert entry["solver"]["iter"] == 0 and entry["solver"]["test_nets"] == 1, name


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_shapes_and_counts_match_real_caffe(name, phase):
    seen = REPORT["nets"][name][phase]
    net = parse_net(render_net(VARIANTS[name], NetOptions(batch_size=2, test_batch_size=2)))
    size = INPUT_SIZE.get(name, 32)
    rows = summarize(net, getattr(pb, phase), (2, 3, size, size))
    ours = {}
    for row in rows:
        layer = next(l for l in net.layer if l.name == row.name)
        ours.update(zip(layer.top, (list(s) for s in row.top_shapes)))
    # Caffe adds Split layers where a blob feeds two layers (loss and accuracy at TEST).
    caffe_blobs = {k: v for k, v in seen["blobs"].items() if not re.search(r"_split_\d+$", k)}
    assert ours == caffe_blobs
    assert count_params(rows) == seen["params"]


class ShapeOnlyFeed:
    """A Data-layer feed that only states its sample shape (no batch is drawn)."""

    def __init__(self, size: int):
        self.sample_shape = (3, size, size)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_runtime_net_has_every_blob_of_real_caffe_split_blobs_included(name, phase):
    from runtime import Net
    text = render_net(VARIANTS[name], NetOptions(batch_size=2, test_batch_size=2))
    net = Net(text, getattr(pb, phase), feeds=ShapeOnlyFeed(INPUT_SIZE.get(name, 32)))
    ours = {blob: list(view.shape) for blob, view in net.blobs.items()}
    assert ours == REPORT["nets"][name][phase]["blobs"]
