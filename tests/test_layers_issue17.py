"""Issue 17's neuron, loss and other layers where real Caffe's fixtures cannot speak: Clip and
Swish (newer than the reference build), BVLC master's InfogainLoss and SigmoidCrossEntropyLoss
options (ignore_label, normalization, axis, H from a file), recurrent state carried across
forward passes, Caffe's gradient quirks, and bad parameters. The expected values are written
from Caffe master's formulas in numpy or plain torch ops, independently of the layers' code;
backward passes are checked with torch.autograd.gradcheck in float64 where the function is
smooth there."""
import functools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.caffemodel import array_to_blob, write_binary
from runtime.errors import AllconvError
from runtime.libm import powf, powx
from runtime.net import Net
from runtime.proto import pb
import layer_kit

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")


build = functools.partial(layer_kit.build, phase=pb.TRAIN)


def layer_text(type_, body="", bottoms=("x",), tops=("y",)):
    links = " ".join([f"bottom: '{b}'" for b in bottoms] + [f"top: '{t}'" for t in tops])
    return f"name: 'l' type: '{type_}' {links} {body}"


def grad_of(layer, *inputs, top_diff=None, which=0):
    """The gradient w.r.t. input ``which`` for a top diff (default: ones, or N(0,1) seeded)."""
    inputs = [t.clone().requires_grad_(i == which) for i, t in enumerate(inputs)]
    y = layer(*inputs)[0]
    y.backward(torch.ones_like(y) if top_diff is None else top_diff)
    return y.detach(), inputs[which].grad


# ---------------------------------------------------------------------------- Clip, Swish

@pytest.mark.parametrize("low,high", [(-0.5, 0.75), (0.5, -0.5), (0.0, 0.0)])
def test_clip_is_caffes_max_of_min(low, high):
    x = torch.tensor([-2.0, -0.5, -0.25, 0.0, 0.5, 0.75, 3.0])
    layer = build(layer_text("Clip", f"clip_param {{ min: {low} max: {high} }}"), x.shape)
    g = torch.randn(7, generator=torch.Generator().manual_seed(1))
    y, grad = grad_of(layer, x, top_diff=g)
    xs = x.numpy()
    np.testing.assert_array_equal(y.numpy(), np.maximum(low, np.minimum(xs, high)))
    # Caffe: top_diff · (min <= x <= max), both ends included; nothing when min > max
    np.testing.assert_array_equal(grad.numpy(), g.numpy() * ((xs >= low) & (xs <= high)))
    away = torch.tensor([-2.0, -0.3, 0.2, 0.6, 3.0], dtype=torch.float64)   # off the kinks
    assert torch.autograd.gradcheck(lambda t: layer(t)[0], away.requires_grad_())


def test_clip_of_nan_is_min_with_no_gradient():
    """Caffe's std::max(min, std::min(NaN, max)): std::min returns its first argument, NaN, and
    std::max then its first, min."""
    layer = build(layer_text("Clip", "clip_param { min: -0.5 max: 0.75 }"), (3,))
    y, grad = grad_of(layer, torch.tensor([float("nan"), 2.0, 0.25]), top_diff=torch.ones(3))
    assert y.tolist() == [-0.5, 0.75, 0.25] and grad.tolist() == [0.0, 0.0, 1.0]


def test_clip_needs_min_and_max():
    with pytest.raises(AllconvError, match="clip_param.min and clip_param.max are required"):
        build(layer_text("Clip", "clip_param { min: 1 }"), (2,))


@pytest.mark.parametrize("beta", [1.0, 0.5, -2.0])
def test_swish_forward_and_caffes_backward(beta):
    x = torch.linspace(-6, 6, 25)
    layer = build(layer_text("Swish", f"swish_param {{ beta: {beta} }}" if beta != 1 else ""),
                  x.shape)
    g = torch.randn(25, generator=torch.Generator().manual_seed(2))
    y, grad = grad_of(layer, x, top_diff=g)
    xs = x.double().numpy()
    s = 1 / (1 + np.exp(-beta * xs))
    np.testing.assert_allclose(y.numpy(), xs * s, rtol=1e-6, atol=1e-7)
    caffe = g.double().numpy() * (beta * xs * s + s * (1 - beta * xs * s))
    np.testing.assert_allclose(grad.numpy(), caffe, rtol=1e-5, atol=1e-6)
    assert torch.autograd.gradcheck(lambda t: layer(t)[0], x.double().requires_grad_())


# ---------------------------------------------------------------------------- neurons

def test_power_keeps_caffes_gradient_at_a_zero_base():
    """shift 0: Caffe's gradient is power·y/x, 0/0 at x = 0 (power 2 has its own formula)."""
    x = torch.tensor([0.0, 2.0])
    _, grad = grad_of(build(layer_text("Power", "power_param { power: 3 }"), (2,)), x)
    assert math.isnan(grad[0]) and grad[1] == pytest.approx(12.0)
    _, grad = grad_of(build(layer_text("Power", "power_param { power: 2 }"), (2,)), x)
    assert grad.tolist() == [0.0, 4.0]
    constant = build(layer_text("Power", "power_param { power: 0 scale: 3 }"), (2,))
    y = constant(x.clone().requires_grad_())[0]
    assert y.tolist() == [1.0, 1.0] and not y.requires_grad     # Caffe's diff: 0
    for body, value in (("power: 1 scale: 0 shift: 3", 3.0), ("power: -1 scale: 0 shift: 2", 0.5)):
        y = build(layer_text("Power", f"power_param {{ {body} }}"), (2,))(x)[0]
        assert y.tolist() == [value, value]                     # shift^power, for any power
    # shift 0: no shift is added, so −0 stays −0 and its reciprocal is −inf, as in Caffe
    y = build(layer_text("Power", "power_param { power: -1 }"), (2,))(torch.tensor([-0.0, 0.0]))[0]
    assert y.tolist() == [-math.inf, math.inf]


@pytest.mark.parametrize("exponent", [0.5, -0.5, 2, 3, -1, -2, 1.5, -1.5, 0])
def test_powx_keeps_c_pows_special_values(exponent):
    """Caffe's caffe_powx is C's pow (here the C library's powf itself): torch's sqrt and
    rsqrt for ±0.5 give NaN at −inf and the wrong zero or infinity at −0 (so does numpy's
    power)."""
    values = [-math.inf, -0.0, 0.0, math.inf, math.nan, -2.0, 4.0, 1e-30]
    got = powx(torch.tensor(values), exponent).numpy()
    c = np.array([powf(v, exponent) for v in values], np.float32)
    np.testing.assert_allclose(got, c, rtol=1e-6)
    assert (np.signbit(got) == np.signbit(c))[~np.isnan(c)].all()


def test_power_overflow_is_caffes_inf_not_nan():
    """y = x³ past float32's range is inf in Caffe's forward (powf), and so is its gradient
    3·y/x; the hand-written gradient's slope (inf) must not turn the forward value into NaN."""
    x = torch.tensor([1e30, -1e30, 2.0])
    y, grad = grad_of(build(layer_text("Power", "power_param { power: 3 }"), (3,)), x)
    assert y.tolist() == [math.inf, -math.inf, 8.0]
    assert grad.tolist() == [math.inf, math.inf, 12.0]
    y, grad = grad_of(build(layer_text("Power", "power_param { power: 3 shift: 1 }"), (3,)), x)
    assert y.tolist() == [math.inf, -math.inf, 27.0] and grad[2] == pytest.approx(27.0)


def test_exp_and_log_formulas_and_gradcheck():
    x = torch.linspace(0.2, 3, 9, dtype=torch.float64)
    exp = build(layer_text("Exp", "exp_param { base: 3 scale: 0.5 shift: -1 }"), x.shape)
    np.testing.assert_allclose(exp(x)[0].numpy(), 3.0 ** (0.5 * x.numpy() - 1), rtol=1e-6)
    log = build(layer_text("Log", "log_param { base: 2 scale: 3 shift: 0.5 }"), x.shape)
    # 1/ln 2 is Caffe's float32 constant, so a float64 input is within float32 of log2
    np.testing.assert_allclose(log(x)[0].numpy(), np.log2(3 * x.numpy() + 0.5), rtol=1e-7)
    for layer in (exp, log):
        assert torch.autograd.gradcheck(lambda t: layer(t)[0], x.clone().requires_grad_())


def test_bnll_is_caffes_two_branch_formula_far_out():
    x = torch.tensor([-100.0, -30.0, -1.0, 0.0, 1e-3, 1.0, 19.0, 21.0, 49.0, 51.0, 100.0])
    y, grad = grad_of(build(layer_text("BNLL"), x.shape), x)
    xs = x.double().numpy()
    caffe = np.where(xs > 0, xs + np.log1p(np.exp(-np.abs(xs))),
                     np.log1p(np.exp(np.minimum(xs, 0))))
    np.testing.assert_allclose(y.numpy(), caffe, rtol=1e-6, atol=1e-30)
    e = np.exp(np.minimum(xs, 50))
    np.testing.assert_allclose(grad.numpy(), e / (e + 1), rtol=1e-6, atol=1e-30)


def test_threshold_has_no_backward_like_caffe():
    layer = build(layer_text("Threshold", "threshold_param { threshold: 0.5 }"), (3,))
    x = torch.tensor([0.5, 0.6, -1.0], requires_grad=True)
    y = layer(x)[0]
    assert y.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(AllconvError, match="layer 'l' \\(Threshold\\): Caffe's Threshold layer "
                                           "has no backward"):
        y.sum().backward()


def test_absval_elu_gradients_at_zero():
    x = torch.tensor([-1.0, 0.0, 2.0])
    _, grad = grad_of(build(layer_text("AbsVal"), (3,)), x)
    assert grad.tolist() == [-1.0, 0.0, 1.0]                     # caffe_cpu_sign(0) = 0
    _, grad = grad_of(build(layer_text("ELU", "elu_param { alpha: 0.5 }"), (3,)), x)
    assert grad.tolist() == pytest.approx([0.5 * math.exp(-1), 0.5, 1.0])   # α + y at x <= 0


# ---------------------------------------------------------------------------- losses

def _sigmoid_ce(x, t, ignore, mode):
    """Caffe master's SigmoidCrossEntropyLoss forward and backward (numpy, float64)."""
    keep = np.ones_like(t, bool) if ignore is None else t.astype(int) != ignore
    per = -(x * (t - (x >= 0)) - np.log(1 + np.exp(x - 2 * x * (x >= 0))))
    n, count = x.shape[0], x.size
    norm = {"FULL": count, "VALID": keep.sum(), "BATCH_SIZE": n, "NONE": 1}[mode]
    norm = max(1.0, norm)
    grad = np.where(keep, 1 / (1 + np.exp(-x)) - t, 0) / norm
    return (per * keep).sum() / norm, grad


@pytest.mark.parametrize("spec,ignore,mode", [
    ("", None, "BATCH_SIZE"),                          # master's default, not VALID
    ("loss_param { ignore_label: -1 }", -1, "BATCH_SIZE"),
    ("loss_param { ignore_label: -1 normalization: VALID }", -1, "VALID"),
    ("loss_param { ignore_label: -1 normalization: FULL }", -1, "FULL"),
    ("loss_param { normalization: NONE }", None, "NONE"),
    ("loss_param { ignore_label: -1 normalize: true }", -1, "VALID"),
])
def test_sigmoid_cross_entropy_master_options(spec, ignore, mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 2)) * 3
    x[0, 0, 0] = 0.0                                  # Caffe's gradient at 0 is σ(0) − t
    t = rng.integers(0, 2, (3, 2, 2)).astype(float)
    t[0, 1, 0] = -1.0
    t[1, 0, 1] = 0.25                                 # soft targets count too
    layer = build(layer_text("SigmoidCrossEntropyLoss", spec, ("x", "t"), ("loss",)),
                  x.shape, t.shape)
    loss, grad = grad_of(layer, torch.tensor(x, dtype=torch.float32),
                         torch.tensor(t, dtype=torch.float32))
    want_loss, want_grad = _sigmoid_ce(x, t, ignore, mode)   # no ignore label: −1 counts
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-5, atol=1e-7)


def _infogain(scores, labels, h, axis, ignore, mode):
    """Caffe master's InfogainLoss (numpy, float64): loss and the gradient w.r.t. scores."""
    s = np.moveaxis(scores, axis, -1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    lab = labels.reshape(s.shape[:-1]).astype(int)
    keep = np.ones_like(lab, bool) if ignore is None else lab != ignore
    rows = h[np.where(keep, lab, 0)]
    per = -(rows * np.log(np.maximum(p, 1e-20))).sum(-1)
    outer = int(np.prod(scores.shape[:axis]))
    norm = {"FULL": lab.size, "VALID": keep.sum(), "BATCH_SIZE": outer, "NONE": 1}[mode]
    norm = max(1.0, norm)
    grad = np.where(keep[..., None], p * rows.sum(-1, keepdims=True) - rows, 0) / norm
    return (per * keep).sum() / norm, np.moveaxis(grad, -1, axis)


INFOGAIN_CASES = [
    ((4, 5), 1, None, "VALID", ""),
    ((2, 3, 2, 2), 1, 2, "VALID", "loss_param { ignore_label: 2 }"),
    ((2, 3, 2, 2), 1, 2, "FULL", "loss_param { ignore_label: 2 normalization: FULL }"),
    ((2, 2, 4), -1, None, "BATCH_SIZE",
     "infogain_loss_param { axis: -1 } loss_param { normalization: BATCH_SIZE }"),
    ((3, 4), 1, None, "NONE", "loss_param { normalization: NONE }"),
]


@pytest.mark.parametrize("shape,axis,ignore,mode,spec", INFOGAIN_CASES)
def test_infogain_master_formula(shape, axis, ignore, mode, spec, tmp_path):
    rng = np.random.default_rng(4)
    scores = rng.standard_normal(shape) * 2
    classes = shape[axis]
    lab_shape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    labels = rng.integers(0, classes, lab_shape).astype(float)
    if ignore is not None:
        labels.reshape(-1)[[0, 3]] = ignore
    h = rng.uniform(0, 2, (classes, classes))
    want_loss, want_grad = _infogain(scores, labels, h, axis % len(shape), ignore, mode)
    x = torch.tensor(scores, dtype=torch.float32)
    l_ = torch.tensor(labels, dtype=torch.float32)
    h32 = torch.tensor(h, dtype=torch.float32)
    weights = " loss_weight: 1 loss_weight: 0"      # two tops: Caffe wants a weight each
    three = build(layer_text("InfogainLoss", spec + weights, ("x", "l", "H"), ("loss", "prob")),
                  x.shape, l_.shape, (1, 1, classes, classes))
    loss, grad = grad_of(three, x, l_, h32.reshape(1, 1, classes, classes))
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(three(x, l_, h32)[1], x.softmax(axis))
    # the same H from a BlobProto file (infogain_loss_param.source)
    path = tmp_path / "h.binaryproto"
    write_binary(path, array_to_blob(h.astype(np.float32).reshape(1, 1, classes, classes)))
    spec_file = spec.replace("infogain_loss_param { axis: -1 }", "")
    source = (f"infogain_loss_param {{ source: '{path}' "
              f"{'axis: -1' if axis == -1 else ''} }} {spec_file}")
    two = build(layer_text("InfogainLoss", source, ("x", "l"), ("loss",)), x.shape, l_.shape)
    assert len(two.blobs) == 0        # H is not a learnable blob
    assert two(x, l_)[0].item() == pytest.approx(want_loss, rel=1e-5)
    assert torch.autograd.gradcheck(lambda t: three(t, l_.double(), h32.double())[0],
                                    x.double().requires_grad_())


def test_a_two_top_loss_needs_one_loss_weight_per_top():
    """Caffe's LossLayer adds loss_weight 1 when none is given, then wants one per top."""
    tops, shapes = ("loss", "prob"), ((2, 3), (2,), (1, 1, 3, 3))
    with pytest.raises(AllconvError, match="2 tops and no loss_weight: .* one loss_weight per"):
        build(layer_text("InfogainLoss", "", ("x", "l", "H"), tops), *shapes)
    with pytest.raises(AllconvError, match="1 loss_weight value\\(s\\) for 2 top\\(s\\)"):
        build(layer_text("InfogainLoss", "loss_weight: 1", ("x", "l", "H"), tops), *shapes)
    both = build(layer_text("InfogainLoss", "loss_weight: 1 loss_weight: 0.5", ("x", "l", "H"),
                            tops), *shapes)
    assert both.loss_weights == [1.0, 0.5]


def test_a_corrupt_infogain_source_is_named(tmp_path):
    path = tmp_path / "h.binaryproto"
    path.write_bytes(pb.BlobProto(num=1, channels=1, height=3, width=3, data=[1.0] * 5)
                     .SerializeToString())
    with pytest.raises(AllconvError, match=rf"layer 'l' \(InfogainLoss\): "
                                           rf"{re.escape(str(path))}: blob shape "
                                           r"\(1, 1, 3, 3\) needs 9 values but it holds 5$"):
        build(layer_text("InfogainLoss", f"infogain_loss_param {{ source: '{path}' }}",
                         ("x", "l"), ("loss",)), (2, 3), (2,))


def test_infogain_equals_the_old_layer_on_softmax_with_batch_normalization():
    """The reference build's InfogainLoss (before the internal softmax): −Σ_j H[l, j]·
    log(max(p_j, 1e-20)) / N on probabilities p. Master's with BATCH_SIZE on the scores is
    the same; the fixtures infogain_h_bottom* check it against that build."""
    rng = np.random.default_rng(5)
    scores, labels = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    h = rng.uniform(0, 1, (3, 3))
    p = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    old = -sum((h[labels[i]] * np.log(np.maximum(p[i], 1e-20))).sum() for i in range(6)) / 6
    layer = build(layer_text("InfogainLoss", "loss_param { normalization: BATCH_SIZE }",
                             ("x", "l", "H"), ("loss",)), (6, 3), (6,), (3, 3))
    got = layer(*(torch.tensor(a, dtype=torch.float32) for a in (scores, labels, h)))[0]
    assert got.item() == pytest.approx(old, rel=1e-5)


def test_infogain_clamps_the_log_but_not_the_gradient():
    x = torch.tensor([[0.0, -200.0]])
    h = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    layer = build(layer_text("InfogainLoss", "", ("x", "l", "H"), ("loss",)), (1, 2), (1,), (2, 2))
    loss, grad = grad_of(layer, x, torch.zeros(1), h)
    assert loss.item() == pytest.approx(-math.log(np.float32(1e-20)), rel=1e-6)
    torch.testing.assert_close(grad, torch.tensor([[1.0, -1.0]]))   # p·ΣH − H, p = (1, 0)


def test_multinomial_logistic_keeps_caffes_gradient_where_clamped():
    p = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    layer = build(layer_text("MultinomialLogisticLoss", "", ("p", "l"), ("loss",)), (2, 2), (2,))
    loss, grad = grad_of(layer, p, torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx((-math.log(np.float32(1e-20)) - math.log(0.75)) / 2)
    assert grad[0, 0].item() == pytest.approx(-0.5 / np.float32(1e-20), rel=1e-6)
    assert grad[1].tolist() == pytest.approx([0.0, -0.5 / 0.75])


def test_contrastive_uses_caffes_epsilon_in_the_gradient():
    a = torch.tensor([[0.3, 0.4]])
    b = torch.zeros(1, 2)
    layer = build(layer_text("ContrastiveLoss", "", ("a", "b", "y"), ("loss",)),
                  (1, 2), (1, 2), (1,))
    loss, grad = grad_of(layer, a, b, torch.zeros(1))
    assert loss.item() == pytest.approx((1 - 0.5) ** 2 / 2)
    torch.testing.assert_close(grad, -(1 - 0.5) / (0.5 + 1e-4) * a)
    longer = build(layer_text("ContrastiveLoss", "", ("a", "b", "y"), ("loss",)),
                   (1, 2), (1, 2), (3,))      # Caffe reads the first N similarities only
    assert longer(a, b, torch.tensor([0.0, 1.0, 1.0]))[0].item() == loss.item()


# ---------------------------------------------------------------------------- recurrent

LSTM_NET = """
layer {{ name: "input" type: "Input" top: "x" top: "cont"
  input_param {{ shape {{ dim: {t} dim: 2 dim: 3 }} shape {{ dim: {t} dim: 2 }} }} }}
layer {{ name: "rec" type: "{type_}" bottom: "x" bottom: "cont" top: "h"
  recurrent_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.5 }}
                     bias_filler {{ type: "gaussian" std: 0.5 }} }} }}
"""


@pytest.mark.parametrize("type_", ["LSTM", "RNN"])
def test_recurrent_state_carries_over_to_the_next_forward(type_):
    """Without expose_hidden Caffe copies h_T (and c_T) into h_0 before each forward: two
    forwards of 2 steps compute what one forward of 4 steps computes."""
    long = Net(LSTM_NET.format(t=4, type_=type_), pb.TEST, seed=3)
    short = Net(LSTM_NET.format(t=2, type_=type_), pb.TEST, seed=3)
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(6))
    cont = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    whole = long.forward(x=x, cont=cont)["h"]
    first = short.forward(x=x[:2], cont=cont[:2])["h"]
    second = short.forward(x=x[2:], cont=cont[2:])["h"]
    torch.testing.assert_close(torch.cat([first, second]), whole)
    short.layers[1].reset()                                # Caffe's Reset: zero states again
    again = short.forward(x=x[2:], cont=cont[2:])["h"]
    fresh = Net(LSTM_NET.format(t=2, type_=type_), pb.TEST, seed=3)
    torch.testing.assert_close(again, fresh.forward(x=x[2:], cont=cont[2:])["h"])
    assert not torch.allclose(again[0, 0], second[0, 0])   # stream 0 continued (cont 1)


@pytest.mark.parametrize("static", [(4, 1), (2, 3)])
def test_x_static_needs_one_row_of_the_weights_size_per_stream(static):
    text = ("name: 'l' type: 'RNN' bottom: 'x' bottom: 'cont' bottom: 'xs' top: 'h' "
            "recurrent_param { num_output: 2 weight_filler { type: 'gaussian' std: 1 } }")
    net = build(text, (3, 2, 4), (3, 2), (2, 1), phase=pb.TRAIN)
    with pytest.raises(AllconvError, match=r"bottom 2 \(x_static\) has shape"):
        net.reshape_tops([(3, 2, 4), (3, 2), static])


def test_lstm_unit_uses_caffes_forget_gate_derivative():
    """f = cont·σ(f'); Caffe's backward takes f·(1 − f), not cont·σ·(1 − σ)."""
    layer = build(layer_text("LSTMUnit", "", ("c", "x", "cont"), ("c_t", "h_t")),
                  (1, 1, 1), (1, 1, 4), (1, 1))
    gates = torch.tensor([[[0.3, 0.4, -0.2, 0.5]]], requires_grad=True)
    c_t = layer(torch.ones(1, 1, 1), gates, torch.full((1, 1), 0.5))[0]
    c_t.backward(torch.ones_like(c_t))
    f = 0.5 * torch.sigmoid(torch.tensor(0.4))
    assert gates.grad[0, 0, 1].item() == pytest.approx((f * (1 - f)).item(), rel=1e-6)


# ---------------------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("text,shapes,match", [
    (layer_text("Embed", "embed_param { num_output: 3 input_dim: 0 }"), [(2,)],
     "layer 'l' \\(Embed\\): embed_param.input_dim must be positive"),
    (layer_text("Embed", "embed_param { input_dim: 4 }"), [(2,)], "embed_param.num_output"),
    (layer_text("Log", "log_param { base: -2 }"), [(2,)],
     "layer 'l' \\(Log\\): log_param.base must be positive \\(or -1 for e\\), got -2"),
    (layer_text("Log", "log_param { base: 1 }"), [(2,)], "log_param.base 1 has no logarithm"),
    (layer_text("Exp", "exp_param { base: 0 }"), [(2,)], "exp_param.base must be positive"),
    (layer_text("Exp", "exp_param { base: inf }"), [(2,)],
     "exp_param.base inf has no finite logarithm"),
    (layer_text("AbsVal", "", ("x",), ("x",)), [(2,)], "AbsVal does not allow in-place"),
    (layer_text("LSTM", "recurrent_param { num_output: 2 }", ("x", "cont"), ("h",)),
     [(3, 2, 4), (3, 3)], "layer 'l' \\(LSTM\\): bottom 1 \\(cont\\) has shape \\(3, 3\\); it "
     "must be T × N = \\(3, 2\\)"),
    (layer_text("RNN", "recurrent_param { num_output: 0 }", ("x", "cont"), ("h",)),
     [(3, 2, 4), (3, 2)], "recurrent_param.num_output must be positive"),
    (layer_text("LSTM", "recurrent_param { num_output: 2 expose_hidden: true }",
                ("x", "cont", "h0", "c0"), ("h", "hT", "cT")),
     [(3, 2, 4), (3, 2), (1, 2, 2), (1, 3, 2)], "bottom 3 \\(an initial state\\) has shape"),
    (layer_text("LSTM", "recurrent_param { num_output: 2 expose_hidden: true }",
                ("x", "cont"), ("h",)), [(3, 2, 4), (3, 2)], "needs 4 to 5 bottom"),
    (layer_text("LSTMUnit", "", ("c", "x", "cont"), ("c_t", "h_t")),
     [(1, 2, 3), (1, 2, 11), (1, 2)], "must have 4 × 3 values per stream"),
    (layer_text("InfogainLoss", "", ("x", "l"), ("loss",)), [(2, 3), (2,)],
     "infogain_loss_param.source \\(the H matrix file\\) is required"),
    (layer_text("InfogainLoss", "loss_param { normalize: true }", ("x", "l", "H"), ("loss",)),
     [(2, 3), (2,), (3, 3)], "loss_param.normalize is deprecated"),
    (layer_text("InfogainLoss", "", ("x", "l", "H"), ("loss",)), [(2, 3), (2,), (2, 2)],
     "the infogain matrix H has 4 values; 3 classes need 3×3"),
    (layer_text("EuclideanLoss", "", ("a", "b"), ("loss",)), [(2, 3), (2, 4)],
     "inputs must have the same dimension"),
    (layer_text("EuclideanLoss", "", ("a", "b"), ("loss",)), [(2, 3), (3, 3)],
     "the data and label should have the same first dimension"),
    (layer_text("MultinomialLogisticLoss", "", ("p", "l"), ("loss",)), [(2, 3), (2, 3)],
     "the label blob must be N × 1 × 1 × 1"),
    # Caffe's Forward divides by the legacy num(), which CHECKs at most 4 axes (the
    # reference build's SigmoidCrossEntropyLoss too, even at TEST)
    *[(layer_text(type_, "", ("a", "b"), ("loss",)), [(2, 1, 2, 2, 2), label],
       r"bottom 0 has 5 axes \(2, 1, 2, 2, 2\), more than the 4 of Caffe's legacy num")
      for type_, label in [("EuclideanLoss", (2, 1, 2, 2, 2)), ("HingeLoss", (2,)),
                           ("MultinomialLogisticLoss", (2,)),
                           ("SigmoidCrossEntropyLoss", (2, 1, 2, 2, 2))]],
    (layer_text("ContrastiveLoss", "", ("a", "b", "y"), ("loss",)), [(2, 3), (2, 4), (2,)],
     "the pair bottoms must both be N × C × 1 × 1"),
    # found by tools/fuzz.py: pairs of different N, or fewer similarities, failed in forward
    (layer_text("ContrastiveLoss", "", ("a", "b", "y"), ("loss",)), [(2, 3), (1, 3), (2,)],
     r"the data and label should have the same first dimension \(shapes \(2, 3\) and \(1, 3\)"),
    (layer_text("ContrastiveLoss", "", ("a", "b", "y"), ("loss",)), [(2, 3), (2, 3), (1,)],
     r"the similarity bottom \(1,\) has fewer values than the 2 pairs"),
    (layer_text("Im2col", "convolution_param { kernel_size: 0 }"), [(1, 2, 5, 5)],
     "kernel, stride and dilation must be positive"),
    (layer_text("Parameter", "parameter_param { shape { dim: 2 dim: -1 } }", (), ("p",)), [],
     "parameter_param.shape: dim 1 is -1"),
])
def test_bad_parameters_name_the_layer_and_field(text, shapes, match):
    with pytest.raises(AllconvError, match=match):
        build(text, *shapes)


def test_recurrent_timesteps_cannot_change_and_embed_checks_its_indices():
    net = Net(LSTM_NET.format(t=3, type_="LSTM"), pb.TEST, seed=0)
    net.blobs["x"].reshape(4, 2, 3)
    net.blobs["cont"].reshape(4, 2)
    with pytest.raises(AllconvError, match="layer 'rec' \\(LSTM\\): bottom 0 \\(x\\) has shape "
                                           "\\(4, 2, 3\\); the number of timesteps was 3"):
        net.reshape()
    embed = build(layer_text("Embed", "embed_param { num_output: 2 input_dim: 3 }"), (3,))
    with pytest.raises(AllconvError, match="layer 'l' \\(Embed\\): input value 3 is not an "
                                           "index in \\[0, 3\\)"):
        embed(torch.tensor([0.0, 3.0, 1.0]))
    # Caffe's release build truncates a value that is not whole (found against the reference
    # build: 0.9 read row 0 and 4.99 row 4); below 0 after truncation, or NaN, is refused
    y, = embed(torch.tensor([1.5, 2.99, -0.5]))
    torch.testing.assert_close(y, embed.blobs[0][[1, 2, 0]] + embed.blobs[1], rtol=0, atol=0)
    for value in (-1.0, float("nan"), 3.5):
        with pytest.raises(AllconvError, match=f"input value {value:g} is not an index"):
            embed(torch.tensor([1.0, value, 0.0]))


@pytest.mark.parametrize("type_,shapes", [("HingeLoss", [(2, 3), (2,)]),
                                          ("MultinomialLogisticLoss", [(2, 3), (2,)]),
                                          ("InfogainLoss", [(2, 3), (2,), (3, 3)])])
def test_loss_labels_must_be_class_indices(type_, shapes):
    bottoms = ("x", "l", "H")[:len(shapes)]
    layer = build(layer_text(type_, "", bottoms, ("loss",)), *shapes)
    x = [torch.rand(s) for s in shapes]
    x[1] = torch.tensor([1.0, 3.0])
    with pytest.raises(AllconvError, match=f"layer 'l' \\({type_}\\): label 3 is outside its 3 "
                                           "classes \\(0 to 2\\)"):
        layer(*x)


def _shaped(net, streams):
    net.blobs["x"].reshape(2, streams, 3)
    net.blobs["cont"].reshape(2, streams)
    net.reshape()


@pytest.mark.parametrize("type_", ["LSTM", "RNN"])
def test_reset_zeroes_the_states_of_the_present_streams_only(type_):
    """recurrent_layer.cpp's Reset sets the h_T blob's count() values, those of its present
    shape: after a forward at N=2, one at N=1 and a reset, N=2 again starts stream 0 from
    zeros and stream 1 from the state the N=2 forward left (Blob memory past the count kept)."""
    x = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(6))
    cont = torch.ones(2, 2)
    net = Net(LSTM_NET.format(t=2, type_=type_), pb.TEST, seed=3)
    net.forward(x=x, cont=cont)
    _shaped(net, 1)
    net.forward(x=x[:, :1], cont=cont[:, :1])
    net.layers[1].reset()
    _shaped(net, 2)
    again = net.forward(x=x, cont=cont)["h"]
    fresh = Net(LSTM_NET.format(t=2, type_=type_), pb.TEST, seed=3).forward(x=x, cont=cont)["h"]
    torch.testing.assert_close(again[:, 0], fresh[:, 0])
    assert not torch.allclose(again[:, 1], fresh[:, 1])


# the net of tools/caffe_reference/module_edges/rnn_h0_diff.py, which ran it in real Caffe
EXPOSED = (Path(__file__).resolve().parent.parent / "tools" / "caffe_reference" / "module_edges"
           / "rnn_h0_diff.prototxt").read_text()


def test_an_exposed_initial_state_gets_no_diff():
    """Caffe's Reshape shares only the data of the h0 bottom with the unrolled net: under
    force_backward x gets a diff, h0 (and cont) none (reference build: 0.0 and 0.0)."""
    net = Net(EXPOSED, pb.TRAIN, seed=1)
    gen = torch.Generator().manual_seed(2)
    net.forward(x=torch.randn(3, 2, 3, generator=gen), h0=torch.randn(1, 2, 4, generator=gen),
                cont=torch.tensor([[0., 1], [1, 1], [1, 0]]), hh=torch.zeros(3, 2, 4))
    net.backward()
    assert net.blobs["x"].diff.abs().sum() > 0
    assert net.blobs["h0"].diff.abs().sum() == 0 and net.blobs["cont"].diff.abs().sum() == 0
