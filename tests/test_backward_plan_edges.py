"""Which layers run a backward, and what their diffs hold (runtime/backward_plan.py,
runtime/diff_memory.py; a mutation round). Each expected value is real Caffe's: the pycaffe
scripts in tools/caffe_reference/module_edges/ (under_loss_two_tops.py, lstm_frozen_unreached.py,
lstm_shared_frozen.py, propagate_down_unneeded.py, scale_frozen_scratch.py; their .out files)
build the same nets with the same values."""
import numpy as np
import torch

from runtime import TEST, TRAIN, Net


def _set(net, blobs=(), params=()):
    for name, value in blobs:
        net.blobs[name].data[...] = torch.as_tensor(np.asarray(value, np.float32))
    for (layer, i), value in params:
        p = net.params[layer][i].data
        p[...] = torch.as_tensor(np.asarray(value, np.float32).reshape(p.shape))


def _spread(net, layer):
    return [((layer, i), np.linspace(-1, 1, p.data.numel())) for i, p in enumerate(net.params[layer])]


# pw reaches no loss; acc's per-class top is read only by pw, its other top by nothing
NO_LOSS_BELOW = """
layer { name: "in" type: "Input" top: "x" top: "label" top: "t"
  input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } shape { dim: 2 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 4 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" top: "per_class" }
layer { name: "pw" type: "Power" bottom: "per_class" top: "pw" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "t" top: "loss" }
"""


def test_a_layer_read_only_by_one_reaching_no_loss_runs_no_backward():
    """Caffe's Init: a layer that contributes no loss (pw) puts nothing under the loss, so the
    Accuracy below it contributes none either and runs no Backward (which would abort: ip's
    diff is needed); Backward runs through (under_loss_two_tops.py gives ip's weight diff)."""
    net = Net(NO_LOSS_BELOW, TRAIN, seed=0)
    need = dict(zip(net.layer_names, net.layer_need_backward()))
    assert not need["acc"] and not need["pw"] and need["ip"] and need["loss"]
    _set(net, [("x", np.arange(6).reshape(2, 3) / 5), ("label", [1, 3]), ("t", np.ones((2, 4)))])
    net.forward()
    net.backward()
    np.testing.assert_allclose(net.params["ip"][0].diff.flatten().numpy(),
                               [0.06, 0.01, -0.04] * 4, atol=1e-6)


FROZEN_LSTM = """
layer { name: "in" type: "Input" top: "x" top: "cont" top: "t"
  input_param { shape { dim: 2 dim: 1 dim: 3 } shape { dim: 2 dim: 1 } shape { dim: 2 dim: 2 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "h" top: "ip" inner_product_param { num_output: 2 axis: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "fl" type: "Reshape" bottom: "ip" top: "flat" reshape_param { shape { dim: 2 dim: 2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "flat" bottom: "t" top: "loss" }
"""


def test_a_recurrent_layer_that_runs_no_backward_leaves_its_blobs_diffs_alone():
    """An LSTM with lr_mult 0 on all its blobs, on inputs needing no diff, runs no Backward:
    its blobs' diffs and its top's stay 0 (lstm_frozen_unreached.py; Caffe's InnerProduct
    weight diff above it sums to 0.40621680 in |.|)."""
    net = Net(FROZEN_LSTM, TRAIN, seed=0)
    _set(net, [("x", np.arange(6).reshape(2, 1, 3) / 5), ("cont", [[0], [1]]), ("t", np.ones((2, 2)))],
         _spread(net, "lstm") + [(("ip", 0), [[0.5, -1.0], [2.0, 0.25]]), (("ip", 1), [0.0, 0.0])])
    net.forward()
    net.backward()
    assert all(not p.diff.any() for p in net.params["lstm"]) and not net.blobs["h"].diff.any()
    assert abs(float(net.params["ip"][0].diff.abs().sum()) - 0.4062168002128601) < 1e-6


SHARED_FROZEN = """
layer { name: "in" type: "Input" top: "x" top: "cont"
  input_param { shape { dim: 2 dim: 1 dim: 3 } shape { dim: 2 dim: 1 } } }
layer { name: "ip0" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 3 axis: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "lstmA" type: "LSTM" bottom: "x" bottom: "cont" top: "ha"
  param { name: "w1" } param { name: "w2" } param { name: "w3" }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "lstmB" type: "LSTM" bottom: "y" bottom: "cont" top: "hb"
  param { name: "w1" lr_mult: 0 } param { name: "w2" lr_mult: 0 } param { name: "w3" lr_mult: 0 }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ha" bottom: "hb" top: "loss" }
"""


def test_a_frozen_use_of_a_shared_blob_by_a_recurrent_layer_adds_to_its_diff():
    """lstmB shares lstmA's blobs with lr_mult 0 but runs Backward (its input y needs a diff),
    and Caffe's recurrent Backward writes every param diff of its unrolled net: the shared
    diffs hold lstmB's part too (lstm_shared_frozen.py; TEST phase, where Caffe's recurrent
    layer re-shares its unrolled blobs each forward)."""
    net = Net(SHARED_FROZEN, TEST, seed=0)
    _set(net, [("x", np.arange(6).reshape(2, 1, 3) / 5), ("cont", [[0], [1]])],
         _spread(net, "lstmA") + [(("ip0", 0), [[0.5, -1.0, 0.3], [2.0, 0.25, -0.7], [0.1, 0.9, -0.4]]),
                                  (("ip0", 1), [0.0, 0.1, 0.2])])
    net.forward()
    net.backward()
    caffe = [[-0.00053, 0.000316, 9.9e-05, -0.001838], [0.000706, 0.000974, 0.00014, -1.9e-05],
             [6.3e-05, 9.8e-05, 0.000121, 0.000172]]
    for p, theirs in zip(net.params["lstmA"], caffe):
        np.testing.assert_allclose(p.diff.flatten()[:4].double().numpy(), theirs, atol=2e-6)
    assert abs(float(net.params["ip0"][0].diff.abs().sum()) - 0.016778184100985527) < 1e-7


UNNEEDED_PROPAGATE_DOWN = """
layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
layer { name: "relu" type: "ReLU" bottom: "x" top: "r" propagate_down: true }
layer { name: "ip" type: "InnerProduct" bottom: "t" top: "y" inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "r" bottom: "y" top: "loss" }
"""


def test_propagate_down_on_a_layer_that_needs_no_backward_starts_no_diff():
    """Caffe's layer_need_backward comes from the bottoms' blob need, not propagate_down: the
    ReLU (x needs nothing, no learnable blob) runs no Backward though the loss above it does
    (for y): x's and r's diffs stay 0 (propagate_down_unneeded.py)."""
    net = Net(UNNEEDED_PROPAGATE_DOWN, TRAIN, seed=0)
    _set(net, [("x", np.arange(6).reshape(2, 3) - 2.0), ("t", np.ones((2, 3)))])
    net.forward()
    net.backward()
    assert not net.blobs["x"].diff.any() and not net.blobs["r"].diff.any()
    assert net.blobs["y"].diff.flatten().tolist() == [0.75, 0.75, 0.75, 0.25, -0.25, -0.75]


SCALE_FROZEN_SHARE = """
layer { name: "in" type: "Input" top: "x1" top: "x2" top: "t"
  input_param { shape { dim: 2 dim: 3 dim: 2 } shape { dim: 2 dim: 4 } shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "sA" type: "Scale" bottom: "x1" top: "a" param { name: "f" }
  scale_param { axis: 1 num_axes: 1 filler { type: "constant" value: 1.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x2" top: "c0" inner_product_param { num_output: 6 weight_filler { type: "constant" value: 0.25 } } }
layer { name: "rs" type: "Reshape" bottom: "c0" top: "c" reshape_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "sB" type: "Scale" bottom: "c" top: "b" param { name: "f" lr_mult: 0 } propagate_down: false
  scale_param { axis: 1 num_axes: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "ab" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ab" bottom: "t" top: "loss" }
"""


def test_a_scale_reading_a_shared_factor_frozen_leaves_no_scratch_in_its_bottoms_diff():
    """sB shares sA's factor with lr_mult 0 and propagates nothing to c: Caffe's Scale
    Backward computes no factor diff, so it uses no scratch in c's diff, which stays 0; the
    factor's diff is sA's part alone (scale_frozen_scratch.py)."""
    net = Net(SCALE_FROZEN_SHARE, TRAIN, seed=0)
    _set(net, [("x1", np.arange(12).reshape(2, 3, 2) / 4), ("x2", np.arange(8).reshape(2, 4) / 3 - 1),
               ("t", np.ones((2, 3, 2)))])
    net.forward()
    net.backward()
    assert not net.blobs["c"].diff.any() and not net.blobs["c0"].diff.any()
    np.testing.assert_allclose(net.params["sA"][0].diff.numpy(), [4.21875, 6.84375, 10.96875],
                               rtol=1e-6)
