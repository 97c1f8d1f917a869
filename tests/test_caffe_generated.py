"""Every generated net as real Caffe instantiated it (tests/fixtures/caffe_generated_nets.json,
made by tools/caffe_reference/check_generated_nets.sh): blob shapes and parameter counts agree."""
import json
from pathlib import Path

import pytest

from generator.render import NetOptions, render_net
from generator.variants import VARIANTS
from runtime.meta import count_params, meta_net
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
    variant = VARIANTS[name]
    net = meta_net(render_net(variant, NetOptions(batch_size=2, test_batch_size=2)),
                   getattr(pb, phase), variant.data_shape()[1:])
    ours = {blob: list(net.blobs[blob].shape) for blob in net.blobs}
    # Caffe's Split layers (where a blob feeds two layers: loss and accuracy at TEST) included.
    assert ours == seen["blobs"]
    assert count_params(net) == seen["params"]
