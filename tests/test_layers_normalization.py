"""Normalisation and affine layers (BatchNorm, Scale, Bias, MVN, PReLU) against Caffe's rules:
defaults from caffe.proto, BatchNorm's statistics through the solver, snapshots and
torch.compile, Caffe's MVN backward, and bad parameters as one line naming layer and field.
Real Caffe's values are in tests/fixtures (test_caffe_fixtures.py)."""
import numpy as np
import pytest
import torch
from google.protobuf import text_format

from runtime.errors import AllconvError
from runtime.net import Net
from runtime.proto import pb
from runtime.solver import SGDSolver
from layer_kit import build, rand

TRAIN, TEST = 0, 1


BN = "name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y' {}"


# ---------------------------------------------------------------------------- BatchNorm

def test_batchnorm_global_stats_default_follows_the_phase():
    assert build(BN.format(""), (2, 3), phase=TEST).use_global_stats
    assert not build(BN.format(""), (2, 3), phase=TRAIN).use_global_stats
    forced = "batch_norm_param { use_global_stats: true }"
    assert build(BN.format(forced), (2, 3), phase=TRAIN).use_global_stats


def test_batchnorm_blobs_are_zero_and_never_learned():
    layer = build(BN.format("param { lr_mult: 0 } param { lr_mult: 0 decay_mult: 0 }"),
                  (2, 3, 4))
    assert [tuple(b.shape) for b in layer.blobs] == [(3,), (3,), (1,)]
    assert all(torch.count_nonzero(b) == 0 for b in layer.blobs)
    assert [b.lr_mult for b in layer.blobs] == [0, 0, 0]
    assert [b.decay_mult for b in layer.blobs] == [1, 0, 1]


def test_batchnorm_train_forward_normalizes_and_updates_the_blobs():
    x = rand(4, 3, 2, 5) * 3 + 1
    layer = build(BN.format("batch_norm_param { moving_average_fraction: 0.5 eps: 0.01 }"),
                  x.shape, phase=TRAIN)
    start = [b.detach().clone() + 0.25 for b in layer.blobs]
    with torch.no_grad():
        for b, v in zip(layer.blobs, start):
            b.copy_(v)
    y = layer(x)[0]
    mean = x.mean((0, 2, 3))
    var = x.var((0, 2, 3), unbiased=False)
    want = (x - mean[:, None, None]) / torch.sqrt(var + 0.01)[:, None, None]
    torch.testing.assert_close(y, want)
    m = 4 * 2 * 5
    torch.testing.assert_close(layer.blobs[2].detach(), start[2] * 0.5 + 1)
    torch.testing.assert_close(layer.blobs[0].detach(), mean + 0.5 * start[0])
    torch.testing.assert_close(layer.blobs[1].detach(), var * m / (m - 1) + 0.5 * start[1])


def test_batchnorm_global_stats_divide_by_s_and_s_zero_gives_zero():
    x = rand(2, 3, 4)
    layer = build(BN.format("batch_norm_param { eps: 0.1 }"), x.shape)
    with torch.no_grad():
        layer.blobs[0].copy_(torch.tensor([2., 4., 6.]))
        layer.blobs[1].copy_(torch.tensor([4., 8., 12.]))
        layer.blobs[2].fill_(2)
    want = (x - torch.tensor([1., 2., 3.])[:, None]) / torch.sqrt(
        torch.tensor([2., 4., 6.]) + 0.1)[:, None]
    torch.testing.assert_close(layer(x)[0], want)
    with torch.no_grad():
        layer.blobs[2].zero_()
    torch.testing.assert_close(layer(x)[0], x / torch.sqrt(torch.tensor(0.1)))


def test_batchnorm_m_of_one_takes_no_bias_correction():
    layer = build(BN.format("batch_norm_param { moving_average_fraction: 0 }"), (1, 2),
                  phase=TRAIN)
    layer(torch.tensor([[3., -1.]]))
    torch.testing.assert_close(layer.blobs[0].detach(), torch.tensor([3., -1.]))
    torch.testing.assert_close(layer.blobs[1].detach(), torch.zeros(2))


@pytest.mark.parametrize("text,shape,match", [
    (BN.format("param { lr_mult: 0 } param { lr_mult: 1 }"), (2, 3),
     r"param\[1\].lr_mult is 1: BatchNorm's statistics are not learned"),
    (BN.format("param { decay_mult: 0 }"), (2, 3), r"param\[0\].lr_mult is 1"),
    (BN.format("param { lr_mult: 0 } " * 4), (2, 3),
     r"4 `param` entries but the layer has 3 learnable blob"),
    (BN.format(""), (5,), r"bottom shape \(5,\) has no channel axis"),
])
def test_batchnorm_errors_name_layer_and_field(text, shape, match):
    with pytest.raises(AllconvError, match=r"^layer 'bn' \(BatchNorm\): " + match):
        build(text, shape)


BN_NET = """
name: "bn_net"
layer {{ name: "data" type: "{source}" top: "data" top: "label" {source_param} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 4 bias_term: false weight_filler {{ type: "msra" }} }} }}
layer {{ name: "bn" type: "BatchNorm" bottom: "ip1" top: "ip1"
  batch_norm_param {{ moving_average_fraction: 0.9 }} }}
layer {{ name: "scale" type: "Scale" bottom: "ip1" top: "ip1" scale_param {{ bias_term: true }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 3 weight_filler {{ type: "msra" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""
INPUT = dict(source="Input", source_param="input_param { shape { dim: 4 dim: 3 } "
                                           "shape { dim: 4 } }")


def test_batchnorm_blob_count_of_a_caffemodel_is_checked(tmp_path):
    net = Net(BN_NET.format(**INPUT), TEST, seed=0)
    net.save(tmp_path / "ok.caffemodel")
    from runtime.caffemodel import read_weights, write_weights
    weights = read_weights(tmp_path / "ok.caffemodel")
    weights["bn"] = weights["bn"][:2]
    write_weights(tmp_path / "bad.caffemodel",
                  [(name, "", blobs) for name, blobs in weights.items()])
    with pytest.raises(AllconvError, match=r"layer 'bn' has 2 blob\(s\) in the file but 3"):
        Net(BN_NET.format(**INPUT), TEST, weights=tmp_path / "bad.caffemodel")


def _batches(n):
    g = np.random.default_rng(5)
    return [(torch.from_numpy(g.standard_normal((4, 3)).astype(np.float32) * 2 + 1),
             torch.from_numpy(g.integers(0, 3, 4).astype(np.float32))) for _ in range(n)]


class Feed:
    sample_shape = (3,)

    def __init__(self, batches):
        self.batches, self.pos = batches, 0

    def __call__(self, batch_size):
        self.pos += 1
        return self.batches[(self.pos - 1) % len(self.batches)]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


def _solver(tmp_path, feed):
    p = pb.SolverParameter(base_lr=0.1, lr_policy="fixed", momentum=0.9, weight_decay=0.01,
                           max_iter=100, random_seed=3, snapshot_after_train=False,
                           snapshot_prefix=str(tmp_path / "bn"))
    text_format.Merge(BN_NET.format(source="Data", source_param="data_param { batch_size: 4 }"),
                      p.net_param)
    return SGDSolver(p, train_feed=feed)


def test_batchnorm_statistics_train_not_learn_and_resume_exactly(tmp_path):
    batches = _batches(5)
    full = _solver(tmp_path, Feed(batches))
    full.step(5)
    bn = full.net.layers[full.net.layer_names.index("bn")]
    assert bn.blobs[2].item() == pytest.approx(sum(0.9 ** k for k in range(5)))
    # the solver never changes them: their diffs hold their update, zero (as in Caffe)
    assert all(p.grad is None or not p.grad.any() for p in bn.blobs)

    first = _solver(tmp_path, Feed(batches))
    first.step(3)
    _, state_path = first.snapshot()
    state = pb.SolverState()
    state.ParseFromString(open(state_path, "rb").read())
    assert len(state.history) == len(first.net.learnable_params) == 1 + 3 + 2 + 2
    resumed = _solver(tmp_path, Feed(batches))
    resumed.restore(state_path)
    resumed.step(2)
    for a, b in zip(resumed.net.learnable_params, full.net.learnable_params):
        assert torch.equal(a.detach(), b.detach())
    for a, b in zip(resumed.history, full.history):
        assert torch.equal(a, b)


def test_batchnorm_update_under_torch_compile_equals_eager():
    nets = [Net(BN_NET.format(**INPUT), TRAIN, seed=4) for _ in range(2)]
    compiled = torch.compile(nets[1].loss, backend="aot_eager")
    for data, label in _batches(3):
        for loss in (nets[0].loss, compiled):
            loss(data=data, label=label).backward()
    for eager, fast in zip(nets[0].learnable_params, nets[1].learnable_params):
        torch.testing.assert_close(fast.detach(), eager.detach(), rtol=1e-6, atol=1e-7)
    bn = nets[1].layers[nets[1].layer_names.index("bn")]
    assert bn.blobs[2].item() == pytest.approx(1 + 0.9 + 0.81)


def test_batchnorm_blobs_get_no_gradient_under_force_backward():
    net = Net("force_backward: true\n" + BN_NET.format(**INPUT), TEST, seed=0)
    net.params["bn"][1].data.fill_(100)
    net.params["bn"][2].data.fill_(1)
    data, label = _batches(1)[0]
    net.forward(data=data, label=label)
    net.backward()
    assert all(torch.count_nonzero(v.diff) == 0 for v in net.params["bn"])
    assert torch.count_nonzero(net.blobs["data"].diff) > 0


# ---------------------------------------------------------------------------- Scale, Bias

SCALE = "name: 'scale' type: 'Scale' bottom: 'x' {} top: 'y' scale_param {{ {} }}"
BIAS = "name: 'bias' type: 'Bias' bottom: 'x' {} top: 'y' bias_param {{ {} }}"


def test_scale_default_fillers_are_one_and_zero():
    layer = build(SCALE.format("", "bias_term: true"), (2, 3, 4))
    assert [tuple(b.shape) for b in layer.blobs] == [(3,), (3,)]
    assert torch.all(layer.blobs[0] == 1) and torch.all(layer.blobs[1] == 0)
    given = build(SCALE.format("", "filler { value: 2 } bias_term: true bias_filler { value: 3 }"),
                  (2, 3, 4))
    assert torch.all(given.blobs[0] == 2) and torch.all(given.blobs[1] == 3)
    assert torch.all(build(BIAS.format("", ""), (2, 3)).blobs[0] == 0)


def test_scale_axis_num_axes_and_gradients():
    x = rand(2, 3, 4, 5).requires_grad_()
    layer = build(SCALE.format("", "axis: 2 num_axes: -1 bias_term: true "
                                   "filler { type: 'gaussian' }"), x.shape)
    assert tuple(layer.blobs[0].shape) == (4, 5)
    y = layer(x)[0]
    torch.testing.assert_close(y, x * layer.blobs[0] + layer.blobs[1])
    y.sum().backward()
    torch.testing.assert_close(layer.blobs[0].grad, x.detach().sum((0, 1)))
    torch.testing.assert_close(layer.blobs[1].grad, torch.full((4, 5), 6.0))


def test_scale_second_bottom_ignores_num_axes_and_filler():
    x, s = rand(2, 3, 4), rand(2, 3, seed=1).requires_grad_()
    layer = build(SCALE.format("bottom: 's'", "axis: 0 num_axes: 7 filler { type: 'x' } "
                                              "bias_term: true"), x.shape, s.shape)
    assert [tuple(b.shape) for b in layer.blobs] == [(2, 3)]       # the bias alone
    y = layer(x, s)[0]
    torch.testing.assert_close(y, x * s[:, :, None])
    y.sum().backward()
    torch.testing.assert_close(s.grad, x.sum(2))
    scalar = build(SCALE.format("bottom: 's'", ""), (2, 3), ())
    torch.testing.assert_close(scalar(x[:, :, 0], torch.tensor(3.))[0], 3 * x[:, :, 0])


@pytest.mark.parametrize("text,shapes,match", [
    (SCALE.format("", "num_axes: -2"), [(2, 3)], r"scale_param.num_axes -2 must be >= 0"),
    (SCALE.format("", "axis: 1 num_axes: 3"), [(2, 3)],
     r"scale_param.num_axes 3 from axis 1 runs past the 2-axis bottom"),
    (SCALE.format("", "axis: 4"), [(2, 3)], r"axis 4 is out of range for a 2-axis blob"),
    (SCALE.format("bottom: 's'", ""), [(2, 3, 4), (4,)],
     r"scale shape \(4,\) does not match bottom shape \(2, 3, 4\) from axis 1"),
    (BIAS.format("bottom: 'b'", "axis: 0"), [(2, 3), (3,)],
     r"bias shape \(3,\) does not match bottom shape \(2, 3\) from axis 0"),
])
def test_scale_bias_errors_name_layer_and_field(text, shapes, match):
    with pytest.raises(AllconvError, match=r"^layer '(scale|bias)' \((Scale|Bias)\): " + match):
        build(text, *shapes)


# ---------------------------------------------------------------------------- MVN

def test_mvn_top_is_4d_and_normalizes_each_plane_or_sample():
    x = rand(3, 4) * 2 + 5
    layer = build("name: 'mvn' type: 'MVN' bottom: 'x' top: 'y'", x.shape)
    assert layer.top_shapes == [(3, 4, 1, 1)]
    torch.testing.assert_close(layer(x)[0], torch.zeros(3, 4, 1, 1))   # 1-element planes
    across = build("name: 'mvn' type: 'MVN' bottom: 'x' top: 'y' mvn_param { "
                   "across_channels: true eps: 0.5 }", x.shape)
    centred = x - x.mean(1, keepdim=True)
    std = centred.pow(2).mean(1, keepdim=True).sqrt() + 0.5
    torch.testing.assert_close(across(x)[0].reshape(3, 4), centred / std)


def test_mvn_backward_is_caffes_not_the_exact_gradient():
    x = rand(2, 6, seed=3).requires_grad_()
    layer = build("name: 'mvn' type: 'MVN' bottom: 'x' top: 'y' mvn_param { "
                  "across_channels: true eps: 0.5 }", x.shape)
    dy = rand(2, 6, 1, 1, seed=4)
    y = layer(x)[0]
    y.backward(dy)
    y2, g = y.detach().reshape(2, 6), dy.reshape(2, 6)
    std = (x.detach() - x.detach().mean(1, keepdim=True)).pow(2).mean(1, keepdim=True).sqrt() + 0.5
    caffe = (g - g.mean(1, keepdim=True) - (g * y2).mean(1, keepdim=True) * y2) / std
    torch.testing.assert_close(x.grad, caffe)
    exact = torch.autograd.functional.vjp(
        lambda v: (v - v.mean(1, keepdim=True)) / ((v - v.mean(1, keepdim=True)).pow(2)
                                                    .mean(1, keepdim=True).sqrt() + 0.5),
        x.detach(), g)[1]
    assert (exact - caffe).abs().max() > 1e-2


def _caffe_normalization_backward(dy, y, std, axes):
    """Caffe's order in float32 numpy: the sums, dy + (−1/m)·(y·Σ(dy·y) + Σdy), then ÷ std."""
    f = np.float32
    m = y.size // std.size
    together = y * (dy * y).sum(axes, keepdims=True, dtype=f) + dy.sum(axes, keepdims=True,
                                                                       dtype=f)
    return (dy + f(-1.0 / m) * together) / std


@pytest.mark.parametrize("text, shape, axes", [
    ("type: 'MVN'", (5, 4, 1, 2), (2, 3)),
    ("type: 'BatchNorm' batch_norm_param { use_global_stats: false }", (2, 5, 1), (0, 2)),
])
def test_two_values_per_group_take_caffes_backward_bit_for_bit(text, shape, axes):
    """With two values per normalised group y = ±(1 − a few ulps) and the gradient is all
    rounding, so only Caffe's order of operations gives Caffe's bits; a second pass through
    the centring (MVN) or autograd's chain (BatchNorm) rounds elsewhere (random_layer_check)."""
    x, dy = rand(*shape, seed=8).requires_grad_(), rand(*shape, seed=9)
    y = build(f"name: 'n' {text} bottom: 'x' top: 'y'", shape, phase=TRAIN)(x)[0]
    y.backward(dy)
    c = x.detach().numpy() - x.detach().numpy().mean(axes, keepdims=True)
    var = (c * c).mean(axes, keepdims=True)
    std = np.sqrt(var) + np.float32(1e-9) if "MVN" in text else np.sqrt(var + np.float32(1e-5))
    expected = _caffe_normalization_backward(dy.numpy(), y.detach().numpy(), std, axes)
    assert np.array_equal(x.grad.numpy(), expected)


def test_mvn_refuses_5d():
    with pytest.raises(AllconvError, match=r"^layer 'mvn' \(MVN\): bottom has 5 axes .* more than the 4 of "
                                           "Caffe's legacy num, channels, height, width$"):
        build("name: 'mvn' type: 'MVN' bottom: 'x' top: 'y'", (1, 2, 3, 4, 5))


# ---------------------------------------------------------------------------- PReLU

def test_prelu_default_slope_and_gradient_at_zero():
    layer = build("name: 'p' type: 'PReLU' bottom: 'x' top: 'y'", (1, 2, 3))
    assert torch.all(layer.blobs[0] == 0.25) and tuple(layer.blobs[0].shape) == (2,)
    x = torch.tensor([[[-2., 0., 3.], [-1., 1., 0.]]], requires_grad=True)
    y = layer(x)[0]
    torch.testing.assert_close(y, torch.tensor([[[-0.5, 0., 3.], [-0.25, 1., 0.]]]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[[0.25, 0.25, 1.], [0.25, 1., 0.25]]]))
    torch.testing.assert_close(layer.blobs[0].grad, torch.tensor([-2., -1.]))
    shared = build("name: 'p' type: 'PReLU' bottom: 'x' top: 'y' prelu_param { "
                   "channel_shared: true filler { value: 0.5 } }", (1, 2, 3))
    assert tuple(shared.blobs[0].shape) == () and float(shared.blobs[0].detach()) == 0.5


@pytest.mark.parametrize("shape", [(4,), (1, 2, 3, 4, 5)])
def test_prelu_axes_errors(shape):
    with pytest.raises(AllconvError, match=r"^layer 'p' \(PReLU\): bottom shape .* needs 2 to 4"):
        build("name: 'p' type: 'PReLU' bottom: 'x' top: 'y'", shape)


def test_mvn_without_variance_passes_caffes_gradient_over_a_constant_row():
    """dy − mean(dy) per row, whatever the values (a mean taken as a constant row's first value
    sent that row's whole mean gradient to its first element)."""
    x = torch.full((1, 2, 1, 3), 0.5).requires_grad_()
    dy = rand(1, 2, 1, 3, seed=3)
    build("name: 'mvn' type: 'MVN' bottom: 'x' top: 'y' mvn_param { normalize_variance: false }",
          (1, 2, 1, 3))(x)[0].backward(dy)
    torch.testing.assert_close(x.grad, dy - dy.mean(3, keepdim=True), rtol=0, atol=1e-7)
