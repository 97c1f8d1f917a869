"""Input (runtime/layers/input.py): edges a mutation round found untested.
Caffe's values: tools/caffe_reference/module_edges/input_shapes_ref.py."""
import numpy as np
import pytest
import torch

from runtime import TEST, AllconvError, Net


def test_more_shapes_than_tops_are_refused():
    """Caffe's InputLayer: 'Must specify shape once, once per top blob, or not at all'."""
    with pytest.raises(AllconvError, match=r"one per top \(2\); got 3"):
        Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
            'shape { dim: 1 } shape { dim: 2 } shape { dim: 3 } } }', TEST)


def test_shapes_one_per_top_as_caffe():
    """input_shapes_ref.py prints two_for_two {'a': (2, 3), 'b': (4,)}."""
    net = Net('layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
              'shape { dim: 2 dim: 3 } shape { dim: 4 } } }', TEST)
    assert tuple(net.blobs["a"].shape) == (2, 3) and tuple(net.blobs["b"].shape) == (4,)


def test_input_tops_start_as_zeros():
    """Caffe's SyncedMemory zero-fills a blob's first allocation."""
    for _ in range(50):      # freed memory full of 7s for an uninitialised top to reuse
        torch.full((64, 100), 7.0)
    net = Net('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 64 '
              'dim: 100 } } }', TEST)
    assert not np.asarray(net.forward()["a"]).any()
