"""From a mutation round: Net behaviours tests/test_net.py left open. Where a test
says what real Caffe does, tools/caffe_reference/net_edges/net_reference.py printed it (BVLC
Caffe's pycaffe, CPU build)."""
import numpy as np
import pytest
import torch

from runtime import TEST, TRAIN, AllconvError, Net
from runtime.blob_views import as_numbers

TWO = ('layer { name: "in" type: "Input" top: "a" top: "b" '
       'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }\n')


def test_a_top_named_like_another_bottom_than_its_own_is_not_in_place():
    """net.cpp AppendTop: in place only where top i == bottom i; Eltwise(a, b) -> b is "Top
    blob 'b' produced by multiple sources" (real Caffe aborts), -> a runs in place."""
    with pytest.raises(AllconvError, match="top blob 'b' is already produced"):
        Net(TWO + 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "b" }', TEST)
    net = Net(TWO + 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "a" }', TEST)
    assert (list(net.blobs), net.outputs, net.inputs) == (["a", "b"], ["a"], ["a", "b"])
    assert net.top_names["sum"] == ["a"]


@pytest.mark.parametrize("phase", [2, -1, None])
def test_a_phase_other_than_train_or_test_is_refused(phase):
    """allconv's own check, stricter than pycaffe (tools/caffe_reference/net_edges/phase_bool.py:
    the reference build builds a net of phase 2, which no include rule of either phase
    matches)."""
    with pytest.raises(AllconvError, match=f"^phase must be TRAIN \\(0\\) or TEST \\(1\\), "
                                           f"got {phase!r}$"):
        Net(TWO, phase)


@pytest.mark.parametrize("weights", [3, ["w.caffemodel"], b"w.caffemodel"])
def test_weights_that_are_no_file_name_are_refused_in_one_line(weights):
    with pytest.raises(AllconvError, match="^weights must be a file name, got "):
        Net(TWO, TEST, weights=weights)


def test_a_layer_on_a_blob_empty_on_another_axis_than_the_batch_is_refused():
    """Real Caffe, Input (2, 0) read by a ReLU: blob.cpp "Check failed: data_"
    (tools/caffe_reference/net_edges/empty_axis.py)."""
    with pytest.raises(AllconvError, match=r"^layer 'r' \(ReLU\): bottom 'a' is empty, shape "
                                           r"\(2, 0\); Caffe aborts"):
        Net('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 0 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "a" top: "b" }\n', TEST)


NET = TWO + (
    'layer { name: "ip" type: "InnerProduct" bottom: "a" top: "ip" inner_product_param { '
    'num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }\n'
    'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "b" top: "loss" }\n')


def test_a_forward_from_a_layer_after_its_end_changes_nothing_a_backward_needs():
    """forward(start=, end=) with start after end runs nothing (Caffe's ForwardFromTo): the
    last whole forward's backward still runs, giving what it gives without it."""
    a, b = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)), torch.zeros(2, 3)
    net = Net(NET, TRAIN, seed=1)
    net.forward(a=a, b=b)
    net.backward()
    expected = net.params["ip"][0].diff.clone()
    net.clear_param_diffs()
    net.forward(a=a, b=b)
    loss = net.last_loss
    assert list(net.forward(start="loss", end="ip")) == ["ip"]
    assert net.last_loss == loss > 0
    net.backward()
    torch.testing.assert_close(net.params["ip"][0].diff, expected)


def test_an_input_blob_named_start_or_end_is_an_input():
    """forward(start=...) names a layer, unless a blob is called so: then it is that input."""
    net = Net(TWO.replace('top: "a" top: "b"', 'top: "start" top: "end"')
              + 'layer { name: "s" type: "Eltwise" bottom: "start" bottom: "end" top: "sum" }',
              TEST)
    out = net.forward(start=torch.ones(2, 3), end=torch.full((2, 3), 2.0))
    assert torch.equal(out["sum"], torch.full((2, 3), 3.0))


def test_copy_from_a_file_without_any_weights_is_refused(tmp_path):
    """A .caffemodel with no blob at all (an empty NetParameter, a prototxt saved as binary)
    is no weights file: refused in one line rather than leaving every layer at its filler with
    a warning (real Caffe copies nothing and says nothing)."""
    from runtime.caffemodel import write_binary
    from runtime.prototxt import parse_net
    path = tmp_path / "w.caffemodel"
    write_binary(path, parse_net(TWO + 'layer { name: "other" type: "ReLU" bottom: "a" top: "r" }'))
    net = Net(NET, TRAIN, seed=1)
    with pytest.raises(AllconvError, match=f"^{path}: contains no layer weights"):
        net.copy_from(path)


def test_trained_net_wants_the_weights_of_a_net_that_learns():
    from runtime.net import trained_net
    with pytest.raises(AllconvError, match=r"^layer\(s\) ip learn: give their weights"):
        trained_net(NET, None, TEST)
    assert trained_net(TWO, None, TEST).layer_names == ["in"]     # nothing learns


def test_forward_all_refuses_an_output_without_a_batch_axis():
    """pycaffe's forward_all cannot join 0-d outputs either (iteration over a 0-d array)."""
    net = Net(NET, TEST, seed=1)
    with pytest.raises(AllconvError, match="^forward_all: blob 'loss' has no batch axis"):
        net.forward_all(a=torch.zeros(3, 3), b=torch.zeros(3, 3))


def test_forward_all_reads_its_inputs_as_forward_does():
    """Each item broadcast into the blob's item shape, as pycaffe's assignment does (real
    pycaffe: a (5, 1, 3) input equals its (5, 3, 3) broadcast); what is no array of items is
    one line (a torch TypeError before)."""
    net = Net(NET.split('layer { name: "loss"')[0], TEST, seed=1)
    one = torch.rand(3, 1, generator=torch.Generator().manual_seed(0))
    full = net.forward_all(a=one.expand(3, 3), b=one.expand(3, 3))["ip"]
    torch.testing.assert_close(net.forward_all(a=one, b=one.numpy())["ip"], full)
    with pytest.raises(AllconvError, match=r"^forward_all\(a=...\): not an array of numbers "
                                           r"\(str\)$"):
        net.forward_all(a="abc", b=one)
    with pytest.raises(AllconvError, match=r"^forward_all\(b=...\): a single number; an array "
                                           r"of items of \(3,\) expected$"):
        net.forward_all(a=one, b=3.0)


def test_forward_all_of_no_items_returns_each_blob_with_none():
    """Real pycaffe: forward_all of 0 items gives each output and asked-for blob, empty (its
    arrays have shape (0,); here each keeps its item shape). Before: {}."""
    net = Net(NET.split('layer { name: "loss"')[0], TEST, seed=1)
    out = net.forward_all(a=np.zeros((0, 3)), b=np.zeros((0, 3)), blobs=["a"])
    assert {name: tuple(v.shape) for name, v in out.items()} == {"ip": (0, 3), "b": (0, 3),
                                                                  "a": (0, 3)}


def test_an_output_diff_of_the_right_count_but_another_shape_is_refused():
    net = Net(TWO + 'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }', TEST)
    net.forward(a=torch.ones(2, 3))
    with pytest.raises(AllconvError, match=r"^backward\(r=...\): shape \(3, 2\), the blob is "
                                           r"\(2, 3\)$"):
        net.backward(r=np.ones((3, 2)))


def test_set_input_arrays_wants_a_memory_data_layer_first():
    """pycaffe's _Net_set_input_arrays raises where the first layer is no MemoryData layer."""
    net = Net(TWO, TEST)
    with pytest.raises(AllconvError, match="^set_input_arrays may only be called if the first "
                                           "layer is a MemoryData layer$"):
        net.set_input_arrays(np.zeros((2, 1, 1, 3), np.float32), np.zeros(2, np.float32))


def test_last_loss_is_0_before_any_forward():
    assert Net(NET, TRAIN, seed=1).last_loss == 0.0


def test_clear_param_diffs_also_clears_a_diff_written_before_the_backward():
    """A param diff written through pycaffe's view (net.params[...][i].diff[...] = g) is held
    for the next backward to add onto; ClearParamDiffs zeroes it."""
    net = Net(NET, TRAIN, seed=1)
    net.params["ip"][0].diff[...] = 5.0
    net.clear_param_diffs()
    assert not net.params["ip"][0].diff.any()
    net.forward(a=torch.zeros(2, 3), b=torch.zeros(2, 3))
    net.backward()
    assert not net.params["ip"][0].diff.any()       # a = 0: the weight's gradient is 0


def test_an_hdf5_file_of_a_shared_blob_loads_back(tmp_path):
    """ToHDF5 saves a shared param with its owner only; CopyTrainedLayersFromHDF5 takes the
    sharer's as absent."""
    pytest.importorskip("h5py")
    ip = ('layer {{ name: "{}" type: "InnerProduct" bottom: "a" top: "{}" param {{ name: "w" }}'
          ' inner_product_param {{ num_output: 2 bias_term: false '
          'weight_filler {{ type: "gaussian" std: 1 }} }} }}\n')
    text = TWO + ip.format("ip1", "y1") + ip.format("ip2", "y2")
    path = str(tmp_path / "w.caffemodel.h5")
    Net(text, TEST, seed=1).save_hdf5(path)
    net = Net(text, TEST, seed=2)
    net.load_hdf5(path)
    torch.testing.assert_close(net.params["ip2"][0].data,
                               Net(text, TEST, seed=1).params["ip1"][0].data)


DATA = ('layer { name: "data" type: "Data" top: "data" top: "label" '
        'data_param { source: "unused" batch_size: 2 } }\n'
        'layer { name: "mean" type: "Reduction" bottom: "data" top: "mean" '
        'reduction_param { operation: MEAN axis: 1 } }\n')


class VaryingFeed:
    """A feed whose images change size from batch to batch: Caffe's Data layer reshapes its
    top per batch, and every layer below it reshapes in that forward."""
    sizes_vary = True

    def __init__(self):
        self.sizes = iter([6, 8, 4])

    def __call__(self, batch_size):
        size = next(self.sizes)
        return torch.ones(batch_size, 3, size, size), torch.zeros(batch_size)


def test_a_feed_given_later_whose_sizes_vary_reshapes_the_layers_below_per_batch():
    def fixed(batch_size):
        return torch.ones(batch_size, 3, 6, 6), torch.zeros(batch_size)
    net = Net(DATA, TEST, feeds=fixed, input_shapes={"data": (3, 6, 6)})
    net.set_feed(VaryingFeed())
    for size in (6, 8, 4):      # MEAN divides by the count it reshaped to: 3 * size * size
        out = net.forward(blobs=["data"])
        assert out["data"].shape == (2, 3, size, size)
        assert out["mean"].tolist() == [1.0, 1.0]


def test_a_bool_phase_or_level_is_read_as_pycaffe_reads_it():
    """tools/caffe_reference/net_edges/phase_bool.py: pycaffe builds Net(P, True) as TEST and
    Net(P, False) as TRAIN (level True is 1); the runtime raised protobuf's TypeError."""
    text = TWO + ('layer { name: "r" type: "ReLU" bottom: "a" top: "r" include { phase: TEST '
                  'min_level: 1 } }')
    assert Net(text, True).phase == TEST and Net(text, False).phase == TRAIN
    assert "r" not in Net(text, True).layer_names and "r" in Net(text, True, True).layer_names


IP = TWO + ('layer { name: "ip" type: "InnerProduct" bottom: "a" top: "ip" inner_product_param { '
            'num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }\n')


def test_forward_backward_all_of_no_items_returns_each_blob_and_diff_with_none():
    """As forward_all of no items (commit ea5e8f0): every output and asked-for blob, and every
    input and asked-for diff, empty with its item shape (before: ({}, {}))."""
    net = Net(IP, TEST, seed=1)
    outs, diffs = net.forward_backward_all(a=np.zeros((0, 3)), ip=np.zeros((0, 3)),
                                           blobs=["a"], diffs=["ip"])
    assert {name: tuple(v.shape) for name, v in outs.items()} == {"ip": (0, 3), "b": (0, 3),
                                                                   "a": (0, 3)}
    assert {name: tuple(v.shape) for name, v in diffs.items()} == {"a": (0, 3), "b": (0, 3),
                                                                    "ip": (0, 3)}


def test_forward_all_returns_each_batch_of_an_input_blob_not_the_last_one():
    """An Input blob among the results (asked for in blobs=, or an output no layer reads) is
    the buffer every batch is copied into: each batch's values are kept, not a view of the
    buffer, which ends holding the last (padded) batch."""
    net = Net(IP, TEST, seed=1)
    x = torch.arange(15.).reshape(5, 3)
    out = net.forward_all(a=x, b=x + 1, blobs=["a"])
    torch.testing.assert_close(out["a"], x)
    torch.testing.assert_close(out["b"], x + 1)
    outs, diffs = net.forward_backward_all(a=x, b=x, ip=x, blobs=["a"], diffs=["ip"])
    torch.testing.assert_close(outs["a"], x)
    torch.testing.assert_close(diffs["ip"], x)


def test_a_read_only_array_is_copied_not_viewed():
    """as_numbers' docstring: a read-only array (np.broadcast_to's, say) is copied, so torch
    does not warn that it views memory it cannot write."""
    array = np.broadcast_to(np.arange(3, dtype=np.float32), (2, 3))
    tensor = as_numbers(array, "forward(a=...)")
    assert not np.shares_memory(tensor.numpy(), array)
    torch.testing.assert_close(tensor, torch.tensor([[0., 1, 2], [0, 1, 2]]))
