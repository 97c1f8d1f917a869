"""Backprop, deconvnet and guided backpropagation against backward passes written out by hand
with explicit masks; switches, receptive fields and the top-k dataset pass."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from runtime import TEST, AllconvError, Net
from runtime.geometry import Window
from runtime.layers.relu import rule_backward
from runtime.proto import pb
from runtime.reconstruction import (METHODS, activations, backward_ignores_input, choose_unit,
                                    parse_unit, receptive_windows, reconstruct, relu_rule,
                                    switched_net, top_units)

from layer_kit import build

SLOPE = 0.1
# data -> conv1 (3x3 pad 1) -> in-place ReLU -> conv2 (3x3 stride 2 pad 1) -> in-place leaky ReLU
CHAIN = f"""
name: "chain"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 dim: 2 dim: 6 dim: 6 }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1
    weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 stride: 2
    weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" relu_param {{ negative_slope: {SLOPE} }} }}
"""
# one ReLU top ("r1") feeding two convs whose tops are summed
FORK = """
name: "fork"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 2 dim: 5 dim: 5 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "r1" }
layer { name: "a" type: "Convolution" bottom: "r1" top: "a"
  convolution_param { num_output: 2 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "b" type: "Convolution" bottom: "r1" top: "b"
  convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "relu2" type: "ReLU" bottom: "sum" top: "sum" }
"""


def masked(f, signal, slope, method):
    """The paper's rules with explicit 0/1 masks; a leaky ReLU lets `slope` through instead of 0."""
    def gate(positive):
        return positive.float() + slope * (~positive).float()
    if method == "backprop":
        return gate(f > 0) * signal
    if method == "deconvnet":
        return gate(signal > 0) * signal
    return gate(f > 0) * gate(signal > 0) * signal


def weights(net, name):
    return [p.data for p in net.params[name]]


def seed(shape, units):
    out = torch.zeros(shape)
    for i, unit in enumerate(units):
        out[(i,) + unit] = 1
    return out


@pytest.fixture(scope="module")
def chain():
    return Net(CHAIN, TEST, seed=3)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("method", METHODS)
def test_chain_matches_the_hand_written_backward(chain, images, method):
    w1, b1 = weights(chain, "conv1")
    w2, b2 = weights(chain, "conv2")
    f1 = F.conv2d(images, w1, b1, padding=1)
    f2 = F.conv2d(F.relu(f1), w2, b2, stride=2, padding=1)
    units = [(1, 0, 2), (3, 2, 1)]
    r = masked(f2, seed(f2.shape, units), SLOPE, method)     # through the in-place leaky relu2
    r = conv2d_input(f1.shape, w2, r, stride=2, padding=1)
    r = masked(f1, r, 0.0, method)
    r = conv2d_input(images.shape, w1, r, padding=1)
    got = reconstruct(chain, "conv2", images, method, units)
    torch.testing.assert_close(got, r, rtol=1e-5, atol=1e-6)


def test_the_methods_differ_where_their_masks_do(chain, images):
    """At one ReLU, the four sign cases of (input f, signal R), for a plain and a leaky ReLU;
    through the whole chain the three results all differ."""
    f = torch.tensor([2.0, 2.0, -2.0, -2.0])
    r = torch.tensor([3.0, -3.0, 3.0, -3.0])
    passes = {"backprop": [1, 1, 0, 0], "deconvnet": [1, 0, 1, 0], "guided": [1, 0, 0, 0]}
    for slope in (0.0, SLOPE):
        for method, mask in passes.items():
            want = r * torch.tensor([1.0 if m else slope for m in mask])
            if method == "guided":   # blocked by both masks: slope squared
                want[3] = r[3] * slope * slope
            torch.testing.assert_close(rule_backward(f, r, slope, method), want)
    got = {m: reconstruct(chain, "conv2", images, m, [(1, 0, 2), (3, 2, 1)]) for m in METHODS}
    for a, b in [("backprop", "deconvnet"), ("backprop", "guided"), ("deconvnet", "guided")]:
        assert (got[a] - got[b]).abs().max() > 1e-3, (a, b)


@pytest.mark.parametrize("method", METHODS)
def test_a_relu_feeding_two_layers_gets_the_summed_signal(method):
    net = Net(FORK, TEST, seed=7)
    x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    w1, b1 = weights(net, "conv1")
    (wa, ba), (wb, bb) = weights(net, "a"), weights(net, "b")
    f1 = F.conv2d(x, w1, b1, padding=1)
    s = F.conv2d(F.relu(f1), wa, ba, padding=1) + F.conv2d(F.relu(f1), wb, bb)
    units = [(0, 1, 1), (1, 3, 2)]
    r = masked(s, seed(s.shape, units), 0.0, method)
    r = conv2d_input(f1.shape, wa, r, padding=1) + conv2d_input(f1.shape, wb, r)
    r = conv2d_input(x.shape, w1, masked(f1, r, 0.0, method), padding=1)
    torch.testing.assert_close(reconstruct(net, "sum", x, method, units), r, rtol=1e-5, atol=1e-6)


def test_rules_are_restored_and_training_backward_is_unchanged(chain, images):
    with relu_rule(chain, "guided"):
        assert {l.rule for l in chain.layers if l.type_name == "ReLU"} == {"guided"}
    assert {l.rule for l in chain.layers if l.type_name == "ReLU"} == {"backprop"}
    with pytest.raises(AllconvError, match="valid: backprop, deconvnet, guided"):
        with relu_rule(chain, "saliency"):
            pass


def test_choosing_a_unit():
    act = torch.zeros(3, 2, 4)
    act[1, 1, 2] = act[2, 0, 0] = 5.0         # a tie: the first in row-major order wins
    act[0, 1, 3] = 2.0
    assert choose_unit(act, None) == (1, 1, 2)
    assert choose_unit(act, (0,)) == (0, 1, 3)
    assert choose_unit(act, (2, 1, 1)) == (2, 1, 1)
    assert parse_unit("4") == (4,) and parse_unit("1,2,3") == (1, 2, 3)
    with pytest.raises(AllconvError, match="out of range for blob 'b' of shape \\(3, 2, 4\\)"):
        choose_unit(act, (3,), "b")
    with pytest.raises(AllconvError, match="give C or C,Y,X"):
        parse_unit("1,2")


def small_switch_net():
    return Net(CHAIN.replace("relu_param { negative_slope: 0.1 }", ""), TEST, seed=11)


def test_switches_keep_every_later_blob_shape():
    for variant, pool, count in (("all-c", "3x3 s2 pad 0", 2), ("imagenet", "3x3 s2 pad 1", 3)):
        net = Net(render_net(get_variant(variant), NetOptions(deploy=True)), TEST, seed=0)
        switched, notes = switched_net(net)
        assert all(pool in note for note in notes) and len(notes) == count
        for name, blob in net.blobs.items():
            assert switched.blobs[name].shape == blob.shape, name
        conv = next(n for n in notes).split(":")[0]
        assert torch.equal(switched.params[conv][0].data, net.params[conv][0].data)


@pytest.mark.parametrize("method", METHODS)
def test_switches_route_through_the_recorded_maxima(images, method):
    net = small_switch_net()
    switched, notes = switched_net(net)
    assert notes == ["conv2: stride 1 + max-pool 3x3 s2 pad 0 (6->3)"]
    w1, b1 = weights(net, "conv1")
    w2, b2 = weights(net, "conv2")
    f1 = F.conv2d(images, w1, b1, padding=1)
    full = F.conv2d(F.relu(f1), w2, b2, padding=1)               # stride 1: (2, 4, 6, 6)
    # the ReLU, then the pool (Caffe's rounding up: 6 -> 3)
    padded = F.pad(F.relu(full), (0, 1, 0, 1), value=-float("inf"))
    units = [(1, 0, 2), (3, 2, 1)]
    r_full = torch.zeros_like(full)
    for i, (c, y, x) in enumerate(units):
        window = padded[i, c, 2 * y:2 * y + 3, 2 * x:2 * x + 3]
        dy, dx = divmod(int(torch.argmax(window)), 3)             # the switch: first maximum
        r_full[i, c, 2 * y + dy, 2 * x + dx] = masked(full[i, c, 2 * y + dy, 2 * x + dx],
                                                      torch.tensor(1.0), 0.0, method)
    r = conv2d_input(f1.shape, w2, r_full, padding=1)
    r = conv2d_input(images.shape, w1, masked(f1, r, 0.0, method), padding=1)
    torch.testing.assert_close(reconstruct(switched, "conv2", images, method, units), r,
                               rtol=1e-5, atol=1e-6)


# CHAIN's conv2 as the paper's ConvPool nets have it (conv, ReLU, then a 3x3 stride-2 max-pool),
# with a conv above it, whose units send signals into overlapping pool windows
CONV3 = """
layer { name: "conv3" type: "Convolution" bottom: "conv2" top: "conv3"
  convolution_param { num_output: 2 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
"""
CONVPOOL = (CHAIN.replace("stride: 2", "").replace('top: "conv2"', 'top: "full2"')
            .replace('bottom: "conv2"', 'bottom: "full2"')
            + 'layer { name: "pool2" type: "Pooling" bottom: "full2" top: "conv2" '
              "pooling_param { pool: MAX kernel_size: 3 stride: 2 } }" + CONV3)


@pytest.mark.parametrize("method", METHODS)
def test_switches_pool_after_the_relu_as_a_convpool_net(images, method):
    net = Net(CHAIN.replace(f"relu_param {{ negative_slope: {SLOPE} }}", "") + CONV3, TEST,
              seed=7)
    switched, _ = switched_net(net)
    convpool = Net(CONVPOOL.replace(f"relu_param {{ negative_slope: {SLOPE} }}", ""), TEST)
    for name, blobs in net.params.items():
        for mine, trained in zip(convpool.params[name], blobs):
            mine.data[...] = trained.data
    units = [(0, 1, 2), (1, 2, 0)]
    expected = reconstruct(convpool, "conv3", images, method, units)
    assert expected.abs().max() > 0
    torch.testing.assert_close(reconstruct(switched, "conv3", images, method, units), expected,
                               rtol=1e-5, atol=1e-6)


def test_receptive_windows_of_all_cnn_c():
    net = Net(render_net(get_variant("all-c"), NetOptions(deploy=True)), TEST, seed=0)
    windows = receptive_windows(net)
    assert windows["data"] == (Window(), Window())
    assert windows["conv1"][0] == Window(-1, 3, 1)
    assert windows["conv3"][0] == Window(-3, 7, 2)      # 3x3, 3x3, then 3x3 stride 2
    assert windows["conv6"][1] == Window(-9, 19, 4)     # two more 3x3 at jump 2, then s2
    assert windows["conv6"][0].span(0, 32) == (0, 10) and windows["conv6"][0].span(7, 32) == (19, 32)
    assert windows["global_pool"] is None or windows["global_pool"][0].size >= 32


def test_receptive_windows_follow_each_bottom_of_a_two_bottom_convolution():
    net = Net("""name: "two"
layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 8 dim: 8 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pooled"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "near" type: "Convolution" bottom: "data" top: "near"
  convolution_param { num_output: 2 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "conv" type: "Convolution" bottom: "pooled" bottom: "near" top: "a" top: "b"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }""",
              TEST, seed=0)
    windows = receptive_windows(net)
    assert windows["a"][0] == Window(0, 6, 2)        # 3x3 over the 2x2 stride-2 pool
    assert windows["b"][0] == Window(0, 7, 1)        # 3x3 over the 5x5 conv


def test_receptive_window_bounds_the_reconstruction(images):
    """Every input position a conv2 unit's backprop reaches lies inside its window."""
    net = Net(CHAIN, TEST, seed=3)
    window = receptive_windows(net)["conv2"]
    signal = reconstruct(net, "conv2", images, "deconvnet", [(0, 1, 2), (0, 1, 2)])
    rows, cols = window[0].span(1, 6), window[1].span(2, 6)
    inside = torch.zeros(6, 6, dtype=torch.bool)
    inside[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert signal[:, :, inside].abs().sum() > 0 and not signal[:, :, ~inside].any()


def test_top_units_are_the_true_top_k():
    net = Net(CHAIN, TEST, seed=3)
    data = np.random.RandomState(0).randn(23, 2, 6, 6).astype(np.float32)
    data[17] = data[4]                                 # a tie: the earlier image ranks first
    found = top_units(net, "conv2", data, [3, 0], k=5, batch_size=4, progress=False)
    acts = activations(net, "conv2", torch.from_numpy(data))
    for row, f in enumerate([3, 0]):
        best = acts[:, f].flatten(1).max(1).values
        order = sorted(range(len(data)), key=lambda i: (-float(best[i]), i))[:5]
        assert found.images[row].tolist() == order
        torch.testing.assert_close(found.values[row], best[order])
        for i, (y, x) in zip(order, found.positions[row].tolist()):
            assert acts[i, f, y, x] == best[i]
    tied = top_units(net, "conv2", data, [0], k=23, batch_size=5, progress=False).images[0].tolist()
    assert tied.index(4) == tied.index(17) - 1
    data.setflags(write=False)      # the harness's memory-mapped images: no torch warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = top_units(net, "conv2", data, [3, 0], k=5, batch_size=4, progress=False)
    assert torch.equal(again.images, found.images)


# Concat of two strides, a 4-d blob after an InnerProduct, a non-square kernel
BRANCHES = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 1 kernel_size: 1 stride: 2 weight_filler { type: "gaussian" } } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 1 kernel_size: 5 weight_filler { type: "gaussian" } } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 16 weight_filler { type: "gaussian" } } }
layer { name: "grid" type: "Reshape" bottom: "ip" top: "grid" reshape_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "g" type: "Convolution" bottom: "grid" top: "g" convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "gaussian" } } }
layer { name: "mix" type: "Eltwise" bottom: "grid" bottom: "a" top: "mix" }
layer { name: "tall" type: "Convolution" bottom: "data" top: "tall" convolution_param { num_output: 1 kernel_h: 3 kernel_w: 1 pad_h: 1 weight_filler { type: "gaussian" } } }
layer { name: "rt" type: "ReLU" bottom: "tall" top: "rt" }
"""


def test_receptive_windows_of_branches_strides_and_non_square_kernels():
    windows = receptive_windows(Net(BRANCHES, TEST, seed=0))
    assert windows["cat"] is None            # jump 2 and jump 1 side by side: no one window
    assert windows["g"] is None and windows["mix"] is None   # after an InnerProduct: whole input
    assert windows["rt"] == (Window(-1, 3, 1), Window(0, 1, 1))


STRIDE_HW = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2"
  convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 2
    weight_filler { type: "gaussian" std: 0.5 } } }
"""


def test_switches_replace_a_conv_strided_with_stride_h_and_stride_w():
    net = Net(STRIDE_HW, TEST, seed=1)
    switched, notes = switched_net(net)
    assert notes == ["conv2: stride 1 + max-pool 3x3 s2 pad 0 (6->3)"]    # rows: 6 at stride 1
    assert switched.blobs["conv2"].shape == net.blobs["conv2"].shape


MEMORY = """
layer { name: "d" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 2 height: 6 width: 6 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_a_data_layer_net_takes_the_images_as_its_data_top():
    net = Net(MEMORY, TEST, seed=3)
    images = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    w, b = (p.data for p in net.params["conv1"])
    f = F.conv2d(images, w, b, padding=1)
    torch.testing.assert_close(activations(net, "conv1", images), F.relu(f))
    seed = torch.zeros_like(f)
    seed[0, 1, 2, 2] = seed[1, 2, 3, 3] = 1
    expected = conv2d_input(images.shape, w, seed * (f > 0), padding=1)
    got = reconstruct(net, "conv1", images, "backprop", [(1, 2, 2), (2, 3, 3)])
    torch.testing.assert_close(got, expected)


def test_a_blob_of_weights_alone_is_refused_not_drawn_as_zeros():
    """A Parameter's blob needs grad but not the image: the reconstruction was silently 0."""
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "relu" type: "ReLU" bottom: "p" top: "r" }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "r" top: "s" }""", TEST, seed=0)
    with torch.no_grad():
        net.params["p"][0].data.fill_(1)
    with pytest.raises(AllconvError, match="blob 'r' does not depend on the input blob 'data'"):
        reconstruct(net, "r", torch.ones(1, 1, 4, 4), "guided", [(0, 1, 1)])
    assert reconstruct(net, "s", torch.ones(1, 1, 4, 4), "guided", [(0, 1, 1)]).sum() == 1


def test_a_blob_computed_through_an_argmax_names_the_layer_without_a_backward():
    """ArgMax has no backward in Caffe, and propagate_down false stops a signal: the refusal
    said the blob did not depend on the input, which it does."""
    net = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 2 dim: 2 } } }
layer { name: "am" type: "ArgMax" bottom: "data" top: "am" argmax_param { axis: 1 } }
layer { name: "relu" type: "ReLU" bottom: "am" top: "r" }""", TEST)
    for blob in ("am", "r"):
        with pytest.raises(AllconvError, match=rf"^blob '{blob}' depends on the input blob 'data' "
                                               r"only through layer 'am' \(ArgMax\): Caffe's "
                                               r"ArgMax layer has no backward$"):
            reconstruct(net, blob, torch.rand(1, 3, 2, 2), "guided", [(0, 1, 1)])
    cut = Net("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c" propagate_down: false
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "r" }""", TEST)
    with pytest.raises(AllconvError, match=r"^blob 'r' depends on the input blob 'data' only "
                                           r"through layer 'c' \(Convolution\), whose "
                                           r"propagate_down is false for bottom 'data'$"):
        reconstruct(cut, "r", torch.ones(1, 1, 4, 4), "guided", [(0, 1, 1)])


def _signal_below(layer, inputs, signal):
    """What ``layer`` passes down to bottom 0 for the signal ``signal`` from above."""
    inputs = [x.clone().requires_grad_(i == 0) for i, x in enumerate(inputs)]
    top = layer(*inputs)[0]
    return torch.autograd.grad(top, inputs[0], signal)[0]


@pytest.mark.parametrize("text, shapes, phase, ignores", [
    ("type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 "
     "weight_filler { type: 'gaussian' } }", [(2, 3, 5, 5)], TEST, True),
    ("type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 2 stride: 2 "
     "weight_filler { type: 'gaussian' } }", [(2, 3, 3, 3)], TEST, True),
    ("type: 'InnerProduct' inner_product_param { num_output: 4 weight_filler { type: 'gaussian' } }",
     [(2, 3, 2, 2)], TEST, True),
    ("type: 'ReLU' relu_param { negative_slope: 0.1 }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Dropout'", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Pooling' pooling_param { pool: AVE kernel_size: 2 }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 }", [(2, 3, 4, 4)], TEST, False),
    ("type: 'Eltwise' eltwise_param { operation: SUM coeff: 2 coeff: -1 }",
     [(2, 3, 4, 4)] * 2, TEST, True),
    ("type: 'Eltwise' eltwise_param { operation: PROD }", [(2, 3, 4, 4)] * 2, TEST, False),
    ("type: 'Scale' scale_param { filler { type: 'gaussian' } }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Scale'", [(2, 3, 4, 4), (3,)], TEST, False),
    ("type: 'Bias' bias_param { filler { type: 'gaussian' } }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Power' power_param { power: 1 scale: 3 shift: 1 }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Power' power_param { power: 2 }", [(2, 3, 4, 4)], TEST, False),
    ("type: 'BatchNorm'", [(2, 3, 4, 4)], TEST, True),
    ("type: 'BatchNorm'", [(2, 3, 4, 4)], pb.TRAIN, False),
    ("type: 'Flatten'", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Tile' tile_param { tiles: 2 }", [(2, 3, 4, 4)], TEST, True),
    ("type: 'Crop' crop_param { offset: 1 }", [(2, 3, 4, 4), (2, 3, 2, 2)], TEST, True),
    ("type: 'LRN'", [(2, 3, 4, 4)], TEST, False),
    ("type: 'Sigmoid'", [(2, 3, 4, 4)], TEST, False),
])
def test_a_layer_that_says_its_backward_ignores_the_input_passes_any_inputs_signal_alike(
        text, shapes, phase, ignores):
    """`visualize filters` draws from the blob alone through such layers (the claim was a list
    of type names in the reconstruction package; each layer holds it now)."""
    bottoms = " ".join(f"bottom: 'b{i}'" for i in range(len(shapes)))
    layer = build(f"name: 'l' {text} {bottoms} top: 't'", *shapes, phase=phase)
    if layer.type_name == "ReLU":
        layer.rule = "deconvnet"
    assert backward_ignores_input(layer) is ignores
    first, second = ([torch.randn(s, generator=torch.Generator().manual_seed(seed)) * 2
                      for s in shapes] for seed in (1, 2))
    signal = torch.randn(layer(*first)[0].shape, generator=torch.Generator().manual_seed(3))
    same = torch.equal(_signal_below(layer, first, signal), _signal_below(layer, second, signal))
    assert same is ignores


CONV = """
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 2 dim: {h} dim: {w} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {stride}
    weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
"""


def _net(h=6, w=6, stride="stride: 2", rest=""):
    return Net(CONV.format(h=h, w=w, stride=stride) + rest, TEST, seed=3)


def test_a_relu_that_is_not_in_place_stays_after_the_pool():
    """Only a ReLU in place on the strided conv's top moves before the pool; one writing its
    own top reads the pool's, so its blob is there, of the shape it had."""
    net = _net(rest='layer { name: "relu" type: "ReLU" bottom: "conv1" top: "r1" }\n')
    switched, notes = switched_net(net)
    assert notes == ["conv1: stride 1 + max-pool 3x3 s2 pad 0 (6->3)"]
    for name, blob in net.blobs.items():
        assert switched.blobs[name].shape == blob.shape, name
    assert switched.layer_names == ["data", "conv1", "conv1_switches", "relu"]
    assert (switched.forward()["r1"] >= 0).all()


def test_each_axis_gets_the_pad_that_keeps_its_size():
    """8 x 7: rows 8 at stride 1 take pad 0 to 4, columns 7 pad 1 to 4 (the strided conv's
    4 x 4)."""
    net = _net(h=8, w=7)
    switched, _ = switched_net(net)
    assert switched.blobs["conv1"].shape == net.blobs["conv1"].shape == (1, 3, 4, 4)
    pool = switched.layer_dict["conv1_switches"].param.pooling_param
    assert (pool.pad_h, pool.pad_w) == (0, 1)


def test_a_conv_strided_on_one_axis_only_is_kept():
    """stride_h 2, stride_w 1: no stride-2 pool keeps its columns, so it stays as it is; the
    stride-2 conv after it is replaced."""
    net = _net(h=8, w=8, stride="stride_h: 2 stride_w: 1", rest="""
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" std: 0.5 } } }
""")
    switched, notes = switched_net(net)
    assert [note.split(":")[0] for note in notes] == ["conv2"]
    assert switched.blobs["conv1"].shape == net.blobs["conv1"].shape == (1, 3, 4, 8)
    assert switched.blobs["conv2"].shape == net.blobs["conv2"].shape


def test_a_net_without_a_stride_two_conv_has_no_switches():
    with pytest.raises(AllconvError, match="has no stride-2 convolution to replace"):
        switched_net(_net(stride=""))
