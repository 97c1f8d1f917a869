"""Net: Caffe's layer filtering, blob bookkeeping, in-place diffs, losses and weight files."""
import warnings

import numpy as np
import pytest
import torch

from runtime import TEST, TRAIN, AllconvError, Net
from runtime.caffemodel import read_weights, write_weights
from runtime.filter_net import included, state_meets_rule
from runtime.proto import pb

INPUT = """
layer { name: "input" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } shape { dim: 2 } } }
"""
CONV = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "constant" value: 0.1 } } }
"""
HEAD = """
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool1" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include { phase: TEST } }
"""
NET = 'name: "small"' + INPUT + CONV + HEAD


def small(phase=TRAIN, **kwargs):
    net = Net(NET, phase, seed=kwargs.pop("seed", 1), **kwargs)
    gen = torch.Generator().manual_seed(7)
    net.blobs["data"].data[...] = torch.randn(2, 3, 6, 6, generator=gen)
    net.blobs["label"].data[...] = torch.tensor([1.0, 4.0])
    return net


# ---------------------------------------------------------------------------- filtering

def rule(**fields):
    return pb.NetStateRule(**fields)


def state(phase=TRAIN, level=0, stages=()):
    return pb.NetState(phase=phase, level=level, stage=list(stages))


def test_state_meets_rule_like_caffe():
    assert state_meets_rule(state(), rule())
    assert not state_meets_rule(state(TEST), rule(phase=TRAIN))
    assert state_meets_rule(state(level=2), rule(min_level=2, max_level=3))
    assert not state_meets_rule(state(level=1), rule(min_level=2))
    assert not state_meets_rule(state(level=4), rule(max_level=3))
    assert state_meets_rule(state(stages=["a", "b"]), rule(stage=["a", "b"]))
    assert not state_meets_rule(state(stages=["a"]), rule(stage=["a", "b"]))
    assert not state_meets_rule(state(stages=["a"]), rule(not_stage=["a"]))
    assert state_meets_rule(state(stages=["a"]), rule(not_stage=["b"]))


def test_include_exclude():
    layer = pb.LayerParameter(name="x", include=[rule(phase=TEST), rule(stage=["s"])])
    assert included(layer, state(TEST)) and included(layer, state(TRAIN, stages=["s"]))
    assert not included(layer, state(TRAIN))
    layer = pb.LayerParameter(name="x", exclude=[rule(phase=TEST)])
    assert included(layer, state(TRAIN)) and not included(layer, state(TEST))
    with pytest.raises(AllconvError, match="layer 'x'.*include rules or exclude rules, not both"):
        included(pb.LayerParameter(name="x", type="ReLU", include=[rule()], exclude=[rule()]),
                 state())


def test_net_filters_by_phase_level_and_stage():
    text = NET + """
    layer { name: "deep" type: "ReLU" bottom: "ip" top: "deep"
            include { min_level: 1 stage: "viz" } }
    """
    assert "acc" not in Net(text, TRAIN).layer_names
    assert "acc" in Net(text, TEST).layer_names
    assert "deep" not in Net(text, TRAIN, stages=["viz"]).layer_names
    assert "deep" in Net(text, TRAIN, level=1, stages=["viz"]).layer_names


# ---------------------------------------------------------------------------- structure

def test_names_shapes_inputs_outputs():
    net = small(TEST)
    # Caffe's InsertSplits: label and ip each feed loss and acc, so each gets a Split layer
    assert net.layer_names == ["input", "label_input_1_split", "conv1", "relu1", "pool1", "ip",
                               "ip_ip_0_split", "loss", "acc"]
    assert net.inputs == ["data", "label"]
    assert net.outputs == ["acc", "loss"]          # leftover blobs, sorted as Caffe's std::set
    assert [(n, b.shape) for n, b in net.blobs.items()] == [
        ("data", (2, 3, 6, 6)), ("label", (2,)), ("label_input_1_split_0", (2,)),
        ("label_input_1_split_1", (2,)), ("conv1", (2, 4, 6, 6)), ("pool1", (2, 4, 3, 3)),
        ("ip", (2, 5)), ("ip_ip_0_split_0", (2, 5)), ("ip_ip_0_split_1", (2, 5)),
        ("loss", ()), ("acc", ())]
    assert net.top_names["relu1"] == ["conv1"]
    assert net.bottom_names["loss"] == ["ip_ip_0_split_0", "label_input_1_split_0"]
    assert net.bottom_names["acc"] == ["ip_ip_0_split_1", "label_input_1_split_1"]
    assert list(net.params) == ["conv1", "ip"]
    assert [p.shape for p in net.params["conv1"]] == [(4, 3, 3, 3), (4,)]
    assert [tuple(p.shape) for p in net.learnable_params] == [(4, 3, 3, 3), (4,), (5, 36), (5,)]


def test_unknown_bottom_and_duplicate_top():
    with pytest.raises(AllconvError, match="layer 'conv1' \\(Convolution\\): unknown bottom blob 'data'"):
        Net(CONV, TRAIN)
    # the earlier blobs are named: the nearest, else the first ten (fuzzer: none were)
    with pytest.raises(AllconvError, match=r"unknown bottom blob 'dat' \(no earlier layer "
                                           r"produces it; did you mean data\?\)$"):
        Net(INPUT + CONV.replace('bottom: "data"', 'bottom: "dat"'), TRAIN)
    with pytest.raises(AllconvError, match=r"unknown bottom blob 'zzz' \(no earlier layer "
                                           r"produces it; the earlier blobs: data, label\)$"):
        Net(INPUT + CONV.replace('bottom: "data"', 'bottom: "zzz"'), TRAIN)
    # a near name with a newline in it is escaped: the message stays one line (fuzzer)
    with pytest.raises(AllconvError, match=r"did you mean data\\n\?\)$"):
        Net(INPUT.replace('top: "data"', 'top: "data\\n"', 1) + CONV, TRAIN)
    dup = INPUT + CONV + CONV.replace('name: "conv1"', 'name: "conv2"')
    with pytest.raises(AllconvError, match="layer 'conv2'.*top blob 'conv1' is already produced"):
        Net(dup, TRAIN)
    twice = INPUT.replace('top: "data"', 'top: "data" top: "data"', 1)
    with pytest.raises(AllconvError, match="top blob 'data' is named twice"):
        Net(twice, TRAIN)       # Caffe: "produced by multiple sources", within a layer too


def test_layer_errors_name_the_layer():
    bad = INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" }'
    with pytest.raises(AllconvError, match="layer 'p' \\(Pooling\\): kernel_size"):
        Net(bad, TRAIN)


def test_phase_must_be_caffe_phase():
    with pytest.raises(AllconvError, match="phase"):
        Net(NET, "train")


# ---------------------------------------------------------------------------- forward/backward

def test_forward_returns_outputs_and_stores_blobs():
    net = small()
    out = net.forward()
    assert list(out) == ["loss"]
    conv = torch.nn.functional.conv2d(net.blobs["data"].data, *net.learnable_params[:2], padding=1)
    torch.testing.assert_close(net.blobs["conv1"].data, conv.clamp(min=0))  # last writer: ReLU
    assert out["loss"].item() > 0 and not out["loss"].requires_grad    # pycaffe's: values


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_a_pass_without_autograd_makes_nothing_that_needs_a_gradient(phase):
    """As any torch module under no_grad: no blob value requires a gradient. (A bottom that
    Caffe computes a diff for is made a leaf that needs one only when autograd is on: torch
    2.11's Dynamo cannot trace ``requires_grad_`` and broke the compiled evaluation on it.)"""
    net = Net("force_backward: true " + NET, phase, seed=1)
    with torch.no_grad():
        values = net.blob_values(data=torch.ones(2, 3, 6, 6), label=torch.tensor([1.0, 4.0]))
    assert not [name for name, value in values.items() if value.requires_grad]
    values = net.blob_values(data=torch.ones(2, 3, 6, 6), label=torch.tensor([1.0, 4.0]))
    assert values["data"].requires_grad and values["ip"].requires_grad


def test_in_place_blob_diff_is_gradient_of_first_producer():
    net = small()
    net.forward()
    net.backward()
    conv_out = net._versions["conv1"][0]
    relu_out = net._values["conv1"]
    assert conv_out is not relu_out
    diff = net.blobs["conv1"].diff
    # ReLU's backward zeroes the gradient where the conv output was <= 0
    assert torch.all(diff[conv_out.detach() <= 0] == 0)
    assert diff.abs().sum() > 0
    # chain rule by hand: d loss / d conv = (d loss / d relu) * (conv > 0)
    x = conv_out.detach().requires_grad_()
    loss = net.layers[5](net.layers[4](net.layers[3](net.layers[2](x)[0])[0])[0],
                         net.blobs["label"].data)[0]
    torch.testing.assert_close(diff, torch.autograd.grad(loss, x)[0])


def test_blob_used_twice_gets_summed_gradient():
    text = INPUT + CONV + """
    layer { name: "a" type: "InnerProduct" bottom: "conv1" top: "a"
            inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
    layer { name: "b" type: "InnerProduct" bottom: "conv1" top: "b"
            inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
    layer { name: "la" type: "SoftmaxWithLoss" bottom: "a" bottom: "label" top: "la" }
    layer { name: "lb" type: "SoftmaxWithLoss" bottom: "b" bottom: "label" top: "lb"
            loss_weight: 2 }
    """
    net = Net(text, TRAIN, seed=3)
    net.blobs["label"].data[...] = torch.tensor([0.0, 2.0])
    total = net.forward_backward(data=torch.randn(2, 3, 6, 6))
    out = net._values
    assert total == pytest.approx(out["la"].item() + 2 * out["lb"].item(), rel=1e-6)
    assert net.outputs == ["la", "lb"]
    conv = net._versions["conv1"][0].detach().requires_grad_()
    label = net.blobs["label"].data
    assert net.layer_names == ["input", "label_input_1_split", "conv1", "conv1_conv1_0_split",
                               "a", "b", "la", "lb"]
    la = net.layers[6](net.layers[4](conv)[0], label)[0]
    lb = net.layers[7](net.layers[5](conv)[0], label)[0]
    torch.testing.assert_close(net.blobs["conv1"].diff, torch.autograd.grad(la + 2 * lb, conv)[0])


def test_param_diffs_accumulate_until_cleared():
    net = small()
    net.forward_backward()
    once = net.params["ip"][0].diff.clone()
    net.forward_backward()
    torch.testing.assert_close(net.params["ip"][0].diff, 2 * once)
    net.clear_param_diffs()
    assert torch.count_nonzero(net.params["ip"][0].diff) == 0
    with pytest.raises(AllconvError, match="forward"):
        net.backward()


def test_loss_matches_forward_and_stores_nothing():
    net = small()
    total = net.forward_backward()
    fresh = small()
    data, label = fresh.blobs["data"].data.clone(), fresh.blobs["label"].data.clone()
    loss = fresh.loss(data=data, label=label)
    assert loss.item() == pytest.approx(total) and fresh._values == {}
    with pytest.raises(AllconvError, match="unknown input blob\\(s\\) \\['nope'\\]"):
        fresh.loss(nope=data)


def test_forward_copies_inputs_and_checks_shapes():
    net = small()
    x = torch.ones(2, 3, 6, 6)
    net.forward(data=x)
    assert torch.equal(net.blobs["data"].data, x)
    with pytest.raises(AllconvError, match="input 'data' has shape \\(1, 3, 6, 6\\), the blob is "
                                           "\\(2, 3, 6, 6\\)"):
        net.forward(data=torch.ones(1, 3, 6, 6))
    # pycaffe assigns with numpy's broadcasting, its batch checked: one channel fills three
    one = torch.arange(72.0).view(2, 1, 6, 6)
    net.forward(data=one)
    assert torch.equal(net.blobs["data"].data, one.expand(2, 3, 6, 6))
    for shape in ((2, 3, 6, 1, 1), (2, 3, 7, 6), (3, 6, 6)):
        with pytest.raises(AllconvError, match="input 'data' has shape"):
            net.forward(data=torch.ones(shape))


def test_reshape_inputs_then_net():
    net = small(TEST)
    net.blobs["data"].reshape(5, 3, 6, 6)
    net.blobs["label"].reshape(5)
    net.reshape()
    assert net.blobs["conv1"].shape == (5, 4, 6, 6) and net.blobs["ip"].shape == (5, 5)
    out = net.forward(data=torch.randn(5, 3, 6, 6), label=torch.zeros(5))
    assert out["acc"].shape == ()
    net.blobs["data"].reshape(5, 3, 8, 8)
    with pytest.raises(AllconvError, match="layer 'ip' \\(InnerProduct\\): bottom shape "
                                           "\\(5, 4, 4, 4\\) gives 64 inputs"):
        net.reshape()
    with pytest.raises(AllconvError, match="not a net input"):
        net.blobs["ip"].reshape(1, 5)


def test_reshape_keeps_the_values_of_blobs_whose_shape_stays():
    """pycaffe's net.reshape() with the same shapes leaves data and diffs as they were."""
    net = small(TRAIN, seed=1)
    net.forward_backward()
    data, diff = net.blobs["ip"].data.clone(), net.blobs["conv1"].diff.clone()
    net.reshape()
    assert torch.equal(net.blobs["ip"].data, data) and torch.equal(net.blobs["conv1"].diff, diff)
    assert data.abs().sum() > 0 and diff.abs().sum() > 0
    net.blobs["data"].reshape(3, 3, 6, 6)
    net.blobs["label"].reshape(3)
    net.reshape()
    assert net.blobs["ip"].data.shape == (3, 5) and not net.blobs["ip"].data.any()


def test_an_input_reshaped_after_backward_shows_its_diff_memory():
    """Caffe's Blob::Reshape keeps an input's diff memory up to its capacity, past it zeros
    (real Caffe: 2, 4, 6 for 1x3; 2, 4, 6, 8 for 2x2; zeros for 4x3). Reading it raised a
    RuntimeError (the last backward's gradient viewed at the new shape)."""
    net = Net('force_backward: true\nlayer { name: "in" type: "Input" top: "x" input_param { '
              'shape { dim: 2 dim: 3 } } }\nlayer { name: "p" type: "Power" bottom: "x" '
              'top: "y" loss_weight: 1 power_param { power: 2 } }\n', TRAIN)
    for shape, diff in (((1, 3), [2, 4, 6]), ((2, 2), [2, 4, 6, 8]), ((4, 3), [0] * 12)):
        net.blobs["x"].reshape(2, 3)
        net.reshape()
        net.forward(x=torch.arange(1.0, 7).reshape(2, 3))
        net.backward()
        net.blobs["x"].reshape(*shape)
        net.reshape()
        assert net.blobs["x"].diff.flatten().tolist() == diff


def test_loss_weight_scales_total():
    net = Net(NET.replace('top: "loss" }', 'top: "loss" loss_weight: 3 }'), TRAIN, seed=1)
    ref = small()
    net.blobs["data"].data[...] = ref.blobs["data"].data
    net.blobs["label"].data[...] = ref.blobs["label"].data
    assert net.forward_backward() == pytest.approx(3 * ref.forward_backward(), rel=1e-6)


def test_propagate_down_false_stops_the_gradient():
    net = Net(NET.replace('bottom: "pool1" top: "ip"',
                          'bottom: "pool1" top: "ip" propagate_down: false'), TRAIN, seed=1)
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.zeros(2))
    assert torch.count_nonzero(net.params["conv1"][0].diff) == 0
    assert torch.count_nonzero(net.params["ip"][0].diff) > 0


def test_force_backward_gives_input_diff():
    net = Net("force_backward: true\n" + NET, TRAIN, seed=1)
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.zeros(2))
    assert net.blobs["data"].diff.abs().sum() > 0
    assert torch.count_nonzero(small().blobs["data"].diff) == 0


def test_lr_mult_zero_freezes_and_tags():
    text = NET.replace('top: "conv1"\n', 'top: "conv1" param { lr_mult: 0 } '
                       'param { lr_mult: 2 decay_mult: 0 }\n', 1)
    net = Net(text, TRAIN, seed=1)
    w, b = net.learnable_params[:2]
    assert (w.lr_mult, w.decay_mult, b.lr_mult, b.decay_mult) == (0, 1, 2, 0)
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.zeros(2))
    assert not w.requires_grad and torch.count_nonzero(net.params["conv1"][0].diff) == 0
    assert net.params["conv1"][1].diff.abs().sum() > 0


SHARED = INPUT + """
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" }
        inner_product_param { num_output: 4 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" param { name: "w" %s }
        inner_product_param { num_output: %d bias_term: false weight_filler { type: "xavier" } } }
"""


def test_shared_params():
    net = Net(SHARED % ("", 4), TRAIN, seed=1)
    layers = dict(zip(net.layer_names, net.layers))
    assert layers["a"].blobs[0] is layers["b"].blobs[0] and len(net.learnable_params) == 1
    assert Net(SHARED % ("lr_mult: 3", 4), TRAIN).learnable_params[0].lr_mult == 3
    with pytest.raises(AllconvError, match="layer 'b'.*cannot share param 'w': shape \\(3, 108\\)"):
        Net(SHARED % ("", 3), TRAIN)
    with pytest.raises(AllconvError, match="shared param 'w' has mismatched lr_mult"):
        Net((SHARED % ("lr_mult: 3", 4)).replace('{ name: "w" }', '{ name: "w" lr_mult: 2 }'), TRAIN)


def _ip(name, outputs, bias=True):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "data" top: "{name}" '
            f'inner_product_param {{ num_output: {outputs} bias_term: {str(bias).lower()} '
            'weight_filler { type: "xavier" } } }')


def test_share_trained_layers_with_aliases_the_blobs_of_layers_named_alike():
    trained = small(TRAIN, seed=1)
    net = Net(NET.replace('name: "ip"', 'name: "ip_own"'), TEST, seed=2)
    own = [p.data.clone() for p in net.params["ip_own"]]
    net.share_trained_layers_with(trained)
    mine, theirs = dict(zip(net.layer_names, net.layers)), dict(zip(trained.layer_names,
                                                                   trained.layers))
    assert all(a is b for a, b in zip(mine["conv1"].blobs, theirs["conv1"].blobs))
    assert all(torch.equal(a.data, b) for a, b in zip(net.params["ip_own"], own))
    assert [p.data_ptr() for p in net.learnable_params] == [
        p.data_ptr() for p in (*theirs["conv1"].blobs, *mine["ip_own"].blobs)]
    assert net.params["conv1"][0].data.data_ptr() == trained.params["conv1"][0].data.data_ptr()
    with torch.no_grad():
        trained.params["conv1"][1].data.add_(1.0)   # training shows in the sharing net at once
    assert torch.equal(net.params["conv1"][1].data, trained.params["conv1"][1].data)


def test_of_two_layers_named_alike_the_first_is_shared_and_an_hdf5_file_fills_the_last(
        tmp_path):
    """Caffe's ShareTrainedLayersWith and CopyTrainedLayersFrom scan for the first layer of
    a name; CopyTrainedLayersFromHDF5 looks it up in layer_names_index_, where the last
    stands (real Caffe: the trained values in the test net's first "ip", not its second)."""
    from runtime import hdf5_snapshot
    pytest.importorskip("h5py")
    trained = Net(INPUT + _ip("ip", 4), TRAIN, seed=1)
    twin = _ip("ip", 4).replace('top: "ip"', 'top: "ip2"')
    net = Net(INPUT + _ip("ip", 4) + twin, TEST, seed=2)
    one, two = (next(l for l in net.layers if list(l.tops) == [top]) for top in ("ip", "ip2"))
    second = [b.detach().clone() for b in two.blobs]
    net.share_trained_layers_with(trained)
    assert [b.data_ptr() for b in one.blobs] == [b.data.data_ptr() for b in trained.params["ip"]]
    assert all(torch.equal(a, b) for a, b in zip(two.blobs, second))
    path = tmp_path / "w.caffemodel.h5"
    hdf5_snapshot.write_weights(path, [("ip", [b.data.numpy() for b in trained.params["ip"]])])
    net = Net(INPUT + _ip("ip", 4) + twin, TEST, seed=2)
    one, two = (next(l for l in net.layers if list(l.tops) == [top]) for top in ("ip", "ip2"))
    first = [b.detach().clone() for b in one.blobs]
    net.copy_from(path)
    assert all(torch.equal(a, b) for a, b in zip(two.blobs, (b.data for b in trained.params["ip"])))
    assert all(torch.equal(a, b) for a, b in zip(one.blobs, first))


def test_an_hdf5_file_of_other_layers_only_is_read_as_caffe_reads_it(tmp_path):
    """Caffe's CopyTrainedLayersFromHDF5 ignores entries named like no layer of the net, even
    all of them, and a data group with none (before: "is an HDF5 file ... not a .caffemodel",
    for a file named .h5)."""
    from runtime import hdf5_snapshot
    pytest.importorskip("h5py")
    other = Net(INPUT + _ip("other", 4), TRAIN, seed=1)
    path, empty = tmp_path / "other.caffemodel.h5", tmp_path / "empty.caffemodel.h5"
    hdf5_snapshot.write_weights(path, [("other", [b.data.numpy() for b in other.params["other"]])])
    hdf5_snapshot.write_weights(empty, [])
    net = Net(INPUT + _ip("ip", 4), TEST, seed=2)
    before = [b.data.clone() for b in net.params["ip"]]
    with pytest.warns(UserWarning, match=r"other.caffemodel.h5: no weights for layer\(s\) ip "
                                         r"\(the file has: other\); they keep"):
        net.copy_from(path)
    with pytest.warns(UserWarning, match=r"no weights for layer\(s\) ip \(the file has: none\)"):
        net.copy_from(empty)
    assert all(torch.equal(a.data, b) for a, b in zip(net.params["ip"], before))


PERMISSIVE = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
        inner_product_param { num_output: 4 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b"
        param { name: "w" share_mode: PERMISSIVE }
        inner_product_param { num_output: 6 bias_term: false weight_filler { type: "xavier" } } }
"""


def test_a_permissive_share_reads_the_owners_values_in_its_own_shape_in_a_test_net_too():
    trained = Net(PERMISSIVE, TRAIN, seed=1)
    net = Net(PERMISSIVE, TEST, seed=2)
    net.share_trained_layers_with(trained)
    assert [p.shape for p in trained.learnable_params] == [(4, 6)]
    assert [p.data_ptr() for p in net.learnable_params] == [
        p.data_ptr() for p in trained.learnable_params]
    assert net.params["b"][0].shape == (6, 4)
    with torch.no_grad():
        trained.params["a"][0].data.copy_(torch.arange(24.0).reshape(4, 6))
    x = torch.randn(2, 6)
    a = x @ torch.arange(24.0).reshape(4, 6).t()
    torch.testing.assert_close(net.forward(x=x)["b"], a @ torch.arange(24.0).reshape(6, 4).t())
    with pytest.raises(AllconvError, match=r"layer 'b' \(InnerProduct\): cannot share param "
                                           r"'w' \(share_mode PERMISSIVE\): count 20"):
        Net(PERMISSIVE.replace("num_output: 6", "num_output: 5"), TEST)


def test_layer_blobs_keep_each_layers_shape_by_any_index():
    from runtime.layers import LayerBlobs
    blobs = LayerBlobs()
    blobs.append(torch.nn.Parameter(torch.zeros(2, 3)))
    blobs.append(torch.nn.Parameter(torch.zeros(6)))
    owner = torch.nn.Parameter(torch.arange(6.0).reshape(3, 2))
    blobs.share(-1, owner)
    assert blobs[1].shape == blobs[-1].shape == (6,) and blobs.owner(-1) is owner
    assert [b.shape for b in blobs[0:2]] == [(2, 3), (6,)]
    blobs.share(0, owner)
    assert blobs[0].shape == (2, 3) and torch.equal(blobs[0], owner.view(2, 3))
    blobs.share(0, torch.nn.Parameter(torch.ones(2, 3)))    # the same shape: no view left
    assert blobs[0] is blobs.owner(0)


def test_share_trained_layers_with_checks_blob_counts_and_shapes_before_sharing():
    trained = Net(INPUT + _ip("a", 4) + _ip("b", 4), TRAIN, seed=1)
    for layers, error in [
            (_ip("a", 4) + _ip("b", 4, bias=False),
             r"cannot share layer 'b': 2 blob\(s\) in the trained net, 1 in this one"),
            (_ip("a", 4) + _ip("b", 5),
             r"cannot share layer 'b' blob 0: shape \(4, 108\) in the trained net, "
             r"\(5, 108\) in this one")]:
        net = Net(INPUT + layers, TEST, seed=2)
        before = [p.data_ptr() for p in net.learnable_params]
        with pytest.raises(AllconvError, match=error):
            net.share_trained_layers_with(trained)
        assert [p.data_ptr() for p in net.learnable_params] == before   # "a" not shared either
        assert net.params["a"][0].data.data_ptr() == before[0]


def test_phase_is_fixed_train_eval_do_not_change_dropout():
    text = INPUT + 'layer { name: "d" type: "Dropout" bottom: "data" top: "d" }'
    test_net = Net(text, TEST)
    test_net.train()
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(test_net.forward(data=x)["d"], x)
    train_net = Net(text, TRAIN, seed=0)
    train_net.eval()
    assert not torch.equal(train_net.forward(data=x)["d"], x)


def test_layer_phase_overrides_net_phase():
    text = INPUT + 'layer { name: "d" type: "Dropout" bottom: "data" top: "d" phase: TEST }'
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(Net(text, TRAIN).forward(data=x)["d"], x)


def test_seed_makes_weights_reproducible():
    a, b, c = Net(NET, TRAIN, seed=4), Net(NET, TRAIN, seed=4), Net(NET, TRAIN, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.learnable_params, b.learnable_params))
    assert not torch.equal(a.learnable_params[0], c.learnable_params[0])


def test_state_dict_roundtrip_and_module_behaviour():
    a, b = small(seed=1), small(seed=2)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(a.learnable_params, b.learnable_params))
    assert b.to(torch.device("cpu")) is b and b.device.type == "cpu"
    assert all(hasattr(p, "lr_mult") for p in b.parameters())


# ---------------------------------------------------------------------------- weight files

def test_save_and_copy_from_roundtrip(tmp_path):
    path = tmp_path / "w.caffemodel"
    a = small(seed=1)
    with torch.no_grad():
        a.params["conv1"][0].data[...] = 0.5
    a.save(path)
    saved = read_weights(path)
    assert list(saved) == ["conv1", "ip"] and saved["conv1"][0].shape == (4, 3, 3, 3)
    b = Net(NET, TRAIN, weights=str(path), seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.learnable_params, b.learnable_params))


def test_weights_of_a_format_their_name_does_not_say_are_refused_with_the_fix(tmp_path):
    """The reference build tells the formats apart by the .h5 ending: an HDF5 file named
    .caffemodel it reads as binary and silently copies nothing, and a binary one named .h5 it
    cannot open. Here each is refused, saying how to name it."""
    pytest.importorskip("h5py")
    a = small(seed=1)
    a.save_hdf5(tmp_path / "hdf5.caffemodel")
    a.save(tmp_path / "binary.caffemodel.h5")
    with pytest.raises(AllconvError, match=r"hdf5.caffemodel is an HDF5 file \(an HDF5 "
                                           r"snapshot\? rename it to end in .h5"):
        Net(NET, TRAIN, weights=str(tmp_path / "hdf5.caffemodel"))
    with pytest.raises(AllconvError, match=r"binary.caffemodel.h5: not an HDF5 file \(a binary "
                                           r"snapshot\? .*drop the .h5 ending\)$"):
        Net(NET, TRAIN, weights=str(tmp_path / "binary.caffemodel.h5"))


def test_copy_from_checks_every_blob_before_it_copies_any(tmp_path):
    """A shape mismatch in the file's last layer leaves the earlier ones as they were (it had
    copied them), and the error gives Caffe's hint."""
    a = small(seed=1)
    path = tmp_path / "w.caffemodel"
    write_weights(path, [("conv1", "Convolution", [np.ones((4, 3, 3, 3), np.float32),
                                                    np.ones(4, np.float32)]),
                         ("ip", "InnerProduct", [np.ones((5, 3), np.float32),
                                                 np.ones(5, np.float32)])])
    before = [p.detach().clone() for p in a.learnable_params]
    with pytest.raises(AllconvError, match=r"layer 'ip' blob 0: shape \(5, 3\) in the file, "
                       r"\(5, 36\) in the net; to learn this layer's parameters from scratch"):
        a.copy_from(path)
    assert all(torch.equal(p, q) for p, q in zip(before, a.learnable_params))


def test_a_forward_leaves_the_diffs_of_the_last_backward_as_caffe():
    """Caffe's Forward writes no diff: a middle blob's diff after the next forward is still
    the last backward's, and backward(start=) reads it from there. Before: zeros."""
    net = small(TEST)
    net.forward()
    net.backward()
    pool, ip = (net.blobs[n].diff.clone() for n in ("pool1", "ip"))
    assert pool.abs().sum() > 0
    net.forward()
    assert torch.equal(net.blobs["ip"].diff, ip) and torch.equal(net.blobs["pool1"].diff, pool)
    assert torch.allclose(net.backward(start="ip", end="ip", diffs=["pool1"])["pool1"], pool)


def test_save_writes_each_layers_definition_as_caffes_to_proto(tmp_path):
    """Caffe's Net::ToProto writes every layer's LayerParameter as set up beside its blobs:
    the net's phase in each, loss_weight 1 added to a loss layer that gave none, the Split
    layers and their renamed bottoms, include rules and param specs kept (the reference
    build's file for this net, blobs aside). Before: name, type and blobs alone."""
    text = NET.replace('name: "ip" type: "InnerProduct"',
                       'name: "ip" type: "InnerProduct" param { lr_mult: 2 }')
    Net(text, TEST, seed=1).save(tmp_path / "w.caffemodel")
    saved = pb.NetParameter()
    saved.ParseFromString((tmp_path / "w.caffemodel").read_bytes())
    layers = {layer.name: layer for layer in saved.layer}
    assert list(layers) == ["input", "label_input_1_split", "conv1", "relu1", "pool1", "ip",
                            "ip_ip_0_split", "loss", "acc"]
    assert {layer.phase for layer in saved.layer} == {TEST}
    assert list(layers["loss"].loss_weight) == [1.0] and not len(layers["acc"].loss_weight)
    assert list(layers["loss"].bottom) == ["ip_ip_0_split_0", "label_input_1_split_0"]
    assert layers["acc"].include[0].phase == TEST
    assert layers["ip"].param[0].lr_mult == 2 and layers["ip"].inner_product_param.num_output == 5
    assert [len(layer.blobs) for layer in saved.layer] == [0, 0, 2, 0, 0, 2, 0, 0, 0]
    assert Net(text, TEST, weights=str(tmp_path / "w.caffemodel")).params["ip"][0].shape == (5, 36)


def test_a_prototxt_blob_of_a_legacy_shape_fills_a_2d_weight():
    """Caffe's Layer takes a prototxt blob's shape and InnerProduct checks none: a 1x1x3x5
    `shape` fills a (3, 5) weight there (a .caffemodel's must be legacy fields to)."""
    values = " ".join(f"data: {v}" for v in range(15))
    net = Net(f"""
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 1 dim: 5 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param {{ num_output: 3 bias_term: false }}
        blobs {{ shape {{ dim: 1 dim: 1 dim: 3 dim: 5 }} {values} }} }}""", TEST)
    assert torch.equal(net.params["ip"][0].data, torch.arange(15.0).reshape(3, 5))


def _to_legacy_fields(path) -> None:
    """Rewrite every 4-d blob of a .caffemodel with num/channels/height/width, as old Caffe
    stored them."""
    from runtime.caffemodel import read_binary, write_binary
    param = read_binary(path, pb.NetParameter)
    for layer in param.layer:
        for blob in layer.blobs:
            if len(blob.shape.dim) == 4:
                blob.num, blob.channels, blob.height, blob.width = blob.shape.dim
                blob.ClearField("shape")
    write_binary(path, param)


def test_pycaffes_older_argument_order_prototxt_weights_phase(tmp_path):
    """caffe.Net(prototxt, weights, phase), as old pycaffe scripts write it (before: "phase
    must be TRAIN (0) or TEST (1), got 'w.caffemodel'")."""
    path = tmp_path / "w.caffemodel"
    small(seed=1).save(path)
    for weights in (str(path), path):
        net = Net(NET, weights, TEST)
        assert net.phase == TEST
        torch.testing.assert_close(net.params["ip"][0].data, small(seed=1).params["ip"][0].data)
    with pytest.raises(AllconvError, match="phase must be TRAIN"):
        Net(NET, str(path), 7)


def test_pycaffes_positional_and_keyword_forms(tmp_path, capsys):
    """pycaffe's Net(network_file, phase, level=0, stages=None, weights=None): Net(P, TEST, 1)
    is level 1 (before: the 1 was taken for weights, a file descriptor that was closed, and
    stdout with it), stages=None is none, and network_file= names the net; pycaffe's
    _layer_names, _blob_names, _inputs and _outputs; load_hdf5 reads only HDF5."""
    text = NET.replace("include { phase: TEST } }", 'include { phase: TEST min_level: 1 } '
                       'include { phase: TEST stage: "s" } }')
    assert "acc" not in Net(text, TEST).layer_names
    assert "acc" in Net(text, TEST, 1).layer_names
    assert "acc" in Net(text, TEST, 0, ["s"]).layer_names
    assert "acc" not in Net(network_file=text, phase=TEST, stages=None).layer_names
    print("stdout still open")
    assert capsys.readouterr().out == "stdout still open\n"
    with pytest.raises(AllconvError, match="^level must be an int, got 'w.caffemodel'"):
        Net(text, TEST, "w.caffemodel")
    net = small(seed=1)
    assert net._layer_names == net.layer_names and net._blob_names == list(net.blobs)
    # real pycaffe's indices of this net's inputs and outputs (outputs sorted by name)
    forked = Net('layer { name: "in" type: "Input" top: "x" top: "lab" input_param { '
                 'shape { dim: 2 dim: 3 } shape { dim: 2 } } } '
                 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                 'inner_product_param { num_output: 4 weight_filler { type: "xavier" } } } '
                 'layer { name: "r" type: "ReLU" bottom: "y" top: "z" } '
                 'layer { name: "ip2" type: "InnerProduct" bottom: "x" top: "b" '
                 'inner_product_param { num_output: 1 weight_filler { type: "xavier" } } }',
                 TEST)
    assert list(forked.blobs) == ["x", "lab", "x_in_0_split_0", "x_in_0_split_1", "y", "z", "b"]
    assert (forked._inputs, forked._outputs) == ([0, 1], [6, 1, 5])
    net.save(tmp_path / "binary.caffemodel")
    with pytest.raises(AllconvError, match="binary.caffemodel: not an HDF5 file"):
        small(seed=2).load_hdf5(tmp_path / "binary.caffemodel")
    pytest.importorskip("h5py")
    for name in ("w.caffemodel.h5", "w.hdf5"):       # pycaffe's reads HDF5 whatever the name
        net.save_hdf5(tmp_path / name)
        loaded = small(seed=2)
        loaded.load_hdf5(tmp_path / name)
        assert all(torch.equal(p, q) for p, q in zip(net.learnable_params,
                                                     loaded.learnable_params))


def test_copy_from_keeps_absent_layers_and_accepts_legacy_shapes(tmp_path, caplog):
    """As Caffe: file layers the net lacks are logged and skipped, net layers the file lacks
    keep their fillers; a UserWarning names those (before: silence), and ``require_all``
    (export-onnx, visualize) refuses the file before anything is copied."""
    path = tmp_path / "ip_only.caffemodel"
    net = small(seed=1)
    conv_before = net.params["conv1"][0].data.clone()
    weight = np.full((1, 1, 5, 36), 0.25, np.float32)          # legacy 4-d InnerProduct blob
    write_weights(path, [("ip", "InnerProduct", [weight, np.zeros(5, np.float32)]),
                         ("not_in_net", "ReLU", [np.zeros(1, np.float32)])])
    with pytest.raises(AllconvError, match=r"layer 'ip' blob 0: shape \(1, 1, 5, 36\) in the "
                                           r"file, \(5, 36\) in the net"):
        net.copy_from(path)            # a 4-d `shape` field: Caffe's ShapeEquals refuses it
    _to_legacy_fields(path)
    with pytest.raises(AllconvError, match=r"ip_only.caffemodel: no weights for layer\(s\) "
                                           r"conv1 \(the file has: ip, not_in_net\)$"):
        net.copy_from(path, require_all=True)
    assert torch.equal(net.params["conv1"][0].data, conv_before)
    ip_before = net.params["ip"][0].data.clone()
    with caplog.at_level("INFO"), pytest.warns(UserWarning, match=r"no weights for layer\(s\) "
                                                r"conv1 .*; they keep their fillers' values$"):
        net.copy_from(path)
    assert "Ignoring source layer not_in_net" in [r.getMessage() for r in caplog.records]
    assert torch.all(net.params["ip"][0].data == 0.25) and not torch.equal(
        net.params["ip"][0].data, ip_before)
    assert torch.equal(net.params["conv1"][0].data, conv_before)
    with pytest.warns(UserWarning, match="no weights for layer"):
        Net(NET, TRAIN, weights=path)


def test_copy_from_names_a_missing_layer_once_however_many_share_its_name(tmp_path):
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "a"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "fc" type: "InnerProduct" bottom: "a" top: "b"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
"""
    path = tmp_path / "none.caffemodel"
    write_weights(path, [("ip", "InnerProduct", [np.zeros((2, 2), np.float32)])])
    with pytest.raises(AllconvError, match=r"no weights for layer\(s\) fc \(the file has: ip\)$"):
        Net(text, TEST).copy_from(path, require_all=True)


def test_a_caffemodel_layer_name_that_is_not_utf8_is_named_escaped(tmp_path):
    """Caffe keeps a name's bytes (it matches no layer read from text); the missing layer's
    message names it escaped (a TypeError on bytes, found by the fuzzer)."""
    path = tmp_path / "bytes.caffemodel"
    write_weights(path, [("iq", "InnerProduct", [np.zeros((2, 2), np.float32)])])
    path.write_bytes(path.read_bytes().replace(b"iq", b"i\x80"))
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "a"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }""", TEST)
    with pytest.raises(AllconvError, match=r"no weights for layer\(s\) fc \(the file has: "
                                           r"i\\x80\)$"):
        net.copy_from(path, require_all=True)


def test_copy_from_shape_mismatch_names_path_layer_and_shapes(tmp_path):
    path = tmp_path / "bad.caffemodel"
    write_weights(path, [("conv1", "Convolution", [np.zeros((4, 3, 5, 5), np.float32),
                                                   np.zeros(4, np.float32)])])
    with pytest.raises(AllconvError, match=f"{path}: layer 'conv1' blob 0: shape \\(4, 3, 5, 5\\) "
                                           "in the file, \\(4, 3, 3, 3\\) in the net"):
        small().copy_from(path)
    write_weights(path, [("conv1", "Convolution", [np.zeros((4, 3, 3, 3), np.float32)])])
    with pytest.raises(AllconvError, match="layer 'conv1' has 1 blob\\(s\\) in the file but 2"):
        small().copy_from(path)



def test_copy_from_matches_caffes_copy_trained_layers_by_first_name(tmp_path):
    """Found by tools/fuzz.py against pycaffe: Caffe copies each layer of the file into the
    first net layer of that name (a later namesake, here a Softmax, is not looked at), and a
    blob-less layer of the file named like a learnable one is its blob count CHECK."""
    path = tmp_path / "w.caffemodel"
    small(seed=1).save(path)
    twice = NET + 'layer { name: "conv1" type: "Softmax" bottom: "ip" top: "prob" }'
    net = Net(twice, TEST, weights=str(path), seed=2)
    assert np.array_equal(net.params["conv1"][0].data.numpy(), read_weights(path)["conv1"][0])
    renamed = NET.replace('name: "relu1" type: "ReLU"', 'name: "relu1" type: "PReLU"')
    with pytest.raises(AllconvError, match=f"{path}: layer 'relu1' has 0 blob\\(s\\) in the "
                                           "file but 1 in the net"):
        Net(renamed, TEST, weights=str(path))


# ---------------------------------------------------------------------------- Data layers

DATA = """
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "/nonexistent/source" batch_size: 2 } }
""" + CONV + HEAD


class Feed:
    sample_shape = (3, 6, 6)

    def __init__(self):
        self.calls = 0

    def __call__(self, batch_size):
        self.calls += 1
        return torch.full((batch_size, 3, 6, 6), float(self.calls)), torch.zeros(batch_size)


def test_data_layer_reads_from_its_feed():
    feed = Feed()
    net = Net(DATA, TRAIN, feeds={"data": feed}, seed=1)
    assert net.blobs["data"].shape == (2, 3, 6, 6) and net.inputs == []
    net.forward()
    net.forward()
    assert feed.calls == 2 and torch.all(net.blobs["data"].data == 2)
    net.loss(data=torch.zeros(2, 3, 6, 6), label=torch.zeros(2))
    assert feed.calls == 2                                  # given tops bypass the feed
    with pytest.raises(AllconvError, match="give all of its tops"):
        net.loss(data=torch.zeros(2, 3, 6, 6))


def test_a_source_layer_s_tops_are_given_all_or_none_an_input_s_one_by_one():
    """forward(data=x) on DummyData's two tops would leave its label unmade (or, given alone,
    silently unused): refused in one line; an Input layer's tops are buffers, set one by one."""
    dummy = Net("""layer { name: "d" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }""", TRAIN)
    for given in ("data", "label"):
        with pytest.raises(AllconvError, match=r"'d' \(DummyData\): give all of its tops "
                                               r"\['data', 'label'\] or none"):
            dummy.forward(**{given: torch.ones(dummy.blobs[given].shape)})
    got = dummy.forward(data=torch.ones(2, 3), label=torch.full((2,), 7.0), blobs=["label"])
    assert got["label"].tolist() == [7, 7]
    inputs = Net("""layer { name: "i" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }""", TEST)
    inputs.forward(label=torch.full((2,), 5.0))
    assert inputs.blobs["label"].data.tolist() == [5, 5]


def test_data_layer_shape_from_input_shapes_and_set_feed():
    def plain(batch_size):
        return torch.zeros(batch_size, 3, 6, 6), torch.zeros(batch_size)
    net = Net(DATA, TRAIN, feeds=plain, input_shapes={"data": (3, 6, 6)})
    assert net.blobs["data"].shape == (2, 3, 6, 6)
    feed = Feed()
    net.set_feed(feed)
    net.forward()
    assert feed.calls == 1
    with pytest.raises(AllconvError, match="no Data layer 'x'"):
        net.set_feed(feed, layer="x")
    with pytest.raises(AllconvError, match="layer 'data' \\(Data\\): no sample shape"):
        Net(DATA, TRAIN, feeds=plain)


def test_data_layer_without_feed_opens_source_or_names_it():
    with pytest.raises(AllconvError, match="^layer 'data' \\(Data\\): data source "
                                           "/nonexistent/source: no such file$"):
        Net(DATA, TRAIN)


def test_data_layer_checks_fed_shapes():
    net = Net(DATA, TRAIN, feeds=lambda b: (torch.zeros(b, 3, 5, 5), torch.zeros(b)),
              input_shapes={"data": (3, 6, 6)})
    with pytest.raises(AllconvError, match="layer 'data' \\(Data\\): a fed batch has shape"):
        net.forward()


def test_force_backward_overrides_propagate_down_false_as_caffe():
    """net.cpp applies force_backward after propagate_down: the bottom gets its diff back."""
    text = "force_backward: true\n" + NET.replace('bottom: "pool1" top: "ip"',
                                                  'bottom: "pool1" top: "ip" propagate_down: false')
    net, forced = Net(text, TRAIN, seed=1), Net("force_backward: true\n" + NET, TRAIN, seed=1)
    for n in (net, forced):
        n.forward_backward(data=torch.ones(2, 3, 6, 6), label=torch.zeros(2))
    assert torch.count_nonzero(net.params["conv1"][0].diff) > 0
    torch.testing.assert_close(net.params["conv1"][0].diff, forced.params["conv1"][0].diff)


REFUSED = """name: "refused" {force}
layer {{ name: "in" type: "Input" top: "x" top: "label" top: "t"
  input_param {{ shape {{ dim: 2 dim: 3 }} shape {{ dim: 2 }} shape {{ dim: 2 dim: 3 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "e" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }}
{layer}
"""


@pytest.mark.parametrize("layer,force,message", [
    ('layer { name: "acc" type: "Accuracy" bottom: "y" bottom: "label" top: "a" }', True,
     "layer 'acc' \\(Accuracy\\): Caffe cannot back-propagate to bottom 0 'y_ip_0_split_1' "
     "\\(it has no backward\\), and this net asks for its diff"),
    ('layer { name: "am" type: "ArgMax" bottom: "y" top: "m" }', True,
     "layer 'am' \\(ArgMax\\): Caffe's ArgMax layer has no backward$"),
    # Backward runs from the top: the last layer that aborts is the one Caffe names
    ('layer { name: "acc" type: "Accuracy" bottom: "y" bottom: "label" top: "a" }\n'
     'layer { name: "am" type: "ArgMax" bottom: "y" top: "m" }', True,
     "layer 'am' \\(ArgMax\\): Caffe's ArgMax layer has no backward$"),
    # Filter's selector is its last bottom, named by its index
    ('layer { name: "f" type: "Filter" bottom: "y" bottom: "label" top: "fy" }', True,
     "layer 'f' \\(Filter\\): Caffe cannot back-propagate to bottom 1 'label' "),
    # under force_backward even a layer that reaches no loss runs its (missing) Backward
    ('layer { name: "th" type: "Threshold" bottom: "y" top: "m" }', True,
     "layer 'th' \\(Threshold\\): Caffe's Threshold layer has no backward$"),
    # Euclidean's Backward divides by bottom 1's legacy num(): at most 4 axes where it
    # gets a diff (here from a learnable layer below it)
    ('layer { name: "ip2" type: "InnerProduct" bottom: "x" top: "z" '
     'inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }\n'
     'layer { name: "r5" type: "Reshape" bottom: "z" top: "z5" '
     'reshape_param { shape { dim: 2 dim: 3 dim: 1 dim: 1 dim: 1 } } }\n'
     'layer { name: "e2" type: "EuclideanLoss" bottom: "y" bottom: "z5" top: "l2" }', False,
     "layer 'e2' \\(EuclideanLoss\\): Caffe cannot back-propagate to bottom 1 'z5' \\(its 5 "
     "axes, more than the 4 of Caffe's legacy num\\(\\)\\)"),
    # the label made by a learnable layer: no force_backward needed
    ('layer { name: "ip2" type: "InnerProduct" bottom: "x" top: "lab" '
     'inner_product_param { num_output: 1 weight_filler { type: "constant" } } }\n'
     'layer { name: "s" type: "SoftmaxWithLoss" bottom: "y" bottom: "lab" top: "sl" }', False,
     "layer 's' \\(SoftmaxWithLoss\\): Caffe cannot back-propagate to bottom 1 'lab' "
     "\\(label inputs\\)"),
    ('layer { name: "r" type: "BatchReindex" bottom: "y" bottom: "label" top: "z" }\n'
     'layer { name: "e2" type: "EuclideanLoss" bottom: "z" bottom: "t" top: "l2" }', True,
     "layer 'r' \\(BatchReindex\\): Caffe cannot back-propagate to bottom 1 'label' "
     "\\(the index\\)"),
])
def test_backward_refuses_what_caffes_backward_aborts_on_after_a_forward(layer, force, message):
    """Real Caffe builds these nets and runs their forward, then aborts in Backward."""
    net = Net(REFUSED.format(force="force_backward: true" if force else "", layer=layer),
              TRAIN, seed=0)
    inputs = dict(x=torch.randn(2, 3), label=torch.tensor([0.0, 1.0]), t=torch.randn(2, 3))
    net.forward(**inputs)
    with pytest.raises(AllconvError, match=message):
        net.backward()


def test_force_backward_leaves_labels_alone_as_caffe_allows():
    """AllowForceBackward keeps force_backward off a loss layer's label (not Euclidean's)."""
    layer = ('layer { name: "s" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" '
             'top: "sl" }\nlayer { name: "h" type: "HingeLoss" bottom: "y" bottom: "label" '
             'top: "hl" }')
    net = Net(REFUSED.format(force="force_backward: true", layer=layer), TRAIN, seed=0)
    net.forward_backward(x=torch.randn(2, 3), label=torch.tensor([0.0, 1.0]),
                         t=torch.randn(2, 3))
    assert net.blobs["x"].diff.abs().sum() > 0 and net.blobs["t"].diff.abs().sum() > 0
    assert torch.count_nonzero(net.blobs["label"].diff) == 0


def test_propagate_down_true_on_an_input_gives_it_a_diff_as_caffe():
    """AppendBottom takes an explicit propagate_down as the bottom's need_backward."""
    net = Net(NET.replace('bottom: "data" top: "conv1"',
                          'bottom: "data" top: "conv1" propagate_down: true'), TRAIN, seed=1)
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.zeros(2))
    assert net.blobs["data"].diff.abs().sum() > 0


def test_a_weighted_top_without_a_backward_keeps_its_loss_weight_as_diff():
    """Caffe writes each top's loss_weight into its diff at set-up; with no layer to run
    backward, it stays there (real Caffe: diff 0.5 everywhere)."""
    net = Net('layer { name: "in" type: "Input" top: "a" top: "b" '
              'input_param { shape { dim: 2 dim: 3 } } }\n'
              'layer { name: "prod" type: "Eltwise" bottom: "a" bottom: "b" top: "s" '
              'eltwise_param { operation: PROD } loss_weight: 0.5 }', TRAIN)
    net.forward_backward(a=torch.randn(2, 3), b=torch.randn(2, 3))
    assert torch.equal(net.blobs["s"].diff, torch.full((2, 3), 0.5))
    assert not net.blobs["a"].diff.any()


@pytest.mark.parametrize("weights, reader", [
    ("", "loss_weight: 0.25 power_param { scale: 2 }"),       # 1·L + 0.25·2L; then 0.5 in diff
    ("loss_weight: 0.5", "power_param { scale: 2 }")])      # Split: 1·L + 0.5·L; then 0.5
def test_a_loss_read_by_a_layer_counts_as_its_diff_after_the_first_backward(weights, reader):
    """Caffe's loss is dot(top, top diff); a later backward overwrites the loss weight Caffe
    put in the diff at set-up (here with 0.5). Real Caffe's `caffe train` printed 1.5·L at
    iteration 0, then 1.0·L (3.66691, then 1.77529), with the gradient 0.5·dL each time."""
    net = Net(f"""
layer {{ name: "x" type: "Input" top: "x" top: "label"
        input_param {{ shape {{ dim: 4 dim: 5 }} shape {{ dim: 4 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        {weights} }}
layer {{ name: "twice" type: "Power" bottom: "loss" top: "twice" {reader} }}""", TRAIN, seed=0)
    inputs = dict(x=torch.randn(4, 5), label=torch.tensor([0.0, 1.0, 2.0, 1.0]))
    first = net.forward_backward(**inputs)
    assert first == pytest.approx(1.5 * float(net.blobs["loss"].data), rel=1e-6)
    second = net.forward_backward(**inputs)
    assert second == pytest.approx(1.0 * float(net.blobs["loss"].data), rel=1e-6)
    with torch.no_grad():                    # the forward-only loss of the solver's last line
        assert float(net.loss(**inputs)) == pytest.approx(second, rel=1e-6)
    # the training loss that stores nothing (the harness's, compiled) keeps the weight in its
    # value and passes the loss layer no gradient of its own: the backward's 0.5·dL
    want = net.learnable_params[0].grad.clone() / 2           # two backwards summed so far
    net.clear_param_diffs()
    loss = net.loss(**inputs)
    assert float(loss.detach()) == pytest.approx(first, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(net.learnable_params[0].grad, want)


def test_a_negative_lr_mult_gets_its_diff_and_reverses_the_step():
    """net.cpp: param_need_backward is lr_mult != 0 (a negative one reverses the gradient)."""
    from runtime.optim import CaffeSGD
    text = NET.replace('top: "conv1"\n', 'top: "conv1" param { lr_mult: -1 }\n', 1)
    net = Net(text, TRAIN, seed=1)
    w = net.learnable_params[0]
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.zeros(2))
    before, diff = w.detach().clone(), net.params["conv1"][0].diff.clone()
    assert torch.count_nonzero(diff) > 0
    CaffeSGD(net.learnable_params, lr=0.1).step()
    torch.testing.assert_close(w.detach(), before + 0.1 * diff)


def test_a_parameter_layers_diff_is_the_last_backwards_as_caffe():
    """Parameter shares its top's diff, which each backward overwrites: with iter_size 2,
    Caffe's step is half the summed one's (checked against real Caffe)."""
    net = Net("""
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } } }
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "x" top: "loss" }""", TRAIN)
    x = torch.arange(6.0).reshape(2, 3)
    net.forward_backward(x=x)
    net.forward_backward(x=2 * x)
    torch.testing.assert_close(net.params["p"][0].diff, -2 * x / 2)   # (p − x)/N, N = 2


def test_a_scale_factor_as_large_as_its_bottom_keeps_the_last_backwards_diff_as_caffe():
    """Caffe's Scale writes an eltwise factor's diff (top diff × bottom) instead of adding to
    it; a per-channel factor's adds up (both checked against real Caffe with iter_size 3)."""
    net = Net("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "sc" type: "Scale" bottom: "x" top: "y" scale_param { axis: 0 num_axes: -1 } }
layer { name: "sc2" type: "Scale" bottom: "x" top: "z" }
layer { name: "s" type: "Reduction" bottom: "y" top: "l" loss_weight: 1 }
layer { name: "s2" type: "Reduction" bottom: "z" top: "l2" loss_weight: 1 }""", TRAIN)
    x = torch.arange(1.0, 7.0).reshape(2, 3)
    net.forward_backward(x=x)
    net.forward_backward(x=2 * x)
    torch.testing.assert_close(net.params["sc"][0].diff, 2 * x)             # the last only
    torch.testing.assert_close(net.params["sc2"][0].diff, 3 * x.sum(0))     # both passes


def test_a_scale_factor_with_no_axis_before_it_keeps_the_last_backwards_diff_as_caffe():
    """Where no axis lies before the factor's (batch 1, or axis 0), Caffe's gemv writes a
    factor of several values (beta 0) and adds a one-value factor's dot; real Caffe, two
    backwards (x, then 2x): sc [20, 52, 84], one [234], ax0 [12, 30]."""
    net = Net("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 dim: 2 dim: 2 } } }
layer { name: "x2" type: "Input" top: "x2" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "sc" type: "Scale" bottom: "x" top: "y" }
layer { name: "one" type: "Scale" bottom: "x" top: "y1" scale_param { num_axes: 0 } }
layer { name: "ax0" type: "Scale" bottom: "x2" top: "z" scale_param { axis: 0 } }
layer { name: "s" type: "Reduction" bottom: "y" top: "l" loss_weight: 1 }
layer { name: "s1" type: "Reduction" bottom: "y1" top: "l1" loss_weight: 1 }
layer { name: "s2" type: "Reduction" bottom: "z" top: "l2" loss_weight: 1 }""", TRAIN)
    x, x2 = torch.arange(1.0, 13.0).reshape(1, 3, 2, 2), torch.arange(1.0, 7.0).reshape(2, 3)
    for k in (1, 2):
        net.forward_backward(x=k * x, x2=k * x2)
    for name, caffe in (("sc", [20, 52, 84]), ("one", [234]), ("ax0", [12, 30])):
        torch.testing.assert_close(net.params[name][0].diff.flatten(),
                                   torch.tensor(caffe, dtype=torch.float32))


# insert_splits.py:73 `[weight] + [0.0] * (count - 1)` -> `[1.0] * ...` and :74 dropping
# `copy.ClearField("loss_weight")` survived. Caffe's InsertSplits moves a weighted top's
# loss_weight to the Split's top 0 (the other split tops weigh 0) and clears it on the
# producer, so the term counts once. With the mutants the loss counts the top twice or adds
# the other consumers' copies: a wrong total loss (and gradient).
def test_a_weighted_top_with_another_reader_counts_once_in_the_loss():
    net = Net(INPUT + CONV + """
    layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" loss_weight: 2
            inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
    layer { name: "ip2" type: "InnerProduct" bottom: "ip" top: "ip2"
            inner_product_param { num_output: 1 weight_filler { type: "xavier" } } }
    """, TRAIN, seed=3)
    split = net.layer_names.index("ip_ip_0_split")
    assert net.layers[split].loss_weights == [2.0, 0.0, 0.0]
    assert net.layers[net.layer_names.index("ip")].loss_weights == [0.0]
    total = net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.tensor([0.0, 3.0]))
    values = net._values
    assert total == pytest.approx(2 * values["ip"].sum().item() + values["loss"].item(),
                                  rel=1e-5, abs=1e-5)


# A loss top read by a layer B whose only top goes to a loss layer C with propagate_down: false.
# net.cpp Init, walking back: C skips `u`; B's tops are all skipped, so B runs no backward and
# skips its bottom `loss`; then the SoftmaxWithLoss's only top is skipped too, so it runs no
# backward, and so on down to conv1 (Caffe's diffs there stay 0).
SKIP_TAIL = """
layer { name: "b" type: "Power" bottom: "loss" top: "u" power_param { scale: 2 } }
layer { name: "c" type: "Power" bottom: "u" top: "v" loss_weight: 1 propagate_down: false }
"""


# backward_plan.py:45 dropping `skipped.add(b)` survived: the "every top skipped" rule
# of net.cpp is never exercised by a test (no fixture has it).
def test_backward_plan_skips_a_layer_whose_tops_no_reader_propagates_into():
    from runtime.backward_plan import backward_plan
    net = Net(NET + SKIP_TAIL, TRAIN, seed=1)
    plan = backward_plan(net.layers, [bool(len(l.blobs)) for l in net.layers], False)
    need = dict(zip(net.layer_names, plan.layer_need))
    assert need == {"input": False, "conv1": False, "relu1": False, "pool1": False,
                    "ip": False, "loss": False, "b": False, "c": True}
    assert all(not any(b) for b in plan.bottom_need)


# Side finding (not a mutant): net.cpp's walk back also skips a loss layer whose top is read
# by a later layer that propagates nothing into it, e.g. a Power (or Silence) reading `loss`
# that contributes no loss: that reader skips its bottom `loss`, so SoftmaxWithLoss (every top
# skipped) and everything below it run no backward, and Caffe's conv1/ip diffs stay 0. The
# plan says so, and Net follows it (real Caffe: fixture loss_top_read_by_a_layer_without_loss).
@pytest.mark.parametrize("reader", ['layer { name: "b" type: "Power" bottom: "loss" top: "u" }',
                                    'layer { name: "b" type: "Silence" bottom: "loss" }'],
                         ids=["power", "silence"])
def test_a_loss_layer_whose_top_is_skipped_runs_no_backward_as_caffe(reader):
    net = Net(NET + reader, TRAIN, seed=1)
    net.forward_backward(data=torch.randn(2, 3, 6, 6), label=torch.tensor([1.0, 4.0]))
    assert not net.params["conv1"][0].diff.any() and not net.params["ip"][0].diff.any()


# net.py:161 dropping `self.generator.seed()` survived: with seed=None (a solver's
# random_seed: -1) every Net would start from torch's fixed default generator seed, so
# "random" fillers and dropout masks would repeat run after run (Caffe seeds from entropy).
def test_nets_without_a_seed_draw_different_weights():
    a, b = Net(NET, TRAIN), Net(NET, TRAIN)
    assert not torch.equal(a.params["conv1"][0].data, b.params["conv1"][0].data)
    assert torch.equal(Net(NET, TRAIN, seed=5).params["conv1"][0].data,
                       Net(NET, TRAIN, seed=5).params["conv1"][0].data)


def test_blobs_written_in_the_prototxt_are_the_layers_weights():
    """Caffe's Layer starts from the LayerParameter's blobs (a caffemodel's text form)."""
    net_text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
                'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                'inner_product_param { num_output: 1 } '
                'blobs { shape { dim: 1 dim: 2 } data: 3 data: 4 } blobs { shape { dim: 1 } data: 5 } }\n')
    net = Net(net_text, TEST)
    assert net.forward(x=torch.tensor([[1.0, 2.0]]))["y"].item() == 3 + 8 + 5
    with pytest.raises(AllconvError, match=r"layer 'ip' \(InnerProduct\): blob 0: shape "
                                           r"\(2, 1\) in the prototxt, \(1, 2\) in the net"):
        Net(net_text.replace("dim: 1 dim: 2 } data", "dim: 2 dim: 1 } data"), TEST)
    # Caffe's BaseConvolutionLayer CHECKs "Incorrect number of weight blobs"
    conv = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
            'dim: 2 dim: 2 } } }\nlayer { name: "c" type: "Convolution" bottom: "x" top: "y" '
            'convolution_param { num_output: 1 kernel_size: 1 } '
            'blobs { shape { dim: 1 dim: 1 dim: 1 dim: 1 } data: 2 } }\n')
    with warnings.catch_warnings():     # the given blobs are its weights: no filler warning
        warnings.simplefilter("error")
        Net(conv.replace("kernel_size: 1", "kernel_size: 1 bias_term: false"), TEST)
    with pytest.raises(AllconvError, match=r"layer 'c' \(Convolution\): the prototxt gives 1 "
                                           r"blob\(s\), the layer has 2"):
        Net(conv, TEST)
    assert Net(conv.replace("kernel_size: 1", "kernel_size: 1 bias_term: false"),
               TEST).forward(x=torch.ones(1, 1, 2, 2))["y"].tolist() == [[[[2.0, 2.0], [2.0, 2.0]]]]


def test_a_net_without_layers_builds_but_does_not_run():
    """Caffe builds it; its ForwardFromTo then CHECKs for a layer."""
    net = Net("# nothing\n", TEST)
    with pytest.raises(AllconvError, match="^the net has no layers to run$"):
        net.forward()


def test_a_scale_factor_diff_caffe_writes_holds_the_last_backward_only():
    """Outer dim 1 and more than one value: Caffe's Scale writes its factor's diff, so a
    second forward/backward without clearing gives the same diff, not twice it."""
    net = Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
              'layer { name: "s" type: "Scale" bottom: "x" top: "y" '
              'scale_param { axis: 0 num_axes: -1 } }'
              'layer { name: "l" type: "Reduction" bottom: "y" top: "l" loss_weight: 1 }',
              TRAIN, seed=0)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    net.forward(x=x)
    net.backward()
    once = net.params["s"][0].diff.clone()
    net.forward(x=x)
    net.backward()
    torch.testing.assert_close(net.params["s"][0].diff, once)
    torch.testing.assert_close(once, x)


DEPLOY = 'name: "deploy" force_backward: true' + INPUT.replace(
    'top: "label"', "").replace(" shape { dim: 2 } ", "") + CONV + """
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def _deploy():
    net = Net(DEPLOY, TEST, seed=3)
    net.blobs["data"].data[...] = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    return net


def test_a_diff_written_into_an_output_is_where_backward_starts_as_in_pycaffe():
    """pycaffe's saliency idiom, net.blobs["prob"].diff[...] = g; net.backward(): the write was
    lost (a fresh zeros tensor) and every diff came out 0 (real Caffe: the prob diff stays g and
    the data diff is g's gradient, checked on the reference build). Here against autograd on
    the same net, through blob_values, and backward(prob=g), pycaffe's keyword form."""
    g = torch.arange(10.0).view(2, 5) / 10
    net = _deploy()
    net.forward()
    net.blobs["prob"].diff[...] = g
    assert torch.equal(net.blobs["prob"].diff, g)
    diffs = net.backward(diffs=["ip"])
    x = net.blobs["data"].data.clone().requires_grad_()
    values = net.blob_values(data=x)
    want_data, want_w = torch.autograd.grad((values["prob"] * g).sum(),
                                            [x, net.learnable_params[0]])
    assert sorted(diffs) == ["data", "ip"] and torch.equal(diffs["data"], net.blobs["data"].diff)
    torch.testing.assert_close(net.blobs["data"].diff, want_data, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(net.params["conv1"][0].diff, want_w, rtol=1e-5, atol=1e-7)
    assert torch.equal(net.blobs["prob"].diff, g) and want_data.abs().sum() > 0
    again = _deploy()
    again.forward()
    again.backward(prob=g)
    assert torch.equal(again.blobs["data"].diff, net.blobs["data"].diff)
    with pytest.raises(AllconvError, match=r"backward\(ip=...\): not an output blob \(outputs: "
                                           r"prob\)"):
        again.backward(ip=g)


def test_a_parameter_diff_written_before_backward_is_added_onto():
    """Caffe's backward adds into the param diff memory: a write before the first backward
    was lost (zeros came back, and the backward started from None)."""
    net = _deploy()
    net.forward()
    net.backward(prob=torch.ones(2, 5))
    alone = net.params["ip"][0].diff.clone()
    net.clear_param_diffs()
    net.params["ip"][0].diff[...] = 1
    assert torch.equal(net.params["ip"][0].diff, torch.ones_like(alone))
    net.forward()
    net.backward(prob=torch.ones(2, 5))
    torch.testing.assert_close(net.params["ip"][0].diff, alone + 1)
    net.clear_param_diffs()
    assert not net.params["ip"][0].diff.any()


def test_pycaffe_forward_blobs_layer_types_and_detached_outputs():
    """forward(blobs=[...]) adds those blobs; outputs hold no autograd graph (numpy() works,
    as pycaffe's arrays); layer.type is the Caffe type (it was nn.Module's cast method)."""
    net = _deploy()
    out = net.forward(blobs=["conv1"])
    assert sorted(out) == ["conv1", "prob"] and not out["prob"].requires_grad
    assert out["prob"].numpy().shape == (2, 5)
    assert torch.equal(out["conv1"], net.blobs["conv1"].data)
    assert [layer.type for layer in net.layers] == ["Input", "Convolution", "InnerProduct",
                                                    "Softmax"]
    with pytest.raises(AllconvError, match="no blob 'nope' in the net"):
        net.forward(blobs=["nope"])


def test_a_net_run_in_two_halves_is_one_forward_across_splits_and_flattens():
    """Caffe's Split and Flatten tops share their bottom's memory: a forward cut below them
    leaves them on the new values, so the upper half reads those (and a blob written by hand
    reaches them); they kept the previous pass's values (held-out check: googlenet's prob
    0.032 off, lenet's loss the previous batch's; real Caffe: equal to one forward)."""
    text = ('layer { name: "in" type: "Input" top: "x" top: "label" input_param { '
            'shape { dim: 3 dim: 2 dim: 2 } shape { dim: 3 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param '
            '{ num_output: 4 weight_filler { type: "xavier" } } }\n'
            'layer { name: "flat" type: "Flatten" bottom: "ip" top: "flat" }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "flat" bottom: "label" '
            'top: "loss" }\n'
            'layer { name: "acc" type: "Accuracy" bottom: "flat" bottom: "label" top: "acc" }\n')
    net = Net(text, TEST, seed=2)
    x, label = torch.randn(3, 2, 2), torch.tensor([0.0, 1.0, 3.0])
    net.forward(x=torch.randn(3, 2, 2), label=label)
    whole = net.forward(x=x, label=label)
    net.forward(x=torch.randn(3, 2, 2), label=label)        # another pass in between
    net.forward(end="ip", x=x, label=label)
    halves = net.forward(start="flat")
    assert sorted(halves) == ["acc", "loss"]
    for name in ("loss", "acc"):
        assert torch.equal(halves[name], whole[name])
    net.blobs["ip"].data[...] = torch.eye(4)[[0, 1, 3]]     # written by hand, read through
    assert float(net.forward(start="loss")["acc"]) == 1.0    # the Split and the Flatten


def test_pycaffe_forward_from_to_runs_part_of_the_net():
    """forward(start=, end=): Caffe's ForwardFromTo, the blobs below start read as they are
    (pycaffe's idiom: write a blob, run the layers above it), end's tops returned; real
    Caffe gave the same on this net. A backward needs a whole forward; backward(start=) is
    one line."""
    net = _deploy()
    full = net.forward()
    prob = full["prob"].clone()
    out = net.forward(end="conv1")
    assert list(out) == ["conv1"] and torch.equal(out["conv1"], net.blobs["conv1"].data)
    conv1 = net.blobs["conv1"].data.clone()
    net.blobs["conv1"].data[...] = 0.5
    head = net.forward(start="ip")                  # without end: the outputs, as pycaffe
    assert list(head) == ["prob"] and not torch.equal(head["prob"], prob)
    assert list(net.forward(end="prob")) == ["prob"]
    assert torch.allclose(head["prob"][0], head["prob"][1])     # one conv1 value everywhere
    net.blobs["conv1"].data[...] = conv1
    torch.testing.assert_close(net.forward(start="ip", end="prob")["prob"], prob)
    assert list(net.forward(start="ip", end="ip", blobs=["data"])) == ["ip", "data"]
    with pytest.raises(AllconvError, match=r"backward\(\) needs a forward\(\) over the whole "
                                           r"net first .*forward\(start=/end=\) keeps no"):
        net.backward()
    with pytest.raises(AllconvError, match=r"forward\(end='nope'\): no such layer \(layers: "
                                           r"input, conv1, ip, prob\)"):
        net.forward(end="nope")
    before = net.blobs["conv1"].data.clone()       # start after end: nothing runs, as Caffe
    assert torch.equal(net.forward(start="prob", end="conv1")["conv1"], before)



def test_pycaffe_backward_from_to_runs_part_of_the_net():
    """backward(start=, end=): Caffe's BackwardFromTo from the diff written into start's top,
    down to end (DeepDream's idiom: forward(end=X), X's diff, backward(start=X)); parameter
    diffs add up over two backwards. Real Caffe on this net: data diff sum 15.04981, conv1
    15.04981 -> 2.736437, ip weight diff -15.53862 then -31.07723, conv1 weights 40.41085."""
    net = _deploy()
    full = Net(DEPLOY, TEST, seed=3)
    full.load_state_dict(net.state_dict())
    x = net.blobs["data"].data.clone()
    g = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    net.forward(end="ip")
    net.blobs["ip"].diff[...] = g
    out = net.backward(start="ip")
    assert list(out) == ["data"]
    weights = net.params["ip"][0].diff.clone()
    leaf = x.clone().requires_grad_()       # the same by autograd: the gradient of (ip · g)
    (full.blob_values(data=leaf)["ip"] * g).sum().backward()
    torch.testing.assert_close(out["data"], leaf.grad)
    torch.testing.assert_close(weights, full.params["ip"][0].diff)
    torch.testing.assert_close(net.params["conv1"][0].diff, full.params["conv1"][0].diff)
    assert list(net.backward(start="ip", end="ip")) == ["conv1"]
    torch.testing.assert_close(net.params["ip"][0].diff, 2 * weights)
    with pytest.raises(AllconvError, match=r"backward\(start='nope'\): no such layer"):
        net.backward(start="nope")
    quiet = Net(DEPLOY.replace("force_backward: true", ""), TEST, seed=3)  # no loss: Caffe
    quiet.forward(end="ip")                                                # runs no Backward
    quiet.blobs["ip"].diff[...] = g
    assert not quiet.backward(start="ip")["data"].any()
    assert not quiet.params["ip"][0].diff.any() and not quiet.params["conv1"][0].diff.any()
    dropout = Net(DEPLOY.replace('layer { name: "prob"', 'layer { name: "drop" type: "Dropout" '
                                 'bottom: "ip" top: "ip" }\nlayer { name: "prob"'), TRAIN, seed=3)
    dropout.forward()
    with pytest.raises(AllconvError, match=r"backward\(start=/end=\) over layer 'drop' "
                                           r"\(Dropout\): .* would draw or change its state"):
        dropout.backward(start="prob", end="ip")


def test_a_resized_input_keeps_its_memory_as_caffes_blob():
    """Blob::Reshape reallocates only past its capacity: shrinking views the first values
    and growing back finds them (the input was zeroed, and a forward without feeding then
    scored zeros); past the capacity, zeros."""
    net = _deploy()
    x = net.blobs["data"].data.clone()
    first = net.forward()["prob"][0].clone()
    net.blobs["data"].reshape(1, 3, 6, 6)
    net.reshape()
    assert torch.equal(net.blobs["data"].data, x[:1])
    torch.testing.assert_close(net.forward()["prob"][0], first)
    net.blobs["data"].reshape(2, 3, 6, 6)
    net.reshape()
    assert torch.equal(net.blobs["data"].data, x)
    net.blobs["data"].reshape(3, 3, 6, 6)
    net.reshape()
    assert net.blobs["data"].shape == (3, 3, 6, 6) and not net.blobs["data"].data.any()


def test_pycaffe_legacy_axes_and_layer_dict():
    """blob.num/channels/height/width as Caffe's LegacyShape (1 past the last axis; more than
    4 axes refused), on blobs and parameters, and net.layer_dict by name: all were
    AttributeErrors."""
    net = _deploy()
    data, ip = net.blobs["data"], net.blobs["ip"]
    assert (data.num, data.channels, data.height, data.width) == (2, 3, 6, 6)
    assert (ip.num, ip.channels, ip.height, ip.width) == (2, 5, 1, 1)
    weight, bias = net.params["ip"]     # pycaffe's params are Blobs too: (5, 144) and (5,)
    assert (weight.num, weight.channels, weight.height, weight.width) == (5, 144, 1, 1)
    assert (bias.num, bias.channels, bias.width, bias.count) == (5, 1, 1, 5)
    assert list(net.layer_dict) == net.layer_names
    assert net.layer_dict["ip"].type == "InnerProduct" and net.layer_dict["ip"] is net.layers[2]
    five = Net('name: "f" layer { name: "in" type: "Input" top: "x" input_param { shape { '
               'dim: 1 dim: 1 dim: 1 dim: 1 dim: 2 } } }', TEST)
    with pytest.raises(AllconvError, match=r"blob 'x' has 5 axes \(1, 1, 1, 1, 2\), more than "
                                           "the 4 of Caffe's legacy num, channels, height, "
                                           "width"):
        five.blobs["x"].width


def test_an_outputs_diff_memory_persists_across_passes_as_caffes():
    """Found in review: a diff written after a backward went into the retained gradient and
    the next backward started from the earlier write; an in-place layer's bottom diff on an
    output (the memory Caffe's Backward leaves) read back as the written one after the next
    forward. Checked on the reference build with the same nets (ReLU of slope 0.5 in place)."""
    g1, g2 = torch.ones(2, 5), torch.arange(10.0).view(2, 5)
    fresh = _deploy()
    fresh.forward()
    want = fresh.backward(prob=g2)["data"].clone()
    net = _deploy()
    for g in (g1, g2):          # write, forward, backward: the write is where it starts
        net.blobs["prob"].diff[...] = g
        net.forward()
        net.backward()
    assert torch.equal(net.blobs["data"].diff, want)
    leaky = Net(DEPLOY.replace('layer { name: "prob"', 'layer { name: "r" type: "ReLU" bottom: '
                               '"ip" top: "ip" relu_param { negative_slope: 0.5 } }\n#'), TEST,
                seed=3)
    leaky.blobs["data"].data[...] = _deploy().blobs["data"].data
    leaky.forward()
    leaky.blobs["ip"].diff[...] = g2
    leaky.backward()
    left = leaky.blobs["ip"].diff.clone()       # the ReLU's bottom diff: g2, halved where < 0
    assert not torch.equal(left, g2)
    leaky.forward()
    assert torch.equal(leaky.blobs["ip"].diff, left)


def test_written_diffs_survive_a_shared_view_a_reshape_and_a_move():
    """Found in review: a write through the sharing layer's view of a parameter was lost
    when the owner's view had been read; a written output diff was dropped by a reshape
    (Caffe's memory keeps its first values: checked on the reference build); a diff read
    before net.to(float64) made the next backward raise."""
    shared = Net('name: "s" force_backward: true' + INPUT.replace('top: "label"', "").replace(
        " shape { dim: 2 } ", "") + """
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" }
        inner_product_param { num_output: 2 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" param { name: "w" }
        inner_product_param { num_output: 2 bias_term: false weight_filler { type: "xavier" } } }""", TEST, seed=1)
    assert not shared.params["a"][0].diff.any()
    shared.params["b"][0].diff[...] = 1
    assert shared.params["a"][0].diff.sum() == 216
    net = _deploy()
    g = torch.arange(10.0).view(2, 5)
    net.forward()
    net.blobs["prob"].diff[...] = g
    net.blobs["data"].reshape(1, 3, 6, 6)
    net.reshape()
    assert torch.equal(net.blobs["prob"].diff, g[:1])
    moved = _deploy()
    moved.params["ip"][0].diff
    moved.blobs["prob"].diff[...] = g
    moved.to(torch.float64)
    moved.blobs["data"].data[...] = _deploy().blobs["data"].data
    moved.forward()
    moved.backward()
    assert moved.params["ip"][0].diff.dtype == torch.float64
    assert moved.blobs["prob"].diff.dtype == torch.float64 and moved.params["ip"][0].diff.any()


@pytest.mark.parametrize("call, message", [
    (lambda n: n.backward(prob=np.ones(3)), r"backward\(prob=...\): shape \(3,\), the blob is "
                                            r"\(2, 5\)"),
    (lambda n: n.backward(prob="x"), r"backward\(prob=...\): not an array of numbers \(str\)"),
    (lambda n: n.forward(data=None), r"forward\(data=...\): not an array of numbers \(NoneType\)"),
    (lambda n: n.forward(data=[[1, 2], [3]]), r"forward\(data=...\): not an array of numbers"),
    (lambda n: n.forward(blobs="ip"), r"give blob names as a list, such as \['data'\], not str"),
    (lambda n: n.backward(diffs=[3]), r"no blob 3 in the net"),
])
def test_pycaffe_arguments_are_checked_in_one_line(call, message):
    """Found in review: tracebacks (torch's expand error, TypeErrors) for these."""
    net = _deploy()
    net.forward(blobs=None)
    with pytest.raises(AllconvError, match=message):
        call(net)
    assert net.backward(diffs=None) == {"data": net.blobs["data"].diff}


def test_pycaffe_forward_all_runs_any_count_in_the_nets_batches():
    """forward_all (an AttributeError before): 5 items through a net of batch 2, the last
    batch padded, equal to one forward of the 5 at batch 5; blob_loss_weights as pycaffe's."""
    x = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    net = _deploy()
    out = net.forward_all(data=x, blobs=["conv1"])
    whole = _deploy()
    whole.blobs["data"].reshape(5, 3, 6, 6)
    whole.reshape()
    want = whole.forward(data=x, blobs=["conv1"])
    assert sorted(out) == ["conv1", "prob"] and out["prob"].shape == (5, 5)
    for name in out:
        torch.testing.assert_close(out[name], want[name])
    with pytest.raises(AllconvError, match=r"forward_all\(data=...\): shape \(5, 3, 6, 5\); "
                                           r"5 items of \(3, 6, 6\) expected"):
        net.forward_all(data=torch.zeros(5, 3, 6, 5))
    assert list(small().blob_loss_weights.items())[-1] == ("loss", 1.0)
    assert small().blob_loss_weights["conv1"] == 0.0


def test_pycaffe_forward_backward_all_equals_one_pass_over_every_item():
    """forward_backward_all (an AttributeError before): 5 items and their output diffs in
    batches of 2, the last padded; the values and diffs of one pass at batch 5."""
    gen = torch.Generator().manual_seed(9)
    x, g = torch.randn(5, 3, 6, 6, generator=gen), torch.randn(5, 5, generator=gen)
    outs, diffs = _deploy().forward_backward_all(blobs=["conv1"], diffs=["conv1"], data=x,
                                                 prob=g)
    whole = _deploy()
    whole.blobs["data"].reshape(5, 3, 6, 6)
    whole.reshape()
    want = whole.forward(data=x, blobs=["conv1"])
    want_diffs = whole.backward(diffs=["conv1"], prob=g)
    assert sorted(outs) == ["conv1", "prob"] and sorted(diffs) == ["conv1", "data"]
    for got, expected in ((outs, want), (diffs, want_diffs)):
        for name in got:
            assert got[name].shape[0] == 5
            torch.testing.assert_close(got[name], expected[name])
    with pytest.raises(AllconvError, match=r"forward_backward_all\(conv1=...\): not an Input "
                                           "or output blob"):
        _deploy().forward_backward_all(conv1=torch.zeros(5, 4, 6, 6))


def test_a_written_diff_reaches_only_layers_caffes_backward_runs():
    """Found by a pycaffe user's script: without force_backward or a loss, Caffe's Backward
    runs no layer, so a diff written into prob leaves every diff 0 (reference build); the
    runtime back-propagated it into the weights. With force_backward it does reach them."""
    net = Net(DEPLOY.replace(" force_backward: true", ""), TEST, seed=3)
    net.blobs["data"].data[...] = _deploy().blobs["data"].data
    net.forward()
    net.backward(prob=torch.ones(2, 5) + torch.arange(5.0))
    assert not any(view.diff.any() for views in net.params.values() for view in views)
    forced = _deploy()
    forced.forward()
    forced.backward(prob=torch.ones(2, 5) + torch.arange(5.0))
    assert forced.params["conv1"][0].diff.any()
    assert net.share_with == net.share_trained_layers_with


@pytest.mark.parametrize("share", [
    "type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } }", "type: 'Concat'",
    "type: 'Slice'"])
def test_a_diff_written_into_a_top_sharing_its_bottoms_diff_joins_the_split_below(share):
    """b feeds a loss and a Reshape (a one-bottom Concat, a one-top Slice) whose top o is an
    output: Caffe's o shares the diff memory of b's split top, so the Split's backward adds
    the diff written into o to the loss's, though the Reshape runs no backward (checked on the
    reference build). The written diff was left out; the one-bottom Concat's and one-top
    Slice's tops did not share at all."""
    net = Net("layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param { shape { dim: 2 "
              "dim: 3 } shape { dim: 2 dim: 3 } } }\n"
              "layer { name: 'bias' type: 'Bias' bottom: 'x' top: 'b' bias_param { axis: 1 } }\n"
              f"layer {{ name: 'share' {share} bottom: 'b' top: 'o' }}\n"
              "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'b' bottom: 't' top: 'l' }",
              TEST)
    g = torch.Generator().manual_seed(4)
    x, t, written = (torch.randn(2, 3, generator=g) for _ in range(3))
    net.forward(x=x, t=t)
    net.backward(o=written)
    b = x + net.params["bias"][0].data
    loss_share = (b - t) / 2                    # EuclideanLoss: diff / batch
    torch.testing.assert_close(net.params["bias"][0].diff, (loss_share + written).sum(0))
    torch.testing.assert_close(net.blobs["x"].diff, torch.zeros(2, 3))   # not propagated
    torch.testing.assert_close(net.blobs["o"].diff, written)


@pytest.mark.parametrize("net_text, start, written, unforced", [
    ("layer { name: 's' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
     "bottom: 'b' top: 'o' }", "s", ["o"], True),
    ("layer { name: 's' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
     "bottom: 'b' top: 'o' loss_weight: 2 }", "s", ["o"], True),
    ("layer { name: 's' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
     "bottom: 'b' top: 'r' }\n"
     "layer { name: 's2' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
     "bottom: 'r' top: 'o' }", "s", ["o"], True),
    *[("layer { name: 's' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
       "bottom: 'b' top: 'r' }\n"
       "layer { name: 's2' type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 } } "
       "bottom: 'r' top: 'o' }\nlayer { name: 's3' type: 'Concat' bottom: 'r' top: 'p' }",
       start, ["o", "p"], False) for start in ("s2", "s3")]])
def test_a_backward_from_a_layer_reads_every_written_diff_its_part_shares(net_text, start,
                                                                          written, unforced):
    """backward(start=...) over b's Split: Caffe's part reads the diff written into each
    output whose memory it shares (a Reshape's or one-bottom Concat's top, over the Split's
    top), once, and a written diff replaces its top's loss weight (reference build: 72 such
    nets). The part's diffs were 0; two tops of one memory counted it twice; the loss
    weight was added to the written diff. (Unforced, r's Split runs no backward: its memory,
    which b's Split reads, holds nothing, as in Caffe.)"""
    for forced in ("", "force_backward: true"):
        _check_part_backward(forced, net_text, start, written, reaches=unforced or bool(forced))


def _check_part_backward(forced: str, net_text: str, start: str, written: list,
                         reaches: bool) -> None:
    net = Net(f"{forced}\n"
              "layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param { shape { dim: 2 "
              "dim: 3 } shape { dim: 2 dim: 3 } } }\n"
              "layer { name: 'bias' type: 'Bias' bottom: 'x' top: 'b' bias_param { axis: 1 } }\n"
              f"{net_text}\n"
              "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'b' bottom: 't' top: 'l' }",
              TEST)
    g = torch.Generator().manual_seed(5)
    net.forward(x=torch.randn(2, 3, generator=g), t=torch.randn(2, 3, generator=g))
    diffs = {name: torch.randn(2, 3, generator=g) for name in written}
    for name, diff in diffs.items():
        net.blobs[name].diff[...] = diff
    net.backward(start=start)
    torch.testing.assert_close(net.params["bias"][0].diff,
                               sum(diffs.values()).sum(0) * reaches)


@pytest.mark.parametrize("layer", ["type: 'MVN'", "type: 'ArgMax'", "type: 'Softmax'",
                                   "type: 'InnerProduct' inner_product_param { num_output: 2 }"])
def test_a_layer_on_a_blob_built_empty_is_refused_as_caffe_aborts(layer):
    """An Input of batch 0: Caffe allocates nothing and aborts when a layer reads it (MVN and
    ArgMax gave a traceback, the others ran on)."""
    with pytest.raises(AllconvError, match=r"^layer 'l' \(\w+\): bottom 'data' is empty, shape "
                                           r"\(0, 3, 2, 2\); Caffe aborts"):
        Net("layer { name: 'in' type: 'Input' top: 'data' input_param { shape { dim: 0 "
            f"dim: 3 dim: 2 dim: 2 }} }} }}\nlayer {{ name: 'l' {layer} bottom: 'data' "
            "top: 'out' }", TEST)


@pytest.mark.parametrize("kind, labels, out", [
    ("MVN", "", (0, 3, 2, 2)), ("ArgMax", "", (0, 1, 1, 1)), ("HingeLoss", "bottom: 'l'", ()),
    ("MultinomialLogisticLoss", "bottom: 'l'", ())])
def test_layers_run_on_a_batch_a_filter_empties(kind, labels, out):
    """A Filter selecting nothing: its tops keep their memory in Caffe and the layers after
    them run (MVN and ArgMax raised "cannot reshape tensor of 0 elements")."""
    net = Net("layer { name: 'in' type: 'Input' top: 'x' top: 'y' top: 's' input_param { "
              "shape { dim: 4 dim: 3 dim: 2 dim: 2 } shape { dim: 4 } shape { dim: 4 } } }\n"
              "layer { name: 'f' type: 'Filter' bottom: 'x' bottom: 'y' bottom: 's' top: 'd' "
              f"top: 'l' }}\nlayer {{ name: 'm' type: '{kind}' bottom: 'd' {labels} top: 'o' }}",
              TEST)
    got = net.forward(x=torch.rand(4, 3, 2, 2), y=torch.zeros(4), s=torch.zeros(4))
    assert tuple(got["o"].shape) == out


# ------------------------------------------------------------------ pycaffe's process settings

@pytest.fixture
def process_settings(monkeypatch):
    """set_mode_* and set_random_seed change process-wide settings: each test's are its own."""
    from runtime import mode
    monkeypatch.setattr(mode, "_chosen", dict(mode._chosen))
    return mode


def test_set_random_seed_makes_unseeded_nets_a_fixed_sequence(process_settings):
    import runtime as caffe

    def weights(**seed):
        return Net(NET, TEST, **seed).params["conv1"][0].data.clone()
    assert not torch.equal(weights(), weights())            # unseeded: random
    caffe.set_random_seed(7)
    first, second = weights(), weights()
    assert not torch.equal(first, second)                   # each net draws its own
    caffe.set_random_seed(np.int64(7))
    assert torch.equal(weights(), first) and torch.equal(weights(), second)
    for bad in (-1, 2**32, 1.5, "12", None):       # Caffe's seed is an unsigned int
        with pytest.raises(AllconvError, match=r"set_random_seed takes a seed, a whole number "
                                               r"from 0 to 4294967295, not "):
            caffe.set_random_seed(bad)
    assert torch.equal(weights(seed=1), Net(NET, TEST, seed=1).params["conv1"][0].data)


def test_set_mode_and_set_device_choose_where_nets_and_solvers_run(process_settings):
    import runtime as caffe
    assert process_settings.chosen_device() is None
    caffe.set_device(1)
    caffe.set_mode_cpu()
    assert process_settings.chosen_device() == "cpu"
    for bad in (-1, 1.5, True, 2**31):
        with pytest.raises(AllconvError, match="set_device takes a GPU's number"):
            caffe.set_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(AllconvError, match="set_mode_gpu: this machine has no CUDA device"):
            caffe.set_mode_gpu()
        assert process_settings.chosen_device() == "cpu"
        return
    caffe.set_device(0)
    caffe.set_mode_gpu()
    assert Net(NET, TEST).params["conv1"][0].data.device == torch.device("cuda:0")


def test_set_device_takes_0_and_gpu_mode_names_the_device(process_settings, monkeypatch):
    import runtime as caffe
    caffe.set_device(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    caffe.set_device(1)
    caffe.set_mode_gpu()
    assert process_settings.chosen_device() == "cuda:1"


def test_set_random_seed_of_another_value_is_another_sequence(process_settings):
    import runtime as caffe
    caffe.set_random_seed(7)
    first = process_settings.next_seed()
    caffe.set_random_seed(8)
    assert process_settings.next_seed() != first


def _input(name, *shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f'input_param {{ shape {{ {dims} }} }} }}\n')


X = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
LABEL = [2.0, 0.0]


def test_a_loss_layer_without_a_top_still_counts_and_back_propagates():
    # net-01. Reference pycaffe: d_x as below (AutoTopBlobs gives the loss a top)
    net = Net("force_backward: true\n" + _input("x", 2, 3) + _input("l", 2)
              + 'layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }\n'
              'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "l" }\n',
              TRAIN)
    net.forward(x=torch.tensor(X), l=torch.tensor(LABEL))
    assert net.last_loss > 0
    net.backward()
    expected = [[0.03214062, 0.01993599, -0.08303869], [-0.08786446, 0.02317993, 0.01055150]]
    assert np.allclose(net.blobs["x"].diff.numpy(), expected, atol=1e-6)


def test_force_backward_computes_the_diffs_of_frozen_params():
    # net-15. Reference pycaffe: force_backward sets every param_propagate_down, lr_mult 0 too
    net = Net("force_backward: true\n" + _input("x", 2, 3) + _input("t", 2, 2)
              + 'layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "y" param { lr_mult: 0 }'
              ' param { lr_mult: 0 } inner_product_param { num_output: 2 weight_filler { type: '
              '"constant" value: 0.5 } bias_filler { type: "constant" value: 0.1 } } }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }\n',
              TRAIN)
    net.forward(x=torch.tensor(X), t=torch.tensor([[0.5, -1.0], [2.0, 1.0]]))
    net.backward()
    expected = [[0.675, 1.8, -1.0125], [1.425, 2.8, 0.8625]]
    assert np.allclose(net.params["ip1"][0].diff.numpy(), expected, atol=1e-6)
    assert np.allclose(net.params["ip1"][1].diff.numpy(), [0.225, 1.475], atol=1e-6)


def test_a_shared_blobs_frozen_use_adds_nothing_to_its_diff():
    # net-17. Reference pycaffe: ip2 (lr_mult 0) shares ip1's blobs and runs no Backward;
    # the diff is ip1's part alone, and y2 gets no diff
    ip = ('layer {{ name: "{}" type: "InnerProduct" bottom: "x" top: "{}" param {{ name: "w" {} }}'
          ' param {{ name: "b" {} }} inner_product_param {{ num_output: 2 weight_filler {{ type: '
          '"constant" value: 0.5 }} bias_filler {{ type: "constant" value: 0.1 }} }} }}\n')
    net = Net(_input("x", 2, 3) + _input("t", 2, 2) + ip.format("ip1", "y", "", "")
              + ip.format("ip2", "y2", "lr_mult: 0", "lr_mult: 0")
              + 'layer { name: "e" type: "Eltwise" bottom: "y" bottom: "y2" top: "s" '
              'eltwise_param { coeff: 1 coeff: -2 } }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "t" top: "l" }\n',
              TRAIN)
    net.forward(x=torch.tensor(X), t=torch.tensor([[0.5, -1.0], [2.0, 1.0]]))
    net.backward()
    expected = [[-1.175, -0.8, -5.2375], [-0.425, 0.2, -3.3625]]
    assert np.allclose(net.params["ip1"][0].diff.numpy(), expected, atol=1e-6)
    assert np.allclose(net.params["ip1"][1].diff.numpy(), [-2.725, -1.475], atol=1e-6)
    assert torch.count_nonzero(net.blobs["y2"].diff) == 0


def test_forward_from_the_second_layer_reads_the_blobs_below_it():
    # net-18: pycaffe's forward(start=) is ForwardFromTo(1, end) over the blobs as they are
    net = Net(_input("x", 2, 3) + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n',
              TEST)
    net.blobs["x"].data[...] = torch.tensor(X)
    np.testing.assert_array_equal(net.forward(start="r")["y"].numpy(), np.maximum(X, 0))


def test_last_loss_is_the_weighted_loss_of_the_forward():
    # net-26: Caffe's Net::Forward(&loss): the sum of the weighted tops (here 3 * loss)
    net = Net(_input("x", 2, 3) + _input("l", 2) + 'layer { name: "loss" type: '
              '"SoftmaxWithLoss" bottom: "x" bottom: "l" top: "loss" loss_weight: 3 }\n', TRAIN)
    net.forward(x=torch.tensor(X), l=torch.tensor(LABEL))
    assert net.last_loss == pytest.approx(3 * float(net.blobs["loss"].data), rel=1e-6)


def test_sharing_trained_layers_checks_shapes_not_counts():
    # net-29. Caffe's ShareTrainedLayersWith: CHECK(target shape == source shape)
    def net(inputs, outputs):
        return Net(_input("a", 1, inputs) + 'layer { name: "ip" type: "InnerProduct" '
                   f'bottom: "a" top: "y" inner_product_param {{ num_output: {outputs} '
                   'bias_term: false weight_filler { type: "xavier" } } }\n', TEST)
    with pytest.raises(AllconvError, match="shape"):
        net(4, 3).share_with(net(6, 2))


def test_layers_below_follow_every_bottom_down():
    # net-30: the layers a blob depends on, through several levels
    net = Net(_input("x", 2, 3) + _input("u", 2, 3)
              + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
              'layer { name: "e" type: "Eltwise" bottom: "y" bottom: "u" top: "z" }\n'
              'layer { name: "s" type: "Sigmoid" bottom: "x" top: "w" }\n', TEST)
    assert [layer.name for layer in net.layers_below(["z"])] == ["x", "x_x_0_split", "u", "r", "e"]


def test_a_loss_outputs_diff_written_to_0_stops_its_gradient():
    # net-33. Reference pycaffe: diff 0 -> no gradient; diff 3 -> 3 times the loss's
    ip = ('layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
          '{ num_output: 2 weight_filler { type: "constant" value: 0.5 } '
          'bias_filler { type: "constant" value: 0.1 } } }\n')
    net = Net(_input("x", 2, 3) + _input("t", 2, 2) + ip
              + 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }\n',
              TRAIN)
    inputs = dict(x=torch.tensor(X), t=torch.tensor([[0.5, -1.0], [2.0, 1.0]]))
    net.forward(**inputs)
    net.blobs["l"].diff[...] = 0
    net.backward()
    assert torch.count_nonzero(net.params["ip1"][0].diff) == 0
    net.forward(**inputs)
    net.blobs["l"].diff[...] = 3
    net.backward()
    expected = [[2.025, 5.4, -3.0375], [4.275, 8.4, 2.5875]]
    assert np.allclose(net.params["ip1"][0].diff.numpy(), expected, atol=1e-5)


def test_an_hdf5_weights_file_holds_a_shared_blob_with_its_owner(tmp_path):
    # net-32. Caffe's ToHDF5 saves a param only where param_owners_ is -1 (the first layer)
    h5py = pytest.importorskip("h5py")
    ip = ('layer {{ name: "{}" type: "InnerProduct" bottom: "x" top: "{}" param {{ name: "w" }}'
          ' inner_product_param {{ num_output: 2 bias_term: false '
          'weight_filler {{ type: "xavier" }} }} }}\n')
    net = Net(_input("x", 2, 3) + ip.format("ip1", "y1") + ip.format("ip2", "y2"), TEST)
    net.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    with h5py.File(tmp_path / "w.caffemodel.h5", "r") as f:
        assert "0" in f["data"]["ip1"] and "0" not in f["data"]["ip2"]


def test_propagate_down_once_for_two_bottoms_is_refused():
    # net-08. Caffe (net.cpp:114): "propagate_down param must be specified either 0 or
    # bottom_size times"
    with pytest.raises(AllconvError, match="propagate_down"):
        Net(_input("x", 2, 3) + _input("l", 2)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" '
            'top: "loss" propagate_down: true }\n', TRAIN)


def test_a_strict_share_of_an_equal_count_in_another_shape_is_refused():
    # net-12. Caffe (net.cpp:555): "Cannot share param 'w' ...; shape mismatch" (2 6 vs 3 4)
    text = (_input("a", 1, 6) + _input("b", 1, 4)
            + 'layer { name: "ip1" type: "InnerProduct" bottom: "a" top: "y1" param { name: "w" }'
            ' inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n'
            'layer { name: "ip2" type: "InnerProduct" bottom: "b" top: "y2" param { name: "w" }'
            ' inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n')
    with pytest.raises(AllconvError, match="shape"):
        Net(text, TEST)
    Net(text.replace('param { name: "w" }', 'param { name: "w" share_mode: PERMISSIVE }'), TEST)


def test_a_rule_without_a_phase_matches_a_test_net():
    # filter-01. Caffe's StateMeetsRule checks the phase only where the rule has one
    text = (_input("x", 2, 3)
            + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" include { stage: "s" } }\n')
    assert "r" in Net(text, TEST, stages=["s"]).layer_dict
    assert "r" not in Net(text, TEST).layer_dict


def test_the_level_bounds_are_inclusive_and_each_bounds_its_side():
    # filter-03, filter-04: Caffe's level < min_level and level > max_level exclude
    def meets(level, **fields):
        return state_meets_rule(pb.NetState(level=level), pb.NetStateRule(**fields))
    assert meets(3, max_level=3) and meets(1, max_level=3) and not meets(4, max_level=3)
    assert meets(2, min_level=2) and not meets(1, min_level=2)


def test_loss_weights_past_the_tops_are_one_line():
    # splits-08. Caffe (layer.hpp:417): "loss_weight must be unspecified or specified once
    # per top blob"
    with pytest.raises(AllconvError, match="loss_weight"):
        Net(_input("x", 2, 3) + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" '
            'loss_weight: 1 loss_weight: 2 }\n', TRAIN)


def test_a_weighted_top_that_layers_read_splits_with_its_loss_on_split_top_0():
    # splits-07. Reference pycaffe: bottom_names, outputs and blob_loss_weights as below
    ip = ('layer {{ name: "{}" type: "InnerProduct" bottom: "{}" top: "{}" {} '
          'inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}\n')
    net = Net(_input("x", 2, 3) + _input("t", 2, 2) + ip.format("ip1", "x", "y", "loss_weight: 0.5")
              + ip.format("ip2", "y", "z", "")
              + 'layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "t" top: "l" }\n'
              'layer { name: "loss2" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l2" '
              'loss_weight: 2 }\n', TRAIN)
    assert net.bottom_names["ip2"] == ["y_ip1_0_split_1"]
    assert net.bottom_names["loss2"] == ["y_ip1_0_split_2", "t_t_0_split_1"]
    assert list(net.outputs) == ["l", "l2", "y_ip1_0_split_0"]
    weights = {k: v for k, v in net.blob_loss_weights.items() if v}
    assert weights == {"y_ip1_0_split_0": 0.5, "l": 1.0, "l2": 2.0}


def test_a_layer_whose_readers_propagate_nothing_is_skipped_though_softmax_writes_its_diff():
    # bwplan-07. Reference pycaffe: Softmax (propagate_down false) writes y's diff, but
    # Caffe's skip rule stops ip1's Backward: its weight diff stays 0
    net = Net(_input("x", 2, 3) + _input("t", 2, 2)
              + 'layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "y" '
              'inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 }'
              ' bias_filler { type: "constant" value: 0.1 } } }\n'
              'layer { name: "sm" type: "Softmax" bottom: "y" top: "p" propagate_down: false }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "t" top: "l" }\n',
              TRAIN)
    net.forward(x=torch.tensor(X), t=torch.tensor([[0.5, -1.0], [2.0, 1.0]]))
    net.backward()
    assert np.allclose(net.blobs["y"].diff.numpy(), [[-0.1875, 0.1875], [-0.125, 0.125]])
    assert torch.count_nonzero(net.params["ip1"][0].diff) == 0


@pytest.mark.parametrize("layer", ['type: "Concat" bottom: "data" top: "data"',
                                   'type: "Slice" bottom: "data" top: "data"'])
def test_a_one_bottom_concat_or_one_top_slice_in_place_runs(layer):
    """Found by fuzzing prototxts: Caffe builds these and computes y = 2·data; the runtime
    built them, then looped for ever in every forward (its diff memory named the blob as
    sharing its own)."""
    net = Net('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 '
              f'dim: 3 }} }} }} layer {{ name: "l" {layer} }} layer {{ name: "p" type: "Power" '
              'bottom: "data" top: "y" power_param { scale: 2 } }', TEST)
    x = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(net.forward(data=x)["y"], 2 * x)


def test_an_input_that_a_layer_rewrites_in_place_is_returned_as_the_layer_left_it():
    """Found by fuzzing prototxts: a net whose output is an Input blob with a ReLU in place on
    it returned the input as fed; Caffe's forward returns the ReLU's values (its one memory).
    The Input keeps what was fed (README: deviations), so a next forward starts from it."""
    net = Net('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } '
              '} layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }', TEST)
    fed = torch.tensor([[0.5, -1.0, 1.4, -0.3]])
    assert torch.equal(net.forward(x=fed)["x"], fed.clamp(min=0))
    assert torch.equal(net.blobs["x"].data, fed)


def test_a_split_in_place_is_refused_as_caffe_refuses_it():
    """split_layer.cpp: 'Split Layer does not allow in-place computation'; the runtime ran it."""
    with pytest.raises(AllconvError, match=r"layer 's' \(Split\): Split cannot run in place"):
        Net('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 4 } } '
            '} layer { name: "s" type: "Split" bottom: "x" top: "x" top: "y" }', TEST)
