"""harness/net_transforms.py (a mutation round)
on a small net, checked field by field: each phase's Data layer becomes an Input layer of that
phase's batch, its tops (data (N, C, H, W), label (N,)) and nothing of the Data layer left;
other layers untouched; a Data layer of no single phase refused; the argument never changed
(module docstring: 'returns a changed copy and leaves its argument alone')."""
import pytest

from harness.net_transforms import data_as_input, transformed
from runtime.errors import AllconvError
from runtime.proto import pb
from runtime.prototxt import read_net

NET = """
name: "n"
layer { name: "train_data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { scale: 0.5 } data_param { source: "a" batch_size: 64 backend: LMDB } }
layer { name: "test_data" type: "Data" top: "data" top: "label" include { phase: TEST }
        data_param { source: "b" batch_size: 100 backend: LMDB } }
layer { name: "extra" type: "Input" top: "extra" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
BATCHES = {pb.TRAIN: 8, pb.TEST: 5}


def shapes(layer):
    return [list(s.dim) for s in layer.input_param.shape]


def test_each_phase_gets_its_own_batch_and_the_label_is_one_number_a_sample():
    param = read_net(NET)
    out = data_as_input(BATCHES, (3, 4, 4))(param)
    train, test, extra = out.layer[0], out.layer[1], out.layer[2]
    assert train.type == test.type == "Input"
    assert shapes(train) == [[8, 3, 4, 4], [8]] and shapes(test) == [[5, 3, 4, 4], [5]]
    for layer in (train, test):
        assert not layer.HasField("data_param") and not layer.HasField("transform_param")
    assert extra == param.layer[2]                   # an Input layer stays as it was
    assert out.layer[3:] == param.layer[3:]


def test_a_data_layer_with_one_top_gets_one_shape():
    param = read_net(NET.replace('top: "data" top: "label" include { phase: TEST }',
                                 'top: "data" include { phase: TEST }'))
    out = data_as_input(BATCHES, (3, 4, 4))(param)
    assert shapes(out.layer[1]) == [[5, 3, 4, 4]]


@pytest.mark.parametrize("include", ["", "include { phase: TRAIN } include { phase: TEST }",
                                     "include { stage: \"x\" }"])
def test_a_data_layer_of_no_single_phase_is_refused(include):
    param = read_net(NET.replace("include { phase: TRAIN }", include))
    with pytest.raises(AllconvError, match="names no single phase"):
        data_as_input(BATCHES, (3, 4, 4))(param)


def test_a_rule_without_a_phase_does_not_count_as_one():
    """include { stage: "x" } include { phase: TEST }: the layer's phase is TEST."""
    param = read_net(NET.replace("include { phase: TEST }",
                                 'include { stage: "x" } include { phase: TEST }'))
    out = data_as_input(BATCHES, (3, 4, 4))(param)
    assert shapes(out.layer[1]) == [[5, 3, 4, 4], [5]]


@pytest.mark.parametrize("phase", [pb.TRAIN, pb.TEST])
def test_the_argument_is_left_alone_and_the_phase_set(phase):
    param = read_net(NET)
    before = param.SerializeToString()
    out = transformed(param, [], phase)
    assert out.state.phase == phase and out.HasField("state")
    data_as_input(BATCHES, (3, 4, 4))(param)
    assert param.SerializeToString() == before
