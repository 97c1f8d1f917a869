"""Layers against hand-computed Caffe formulas (small shapes, CPU)."""
import functools
import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.labels import defer_label_checks, deferred_label_error
from runtime.layers.dropout import _mix32, keyed_uniform, seed_key
from runtime.layers import LAYERS
import layer_kit

TRAIN, TEST = 0, 1
FLT_MAX = torch.finfo(torch.float32).max
FLT_MIN = torch.finfo(torch.float32).tiny


build = functools.partial(layer_kit.build, phase=TRAIN)


def pool(shape, spec):
    bottoms = "top: 'y'" if "bottom" in spec else "bottom: 'x' top: 'y'"
    return build(f"name: 'pool' type: 'Pooling' {bottoms} pooling_param {{ {spec} }}", shape)


def caffe_pool(x, method, k, s, p, out):
    """Caffe's Forward_cpu loops (pooling_layer.cpp) for square windows."""
    n, c, h, w = x.shape
    y = torch.empty(n, c, out, out)
    for i in range(out):
        for j in range(out):
            h0, w0 = i * s - p, j * s - p
            h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
            size = (h1 - h0) * (w1 - w0)
            hs, ws, he, we = max(h0, 0), max(w0, 0), min(h0 + k, h), min(w0 + k, w)
            win = x[:, :, hs:max(he, hs), ws:max(we, ws)].reshape(n, c, -1)
            if method == "MAX":
                y[:, :, i, j] = win.max(-1).values if win.shape[-1] else -FLT_MAX
            else:
                y[:, :, i, j] = win.sum(-1) / size
    return y


# ---------------------------------------------------------------------------- Pooling

@pytest.mark.parametrize("h,k,s,p,out", [
    (32, 3, 2, 0, 16), (16, 3, 2, 0, 8), (7, 3, 2, 0, 3), (13, 3, 2, 0, 6),
    (6, 3, 2, 0, 3),     # ceil: the last window hangs over the edge
    (5, 3, 2, 1, 3),
    (5, 2, 2, 1, 3),     # ceil gives 4, the 4th window would start in the padding: dropped
    (5, 1, 3, 0, 3),     # stride > kernel, no pad: the 3rd window lies past the input
    (8, 3, 3, 2, 4), (7, 5, 2, 3, 5),
])
def test_pool_output_size(h, k, s, p, out):
    layer = pool((1, 1, h, h), f"kernel_size: {k} stride: {s} pad: {p}")
    assert layer.top_shapes == [(1, 1, out, out)]
    assert layer(torch.zeros(1, 1, h, h))[0].shape == (1, 1, out, out)


def test_pool_floor_round_mode():
    assert pool((1, 1, 6, 6), "kernel_size: 3 stride: 2").top_shapes == [(1, 1, 3, 3)]
    assert pool((1, 1, 6, 6), "kernel_size: 3 stride: 2 round_mode: FLOOR").top_shapes == [(1, 1, 2, 2)]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h,k,s,p", [
    (7, 3, 2, 0), (6, 3, 2, 1), (5, 2, 2, 1), (5, 1, 3, 0), (8, 3, 3, 2), (7, 5, 2, 3),
    (9, 3, 1, 1), (6, 2, 2, 0),
])
def test_pool_matches_caffe_loops(method, h, k, s, p):
    x = torch.randn(2, 3, h, h, generator=torch.Generator().manual_seed(h * k + s))
    layer = pool(x.shape, f"pool: {method} kernel_size: {k} stride: {s} pad: {p}")
    out = layer.top_shapes[0][-1]
    torch.testing.assert_close(layer(x)[0], caffe_pool(x, method, k, s, p, out))


def caffe_max_pool(x, k, s, p, out):
    """Caffe's MAX loop: from −FLT_MAX keep a strictly greater value; (values, mask of index
    h·W + w); ``out``: the output side, or (height, width)."""
    n, c, h, w = x.shape
    oh, ow = (out, out) if isinstance(out, int) else out
    values, mask = torch.full((n, c, oh, ow), -FLT_MAX), torch.full((n, c, oh, ow), -1.0)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        for y, z in itertools.product(range(max(i * s - p, 0), min(i * s - p + k, h)),
                                      range(max(j * s - p, 0), min(j * s - p + k, w))):
            if x[b, ch, y, z] > values[b, ch, i, j]:
                values[b, ch, i, j], mask[b, ch, i, j] = x[b, ch, y, z], y * w + z
    return values, mask


@pytest.mark.parametrize("h,k,s,p", [(7, 3, 2, 0), (6, 3, 2, 1), (5, 1, 3, 0), (8, 3, 3, 2),
                                     (7, 5, 2, 3), (6, 2, 2, 0)])
def test_max_pool_mask_top_is_caffes_first_maximum(h, k, s, p):
    """A second top of MAX pooling is Caffe's mask (ties: the first in the window; −1 for a
    window past the input); AVE refuses one."""
    x = torch.randint(-2, 3, (2, 2, h, h), generator=torch.Generator().manual_seed(h + k)).float()
    layer = build(f"name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' top: 'mask' "
                  f"pooling_param {{ kernel_size: {k} stride: {s} pad: {p} }}", x.shape)
    y, mask = layer(x)
    out = layer.top_shapes[1][-1]
    torch.testing.assert_close(y, caffe_pool(x, "MAX", k, s, p, out))
    torch.testing.assert_close(mask, caffe_max_pool(x, k, s, p, out)[1], rtol=0, atol=0)
    with pytest.raises(AllconvError, match="only MAX pooling has a second top"):
        build("name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' top: 'mask' "
              "pooling_param { pool: AVE kernel_size: 2 }", x.shape)


def test_max_pool_mask_of_a_non_square_input_on_the_padded_path():
    """pad 2 > kernel 3 // 2 takes the explicitly padded path; height 5, width 9: a mask
    computed with the other axis's size would pass every square case."""
    x = torch.randn(1, 2, 5, 9, generator=torch.Generator().manual_seed(3))
    layer = build("name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' top: 'mask' "
                  "pooling_param { kernel_size: 3 stride: 2 pad: 2 }", x.shape)
    y, mask = layer(x)
    values, want = caffe_max_pool(x, 3, 2, 2, tuple(y.shape[2:]))
    torch.testing.assert_close(y, values)
    torch.testing.assert_close(mask, want, rtol=0, atol=0)


@pytest.mark.parametrize("h,k,s,p", [(6, 2, 2, 0), (5, 3, 2, 1), (5, 3, 1, 0), (5, 1, 3, 0)])
def test_max_pool_never_takes_nan_or_minus_inf_as_caffe(h, k, s, p):
    """Caffe's strict > from −FLT_MAX skips NaN and −inf: a window of nothing else gives
    −FLT_MAX and mask −1 (torch's max pooling would give NaN and −inf)."""
    x = torch.randn(2, 2, h, h, generator=torch.Generator().manual_seed(h * k))
    special = torch.tensor([float("nan"), -float("inf"), float("inf"), -FLT_MAX])
    pick = torch.randint(0, 8, x.shape, generator=torch.Generator().manual_seed(p))
    x = torch.where(pick < 4, special[pick.clamp(max=3)], x)
    x[0, 0, :3, :3] = float("nan")                        # a window of NaN alone
    layer = build(f"name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' top: 'mask' "
                  f"pooling_param {{ kernel_size: {k} stride: {s} pad: {p} }}", x.shape)
    values, mask = caffe_max_pool(x, k, s, p, layer.top_shapes[0][-1])
    y, got_mask = layer(x)
    torch.testing.assert_close(y, values, rtol=0, atol=0)
    torch.testing.assert_close(got_mask, mask, rtol=0, atol=0)
    assert (mask == -1).any() and not y.isnan().any()
    single = build(f"name: 'pool' type: 'Pooling' bottom: 'x' top: 'y' "
                   f"pooling_param {{ kernel_size: {k} stride: {s} pad: {p} }}", x.shape)
    torch.testing.assert_close(single(x)[0], values, rtol=0, atol=0)


def test_pool_window_past_input_gives_caffe_values():
    x = torch.arange(1.0, 26.0).reshape(1, 1, 5, 5)
    y_max = pool(x.shape, "pool: MAX kernel_size: 1 stride: 3")(x)[0][0, 0]
    assert y_max[0, 0] == 1 and y_max[1, 1] == x[0, 0, 3, 3]
    assert y_max[2, 0] == -FLT_MAX and y_max[2, 2] == -FLT_MAX
    y_ave = pool(x.shape, "pool: AVE kernel_size: 1 stride: 3")(x)[0][0, 0]
    assert y_ave[1, 1] == x[0, 0, 3, 3] and y_ave[2, 0] == 0 and y_ave[2, 2] == 0
    # Caffe divides by (hend - hstart)·(wend - wstart); a zero extent gives 0/0.
    y_nan = pool((1, 1, 4, 4), "pool: AVE kernel_size: 1 stride: 2")(torch.ones(1, 1, 4, 4))[0]
    assert torch.isnan(y_nan[0, 0, 2, 0]) and y_nan[0, 0, 1, 1] == 1


def test_pool_ave_divisor_counts_padding_not_overhang():
    ones = torch.ones(1, 1, 3, 3)
    y = pool(ones.shape, "pool: AVE kernel_size: 3 stride: 1 pad: 1")(ones)[0][0, 0]
    torch.testing.assert_close(y, torch.tensor([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    # H=6, k=3, s=2, no pad: the last window covers 2 rows and divides by 2, not 3.
    ones = torch.ones(1, 1, 6, 6)
    y = pool(ones.shape, "pool: AVE kernel_size: 3 stride: 2")(ones)[0][0, 0]
    assert torch.all(y == 1)
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    y = pool(x.shape, "pool: AVE kernel_size: 3 stride: 2")(x)[0][0, 0]
    assert y[2, 2] == (28 + 29 + 34 + 35) / 4


def test_pool_ave_gradient_is_top_diff_over_divisor():
    x = torch.ones(1, 1, 3, 3, requires_grad=True)
    pool(x.shape, "pool: AVE kernel_size: 3 stride: 1 pad: 1")(x)[0].sum().backward()
    # every output divides by 9; each input sits in 4, 6 or 9 windows
    torch.testing.assert_close(x.grad[0, 0], torch.tensor([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)


@pytest.mark.parametrize("spec", ["kernel_size: 2 stride: 2", "kernel_size: 2 stride: 1",
                                  "kernel_size: 2 stride: 2 pad: 1", "kernel_size: 1 stride: 3"])
def test_pool_max_ties_send_gradient_to_first_maximum(spec):
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    layer = pool(x.shape, spec)
    layer(x)[0].sum().backward()
    y = layer(x.detach())[0]
    expected = torch.zeros(4, 4)
    h = layer.windows((4, 4))[0]
    for i in range(y.shape[-2]):
        for j in range(y.shape[-1]):
            h0, w0 = max(i * h[3] - h[2], 0), max(j * h[3] - h[2], 0)
            if h0 < 4 and w0 < 4:
                expected[h0, w0] += 1   # first element of the clipped window
    torch.testing.assert_close(x.grad[0, 0], expected)


def test_global_pooling():
    x = torch.randn(2, 3, 5, 7)
    ave = pool(x.shape, "pool: AVE global_pooling: true")
    assert ave.top_shapes == [(2, 3, 1, 1)]
    torch.testing.assert_close(ave(x)[0], x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(pool(x.shape, "global_pooling: true")(x)[0],
                               x.amax((2, 3), keepdim=True))


@pytest.mark.parametrize("spec,match", [
    ("kernel_size: 3 pad: 3", "pad .* smaller than the kernel"),
    ("stride: 2", "kernel_size .* required"),
    ("pool: STOCHASTIC kernel_size: 2 pad: 1", "padding is implemented only for MAX and AVE"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", "not both"),
    ("kernel_h: 2", "kernel_h and kernel_w must be given together"),
    ("global_pooling: true kernel_size: 2", "global_pooling"),
])
def test_pool_errors_name_the_layer(spec, match):
    with pytest.raises(AllconvError, match=f"layer 'pool' \\(Pooling\\): .*{match}"):
        pool((1, 1, 6, 6), spec)


def test_stochastic_pooling_builds_and_is_refused_where_it_would_run():
    """Real Caffe builds a STOCHASTIC Pooling layer (a fuzzer's mutant: allconv refused it) and
    aborts in its CPU Forward, "Not Implemented Yet"; its GPU kernels alone sample."""
    layer = pool((1, 1, 6, 6), "pool: STOCHASTIC kernel_size: 2 stride: 2")
    assert layer.top_shapes == [(1, 1, 3, 3)]
    with pytest.raises(AllconvError, match="layer 'pool' \\(Pooling\\): STOCHASTIC pooling "
                                           "does not run on the CPU in Caffe"):
        layer(torch.zeros(1, 1, 6, 6))


def test_pool_non_square_hw():
    layer = pool((1, 1, 6, 9), "kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 3")
    assert layer.top_shapes == [(1, 1, 3, 3)]


# ---------------------------------------------------------------------------- Convolution

CONV = ("name: 'conv' type: 'Convolution' bottom: 'x' top: 'y' convolution_param {{ {} "
        "weight_filler {{ type: 'gaussian' std: 0.1 }} bias_filler {{ type: 'gaussian' }} }}")


def test_conv_matches_torch_and_caffe_size():
    layer = build(CONV.format("num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2"),
                  (2, 4, 9, 9))
    assert [tuple(b.shape) for b in layer.blobs] == [(6, 2, 3, 3), (6,)]
    assert layer.top_shapes == [(2, 6, 5, 5)]       # floor((9 + 2 - 3) / 2) + 1
    x = torch.randn(2, 4, 9, 9)
    expected = F.conv2d(x, layer.blobs[0], layer.blobs[1], 2, 1, 1, 2)
    torch.testing.assert_close(layer(x)[0], expected)


def test_conv_hw_dilation_and_per_axis_values():
    layer = build(CONV.format("num_output: 2 kernel_h: 3 kernel_w: 1 pad_h: 1 stride_w: 2 "
                              "stride_h: 1"), (1, 1, 5, 6))
    assert layer.top_shapes == [(1, 2, 5, 3)]
    layer = build(CONV.format("num_output: 2 kernel_size: 3 kernel_size: 1 dilation: 2"),
                  (1, 1, 7, 7))
    assert tuple(layer.blobs[0].shape) == (2, 1, 3, 1) and layer.top_shapes == [(1, 2, 3, 7)]
    # stride_h alone: the reference build's caffe.proto gives stride_w 1 (real Caffe's top)
    layer = build(CONV.format("num_output: 2 kernel_size: 2 stride_h: 2"), (1, 2, 5, 6))
    assert layer.top_shapes == [(1, 2, 2, 5)]


def test_conv_without_weight_filler_warns_and_starts_at_zero():
    with pytest.warns(UserWarning, match="'conv' .*no weight_filler.*zero"):
        layer = build("name: 'conv' type: 'Convolution' bottom: 'x' top: 'y' "
                      "convolution_param { num_output: 2 kernel_size: 1 }", (1, 3, 4, 4))
    assert torch.count_nonzero(layer.blobs[0]) == 0


def test_conv_errors():
    with pytest.raises(AllconvError, match="'conv' \\(Convolution\\): group 2 must divide"):
        build(CONV.format("num_output: 4 kernel_size: 1 group: 2"), (1, 3, 4, 4))
    with pytest.raises(AllconvError, match="kernel_size .* required"):
        build(CONV.format("num_output: 4"), (1, 3, 4, 4))
    layer = build(CONV.format("num_output: 4 kernel_size: 1"), (1, 3, 4, 4))
    with pytest.raises(AllconvError, match=r"bottom shape \(1, 5, 4, 4\) does not fit .*\(4, 3, 1, 1\)"):
        layer.reshape([(1, 5, 4, 4)])


def test_param_spec_tags_blobs():
    layer = build(CONV.format("num_output: 2 kernel_size: 1")[:-1].replace(
        "bottom: 'x'", "param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 } bottom: 'x'")
        + "}", (1, 1, 2, 2))
    assert [(b.lr_mult, b.decay_mult) for b in layer.blobs] == [(1, 1), (2, 0)]
    with pytest.raises(AllconvError, match="3 `param` entries but the layer has 2"):
        build("name: 'c' type: 'Convolution' bottom: 'x' top: 'y' param {} param {} param {} "
              "convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: 'xavier' } }",
              (1, 1, 2, 2))


# ---------------------------------------------------------------------------- InnerProduct

IP = ("name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y' inner_product_param {{ {} "
      "weight_filler {{ type: 'xavier' }} bias_filler {{ type: 'uniform' }} }}")


def test_inner_product_axis_and_transpose():
    layer = build(IP.format("num_output: 5"), (2, 3, 4))
    assert tuple(layer.blobs[0].shape) == (5, 12) and layer.top_shapes == [(2, 5)]
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(layer(x)[0], x.reshape(2, 12) @ layer.blobs[0].T + layer.blobs[1])
    t = build(IP.format("num_output: 5 axis: 2 transpose: true"), (2, 3, 4))
    assert tuple(t.blobs[0].shape) == (4, 5) and t.top_shapes == [(2, 3, 5)]
    torch.testing.assert_close(t(x)[0], x @ t.blobs[0] + t.blobs[1])
    with pytest.raises(AllconvError, match="gives 10 inputs .* expect 12"):
        layer.reshape([(2, 10)])


# ---------------------------------------------------------------------------- activations

def test_relu_negative_slope_and_gradient_at_zero():
    x = torch.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    layer = build("name: 'r' type: 'ReLU' bottom: 'x' top: 'x' relu_param { negative_slope: 0.1 }",
                  (3,))
    y = layer(x)[0]
    torch.testing.assert_close(y, torch.tensor([-0.2, 0.0, 3.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 0.1, 1.0]))  # Caffe: slope at x <= 0


def test_dropout_train_scales_and_keeps_one_minus_p():
    text = "name: 'd' type: 'Dropout' bottom: 'x' top: 'x' dropout_param { dropout_ratio: 0.2 }"
    x = torch.ones(100_000)
    y = build(text, x.shape, seed=5)(x)[0]
    assert set(y.unique().tolist()) == {0.0, 1.25}
    assert abs((y != 0).float().mean() - 0.8) < 0.01
    assert torch.equal(y, build(text, x.shape, seed=5)(x)[0])       # seeded: reproducible
    layer = build(text, x.shape, seed=5)
    assert not torch.equal(layer(x)[0], layer(x)[0])                # fresh mask per pass
    assert build(text, x.shape, phase=TEST)(x)[0] is x


def test_dropout_ratio_is_checked_as_caffe_does_only_to_train():
    """Found by tools/fuzz.py against pycaffe: Caffe only DCHECKs 0 < ratio < 1 (a release
    build accepts any ratio at TEST); training CHECKs 0 <= 1 - ratio <= 1. Ratio 0 keeps
    all; ratio 1 drops all with an inf scale: NaN."""
    text = "name: 'd' type: 'Dropout' bottom: 'x' top: 'x' dropout_param { dropout_ratio: %s }"
    x = torch.full((2, 3), 2.0)
    assert build(text % 2, x.shape, phase=TEST)(x)[0] is x
    assert torch.equal(build(text % 0, x.shape)(x)[0], x)
    assert build(text % 1, x.shape)(x)[0].isnan().all()
    for ratio in (2, -1, "nan"):
        with pytest.raises(AllconvError, match=r"layer 'd' \(Dropout\): dropout_param."
                                               r"dropout_ratio must be in \[0, 1\] to train"):
            build(text % ratio, x.shape)


def test_keyed_dropout_masks_are_a_function_of_seed_iteration_and_position():
    """Keyed by a device iteration counter (as the training loop keys them): the same masks
    eager and compiled, for a process's slice of the global batch as for the whole batch, a
    new mask when the counter moves, and the counter read at each call (as a CUDA graph's
    replay reads it). Keep rates 0.8 over 200,000 positions, uniform values with 24 bits."""
    text = "name: 'd' type: 'Dropout' bottom: 'x' top: 'x' dropout_param { dropout_ratio: 0.2 }"
    x = torch.ones(8, 5, 50, 100)
    layer = build(text, x.shape, seed=5)
    iteration = torch.zeros((), dtype=torch.long)
    layer.key_masks(iteration, 0, 8)
    first = layer(x)[0]
    assert abs((first != 0).float().mean() - 0.8) < 0.005
    assert torch.equal(torch.compile(layer)(x)[0], first)
    half = build(text, (4, 5, 50, 100), seed=5)
    half.key_masks(iteration, 4, 8)                   # rows 4..8 of the same global batch
    assert torch.equal(half(x[4:])[0], first[4:])
    iteration += 1
    second = layer(x)[0]
    assert not torch.equal(second, first) and abs((second != 0).float().mean() - 0.8) < 0.005
    iteration -= 1
    assert torch.equal(layer(x)[0], first)
    other = build(text, x.shape, seed=6)
    other.key_masks(iteration, 0, 8)
    assert not torch.equal(other(x)[0], first)
    noise = keyed_uniform(seed_key(5), 3, 0, (1000, 1000), "cpu")
    assert 0 <= noise.min() and noise.max() < 1 and abs(noise.mean() - 0.5) < 1e-3
    assert torch.equal(noise * 2 ** 24, (noise * 2 ** 24).floor())


def test_one_compiled_dropout_serves_every_seed():
    """The seed's key is an input of the compiled graph, not a constant: the runs of a row at
    other seeds (and their side-by-side or packed members) compile once, and each still gets
    its own masks."""
    text = "name: 'd' type: 'Dropout' bottom: 'x' top: 'x' dropout_param { dropout_ratio: 0.5 }"
    x = torch.ones(4, 6, 3, 3)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    masked = torch.compile(lambda layer, x: layer(x)[0], backend=backend)
    outputs = []
    for seed in (5, 6, 7):
        layer = build(text, x.shape, seed=seed)
        layer.key_masks(torch.tensor(3), 0, 4)
        outputs.append(masked(layer, x))
        assert torch.equal(outputs[-1], layer(x)[0])
        assert "seed_keys" not in layer.state_dict()    # not saved with the weights
    assert not torch.equal(outputs[0], outputs[1]) and len(graphs) == 1


def test_keyed_masks_are_the_same_for_an_int_and_a_tensor_iteration():
    """Eager steps key masks with an int iteration, a CUDA graph replay with a device tensor."""
    xs = [0, 1, 12345, 2**31 + 5, 2**32 - 1]
    assert [_mix32(x) for x in xs] == _mix32(torch.tensor(xs, dtype=torch.int64)).tolist()
    seed = 2**40 + 7
    assert torch.equal(keyed_uniform(seed_key(seed), 5, 3, (2, 3, 4), "cpu"),
                       keyed_uniform(seed_key(seed), torch.tensor(5), 3, (2, 3, 4), "cpu"))
    assert torch.equal(keyed_uniform(seed_key(seed), 5, 3, (2, 3, 4), "cpu"),
                       keyed_uniform(torch.tensor(seed_key(seed)), 5, 3, (2, 3, 4), "cpu"))


def test_member_seeds_must_split_the_channels_and_members_are_named_in_range():
    text = "name: 'd' type: 'Dropout' bottom: 'x' top: 'y' dropout_param { dropout_ratio: 0.5 }"
    layer = build(text, (2, 4, 3, 3))
    for seeds in ((1, 2, 3), ()):
        with pytest.raises(AllconvError, match=rf"{len(seeds)} member seeds do not split the "
                                               r"channels of shape \(2, 4, 3, 3\)"):
            layer.set_member_seeds(seeds)
    flat = build(text, (2,))                        # no channel axis to split
    with pytest.raises(AllconvError, match="2 member seeds do not split"):
        flat.set_member_seeds((1, 2))
    flat.set_member_seeds((9,))                     # one member: any shape
    layer.set_member_seeds((1, 2))
    layer(torch.ones(2, 4, 3, 3))                   # draws from both members' generators
    assert not torch.equal(layer.rng_state(0)["cpu"], layer.rng_state(1)["cpu"])
    for member, said in ((2, "has no member 2 (2 member(s))"), (-1, "has no member -1"),
                         (None, "is packed: its random state is per member")):
        with pytest.raises(AllconvError, match=re.escape(said)):
            layer.rng_state(member)


def test_keyed_mask_values_are_pinned():
    """A resumed run continues with its masks across versions: values of commit 7fbbac3."""
    got = keyed_uniform(seed_key(2**40 + 2**32 + 7), 3, 2, (2, 3), "cpu")
    got = got.mul(2**24).long().tolist()
    assert got == [[9156501, 7554810, 14159299], [1576296, 6049108, 6849175]]
    got = keyed_uniform(seed_key(2**40 + 7), 3, 2, (2, 3), "cpu").mul(2**24).long().tolist()
    assert got == [[474313, 6906368, 7050346], [9407819, 6208178, 5581211]]
    # element indices past 2**32 (rows of a huge global batch: the high bits are folded in)
    got = keyed_uniform(seed_key(2**40 + 7), 3, 2**33 + 5, (1, 4), "cpu")
    got = got.mul(2**24).long().tolist()
    assert got == [[3912201, 14246022, 10862790, 7628004]]


def test_softmax_axis():
    x = torch.randn(2, 3, 4)
    layer = build("name: 's' type: 'Softmax' bottom: 'x' top: 'y' softmax_param { axis: -1 }", x.shape)
    torch.testing.assert_close(layer(x)[0], x.softmax(2))


# ---------------------------------------------------------------------------- losses

LOSS = "name: 'loss' type: 'SoftmaxWithLoss' bottom: 'x' bottom: 'l' top: 'loss' {}"


@pytest.mark.parametrize("norm,divisor", [
    ("normalization: FULL", 4), ("normalization: VALID", 3), ("", 3),
    ("normalization: BATCH_SIZE", 2), ("normalization: NONE", 1),
    ("normalize: false", 2), ("normalize: true", 3),
])
def test_softmax_loss_normalization(norm, divisor):
    scores = torch.randn(2, 3, 1, 2, requires_grad=True)
    labels = torch.tensor([[[0.0, 2.0]], [[5.0, 1.0]]])   # 5 is ignored
    layer = build(LOSS.format(f"loss_param {{ ignore_label: 5 {norm} }}"),
                  scores.shape, labels.shape)
    assert layer.loss_weights == [1.0] and layer.top_shapes == [()]
    loss = layer(scores, labels)[0]
    p = scores.detach().softmax(1)
    picks = [(0, 0, 0), (0, 2, 1), (1, 1, 1)]
    expected = -sum(math.log(p[n, c, 0, w]) for n, c, w in picks) / divisor
    assert abs(loss.item() - expected) < 1e-5
    loss.backward()
    grad = p.clone()
    for n, c, w in picks:
        grad[n, c, 0, w] -= 1
    grad[1, :, 0, 0] = 0                                   # the ignored position
    torch.testing.assert_close(scores.grad, grad / divisor)


@pytest.mark.parametrize("gap", [200.0, 1e6])
def test_softmax_loss_clamps_at_flt_min_but_keeps_gradient(gap):
    """Caffe's −log(FLT_MIN) in fp32 exactly (87.336548), also where −log p is 1e6."""
    scores = torch.tensor([[0.0, gap]], requires_grad=True)
    loss = build(LOSS.format(""), (1, 2), (1,))(scores, torch.tensor([0.0]))[0]
    assert loss.item() == torch.tensor(-math.log(FLT_MIN), dtype=torch.float32).item()
    loss.backward()
    torch.testing.assert_close(scores.grad, torch.tensor([[-1.0, 1.0]]))  # p - onehot


def test_softmax_loss_refuses_a_second_top_and_takes_loss_weights():
    """Caffe's inner Softmax is set up with the layer's loss_weights and one top: a second top
    fails its loss_weight check whatever the weights."""
    for weights in ("", "loss_weight: 1", "loss_weight: 1 loss_weight: 0"):
        with pytest.raises(AllconvError, match="2 tops: Caffe cannot build a SoftmaxWithLoss "
                                               "with a second top.*add a Softmax layer"):
            build(LOSS.format("top: 'prob' " + weights), (2, 3), (2,))
    layer = build(LOSS.format("loss_weight: 0.5"), (2, 3), (2,))
    assert layer.loss_weights == [0.5] and layer.top_shapes == [()]
    # Caffe's LossLayer::Reshape checks the first dimension before the label count
    with pytest.raises(AllconvError, match="the data and label should have the same first"):
        build(LOSS.format(""), (2, 3), (3,))
    with pytest.raises(AllconvError, match="label shape \\(2, 3\\) holds 6 labels"):
        build(LOSS.format(""), (2, 3, 2), (2, 3))
    # ... whatever the softmax axis: 6 labels for axis 0 of (4, 2, 3), but 2 is not 4
    with pytest.raises(AllconvError, match="the data and label should have the same first"):
        build(LOSS.format("softmax_param { axis: 0 }"), (4, 2, 3), (2, 3))


ACC = "name: 'acc' type: 'Accuracy' bottom: 'x' bottom: 'l' top: 'a' {}"


def test_accuracy_ties_go_to_the_higher_class_index_and_top_k():
    """The reference Caffe sorts (score, index) pairs: a tie ranks the higher index first."""
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 2.0, 1.0], [0.0, 1.0, 2.0],
                           [1.0, 0.0, 1.0]])
    labels = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0])
    top1 = build(ACC.format(""), scores.shape, labels.shape)(scores, labels)[0]
    assert top1.item() == pytest.approx(2 / 5)       # rows 0 (wins its tie) and 2
    top2 = build(ACC.format("accuracy_param { top_k: 2 }"), scores.shape, labels.shape)
    assert top2(scores, labels)[0].item() == pytest.approx(4 / 5)  # row 3: 3 scores > 0


def test_accuracy_equals_the_reference_caffe_on_integer_scores_full_of_ties():
    """8 rows of scores in {0, 1, 2}, top_k 2: the reference build gave 0.375 (counting every
    tie against the label gives 0.125, ignoring ties 0.75)."""
    scores = torch.tensor([[1, 1, 0, 1, 1], [2, 2, 2, 1, 1], [2, 2, 0, 2, 0], [0, 1, 2, 1, 2],
                           [1, 1, 0, 1, 2], [2, 1, 1, 2, 2], [0, 1, 2, 2, 2], [1, 1, 1, 0, 0]],
                          dtype=torch.float32)
    labels = torch.tensor([0.0, 4, 0, 0, 4, 4, 4, 0])
    top2 = build(ACC.format("accuracy_param { top_k: 2 }"), scores.shape, labels.shape)
    assert top2(scores, labels)[0].item() == 0.375


def test_accuracy_ignore_label_and_per_class():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0.0, 0.0, 2.0, 7.0])
    layer = build(ACC.format("top: 'per_class' accuracy_param { ignore_label: 7 }"),
                  scores.shape, labels.shape)
    assert layer.top_shapes == [(), (3,)] and layer.loss_weights == [0.0, 0.0]
    acc, per_class = layer(scores, labels)
    assert acc.item() == pytest.approx(2 / 3)
    torch.testing.assert_close(per_class, torch.tensor([0.5, 0.0, 1.0]))
    none, per_class = layer(scores, torch.full((4,), 7.0))
    assert torch.isnan(none)        # the reference build's accuracy / count, 0 / 0
    torch.testing.assert_close(per_class, torch.zeros(3))


@pytest.mark.parametrize("text, name", [(LOSS.format(""), "loss"), (ACC.format(""), "acc")])
def test_out_of_range_labels_name_layer_label_and_classes(text, name):
    """Checked before the gather by default; with a device record (a training loop's), the
    gather reads a clamped index and the first offending label waits in the record."""
    scores, labels = torch.randn(3, 4), torch.tensor([1.0, 4.0, -1.0])
    layer = build(text, scores.shape, labels.shape)
    message = f"layer '{name}' .*: label 4 is outside its 4 classes \\(0 to 3\\)"
    with pytest.raises(AllconvError, match=message):
        layer(scores, labels)
    with pytest.raises(AllconvError, match="label -1 is outside"):
        layer(scores, torch.tensor([1.0, 2.0, -1.0]))
    for odd in (float("nan"), 1e30):    # found by fuzzing: "label -9223372036854775808" alone
        with pytest.raises(AllconvError, match=r"label -9223372036854775808 \(a NaN, infinite "
                                               r"or huge value, as int64 reads it\) is outside"):
            layer(scores, torch.tensor([1.0, odd, 0.0]))
    net = type("N", (), {"layers": [layer], "device": torch.device("cpu")})()
    deferred = defer_label_checks(net)
    assert deferred == [layer] and deferred_label_error(deferred) is None
    layer(scores, torch.tensor([1.0, 2.0, 3.0]))
    assert deferred_label_error(deferred) is None
    out = layer(scores, labels)[0]
    assert torch.isfinite(out)
    layer(scores, torch.tensor([9.0, 0.0, 0.0]))      # later offenders do not replace the first
    with pytest.raises(AllconvError, match=message):
        raise deferred_label_error(deferred)


# ---------------------------------------------------------------------------- LRN

def test_lrn_across_channels_formula():
    x = torch.randn(2, 5, 3, 3)
    layer = build("name: 'n' type: 'LRN' bottom: 'x' top: 'y' "
                  "lrn_param { local_size: 3 alpha: 0.3 beta: 0.7 k: 2 }", x.shape)
    sq = F.pad(x * x, (0, 0, 0, 0, 1, 1))
    scale = 2 + 0.3 / 3 * (sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:])
    torch.testing.assert_close(layer(x)[0], x * scale ** -0.7)


def test_lrn_across_channels_of_one_channel():
    """The window holds the channel alone (an IndexError had no test to catch it)."""
    x = torch.randn(2, 1, 3, 3)
    layer = build("name: 'n' type: 'LRN' bottom: 'x' top: 'y' "
                  "lrn_param { local_size: 5 alpha: 0.3 beta: 0.7 k: 2 }", x.shape)
    torch.testing.assert_close(layer(x)[0], x * (2 + 0.3 / 5 * x * x) ** -0.7)


def _sliding_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """lrn_layer.cpp's CrossChannelForward in float32, step by step: the first window's terms
    added to k one by one, then each channel's scale from the last one plus the new head minus
    the old tail; top = x · scale^−β."""
    n, c = x.shape[:2]
    pre, a = (size - 1) // 2, np.float32(alpha) / np.float32(size)
    padded = np.zeros((n, c + size - 1) + x.shape[2:], np.float32)
    scale = np.empty_like(x)
    with np.errstate(all="ignore"):
        padded[:, pre:pre + c] = x * x
        scale[:, 0] = np.float32(k)
        for j in range(size):
            scale[:, 0] += a * padded[:, j]
        for ch in range(1, c):
            scale[:, ch] = scale[:, ch - 1] + a * padded[:, ch + size - 1] - a * padded[:, ch - 1]
        return x * scale ** np.float32(-beta)


@pytest.mark.parametrize("alpha,beta,k", [(0.1, 0.75, 1.0), (-0.2, 0.5, 2.0), (float("inf"), 0.75, 1.0)])
def test_lrn_across_channels_is_nan_where_caffes_sliding_sum_is(alpha, beta, k):
    """An infinite square (−FLT_MAX, the MAX pooling of a window outside its input) or a NaN
    makes Caffe's sliding sum inf − inf = NaN for every later channel, not just the windows
    that hold it; α = inf is NaN everywhere (inf · 0 on the padding)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 3, 2)).astype(np.float32)
    x[0, 2, 1, 0] = -np.finfo(np.float32).max
    x[1, 4, 0, 1] = np.nan
    x[1, 0, 2, 0] = np.inf
    layer = build("name: 'n' type: 'LRN' bottom: 'x' top: 'y' "
                  f"lrn_param {{ local_size: 3 alpha: {alpha} beta: {beta} k: {k} }}", x.shape)
    ours = layer(torch.from_numpy(x))[0].numpy()
    caffe = _sliding_lrn(x, 3, alpha, beta, k)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(caffe))
    np.testing.assert_allclose(ours, caffe, rtol=2e-6, atol=1e-7)
    assert np.isnan(caffe).any() and (alpha == float("inf")) == np.isnan(caffe).all()


def test_lrn_within_channel_formula_ignores_k():
    x = torch.randn(1, 2, 4, 4)
    layer = build("name: 'n' type: 'LRN' bottom: 'x' top: 'y' lrn_param { local_size: 3 "
                  "alpha: 0.5 beta: 0.75 k: 9 norm_region: WITHIN_CHANNEL }", x.shape)
    sums = F.conv2d(F.pad(x * x, (1, 1, 1, 1)).reshape(2, 1, 6, 6), torch.ones(1, 1, 3, 3))
    expected = x * (1 + 0.5 * sums.reshape(1, 2, 4, 4) / 9) ** -0.75
    torch.testing.assert_close(layer(x)[0], expected)
    with pytest.raises(AllconvError, match="local_size must be odd"):
        build("name: 'n' type: 'LRN' bottom: 'x' top: 'y' lrn_param { local_size: 4 }", x.shape)


# ---------------------------------------------------------------------------- structure

def test_concat_axis_and_legacy_concat_dim():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 1, 4)
    layer = build("name: 'c' type: 'Concat' bottom: 'a' bottom: 'b' top: 'y'", a.shape, b.shape)
    assert layer.top_shapes == [(2, 4, 4)]
    torch.testing.assert_close(layer(a, b)[0], torch.cat([a, b], 1))
    layer = build("name: 'c' type: 'Concat' bottom: 'a' bottom: 'b' top: 'y' "
                  "concat_param { concat_dim: 2 }", (2, 3, 4), (2, 3, 1))
    assert layer.top_shapes == [(2, 3, 5)]
    with pytest.raises(AllconvError, match=r"'c' \(Concat\): bottom shapes \(2, 3, 4\) and \(2, 1, 5\)"):
        build("name: 'c' type: 'Concat' bottom: 'a' bottom: 'b' top: 'y'", (2, 3, 4), (2, 1, 5))


def test_eltwise_sum_prod():
    a, b = torch.randn(3), torch.randn(3)
    text = "name: 'e' type: 'Eltwise' bottom: 'a' bottom: 'b' top: 'y' eltwise_param {{ {} }}"
    torch.testing.assert_close(build(text.format("coeff: 2 coeff: -1"), (3,), (3,))(a, b)[0], 2 * a - b)
    torch.testing.assert_close(build(text.format("operation: PROD"), (3,), (3,))(a, b)[0], a * b)
    with pytest.raises(AllconvError, match="1 coeff value"):
        build(text.format("coeff: 2"), (3,), (3,))
    with pytest.raises(AllconvError, match=r"bottom shapes \(3,\) and \(4,\) hold 3 and 4 values"):
        build(text.format(""), (3,), (4,))


@pytest.mark.parametrize("stable,diff_a", [("true", [3.0, 4.0]), ("false", [None, 4.0])])
def test_eltwise_prod_diff_with_and_without_stable_prod_grad(stable, diff_a):
    """Caffe's stable_prod_grad: false divides the top by the bottom: 0/0 is NaN (None here)
    where bottom a is 0; the default multiplies the other bottoms."""
    a = torch.tensor([0.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0, 4.0], requires_grad=True)
    layer = build("name: 'e' type: 'Eltwise' bottom: 'a' bottom: 'b' top: 'y' eltwise_param "
                  f"{{ operation: PROD stable_prod_grad: {stable} }}", (2,), (2,))
    layer(a, b)[0].sum().backward()
    assert [None if v != v else v for v in a.grad.tolist()] == diff_a
    assert b.grad.tolist() == [0.0, 2.0]


ELTWISE_SHAPES = """force_backward: true
layer { name: "in" type: "Input" top: "a" top: "b"
        input_param { shape { dim: 2 dim: 3 dim: 1 dim: 1 } shape { dim: 2 dim: 3 } } }
layer { name: "s" type: "Eltwise" bottom: "a" bottom: "b" top: "s"
        eltwise_param { operation: SUM coeff: 2 coeff: -1 } }
layer { name: "p" type: "Eltwise" bottom: "b" bottom: "a" top: "p" eltwise_param { operation: PROD } }
layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" top: "m" eltwise_param { operation: MAX } }
""" + "".join(f'layer {{ name: "l{k}" type: "Reduction" bottom: "{k}" top: "l{k}" loss_weight: 1 '
              'reduction_param { operation: SUMSQ } }\n' for k in "spm")


def test_eltwise_bottoms_of_one_count_and_other_shapes_as_the_reference_caffe():
    """The reference build's Eltwise checks no shape: a (2, 3, 1, 1) and a (2, 3) bottom
    combine element by element, the top in bottom 0's shape (values from real Caffe)."""
    from runtime import TRAIN, Net
    net = Net(ELTWISE_SHAPES, TRAIN)
    net.forward(a=torch.tensor([1, -2, 3, 4, 0.5, -1]).reshape(2, 3, 1, 1),
                b=torch.tensor([2.0, -3, 1, 4, 1, 2]).reshape(2, 3))
    net.backward()
    assert tuple(net.blobs["s"].data.shape) == (2, 3, 1, 1) and net.blobs["p"].data.shape == (2, 3)
    caffe = {"s": [0, -1, 5, 4, 0, -4], "p": [2, 6, 3, 16, 0.5, -2], "m": [2, -2, 3, 4, 1, 2]}
    for blob, values in caffe.items():
        assert net.blobs[blob].data.flatten().tolist() == values
    assert net.blobs["a"].diff.flatten().tolist() == [8, -44, 32, 144, 1, -24]
    assert net.blobs["b"].diff.flatten().tolist() == [8, -22, 8, 128, 2.5, 16]


def test_eltwise_max_picks_like_caffe():
    a = torch.tensor([1.0, 2.0, 5.0], requires_grad=True)
    b = torch.tensor([1.0, 3.0, 5.0], requires_grad=True)
    c = torch.tensor([1.0, 3.0, 4.0], requires_grad=True)
    layer = build("name: 'e' type: 'Eltwise' bottom: 'a' bottom: 'b' bottom: 'c' top: 'y' "
                  "eltwise_param { operation: MAX }", (3,), (3,), (3,))
    y = layer(a, b, c)[0]
    torch.testing.assert_close(y, torch.tensor([1.0, 3.0, 5.0]))
    y.sum().backward()
    # a == b: Caffe picks b (a only when strictly greater); c ties later: not picked
    assert a.grad.tolist() == [0, 0, 0] and b.grad.tolist() == [1, 1, 1] and c.grad.tolist() == [0, 0, 0]


@pytest.mark.parametrize("rule", ["backprop", "guided"])
def test_relu_gives_caffes_plus_zero_below_zero(rule):
    """CPU Caffe's max(x, 0) + 0·min(x, 0) is 0 + −0 = +0 below zero (leaky_relu alone gives
    −0, which a negative power after it would make −inf)."""
    layer = build("name: 'r' type: 'ReLU' bottom: 'x' top: 'y'", (4,))
    layer.rule = rule
    y = layer(torch.tensor([-1.0, -1e30, 2.0, 0.0]))[0]
    assert y.tolist() == [0.0, 0.0, 2.0, 0.0] and not torch.signbit(y).any()


def test_relu_backward_blocks_nan_and_minus_infinity_as_caffes_x_above_0():
    """Caffe's diff is top diff · (x > 0): 0 where x is NaN or −inf (whose output is NaN);
    relu's own backward, reading its output, passed the signal there."""
    layer = build("name: 'r' type: 'ReLU' bottom: 'x' top: 'y'", (5,))
    x = torch.tensor([float("nan"), -math.inf, math.inf, -2.0, 3.0], requires_grad=True)
    layer(x)[0].backward(torch.ones(5))
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_leaky_relu_not_in_place_passes_the_slope_where_the_input_is_negative():
    """Its backward reads the bottom (Caffe's in-place one reads the top: tested with the
    fixture relu_inplace_negative_slope)."""
    layer = build("name: 'r' type: 'ReLU' bottom: 'x' top: 'y' "
                  "relu_param { negative_slope: -0.5 }", (3,))
    x = torch.tensor([-2.0, 1.0, 3.0], requires_grad=True)
    y = layer(x)[0]
    y.backward(torch.tensor([1.0, 2.0, 3.0]))
    assert y.tolist() == [1.0, 1.0, 3.0] and x.grad.tolist() == [-0.5, 2.0, 3.0]


def test_eltwise_max_keeps_caffes_comparisons_with_nan():
    """Caffe compares with the value picked so far: NaN never wins a comparison, so a NaN in
    bottom 0 loses, one in bottom 1 is picked and stays, and a later NaN is never picked."""
    nan = float("nan")
    a = torch.tensor([nan, 1.0, 2.0], requires_grad=True)
    b = torch.tensor([1.0, nan, 0.0], requires_grad=True)
    c = torch.tensor([2.0, 3.0, nan], requires_grad=True)
    layer = build("name: 'e' type: 'Eltwise' bottom: 'a' bottom: 'b' bottom: 'c' top: 'y' "
                  "eltwise_param { operation: MAX }", (3,), (3,), (3,))
    y = layer(a, b, c)[0]
    torch.testing.assert_close(y, torch.tensor([2.0, nan, 2.0]), equal_nan=True)
    y.sum().backward()
    assert a.grad.tolist() == [0, 0, 1] and b.grad.tolist() == [0, 1, 0] and c.grad.tolist() == [1, 0, 0]


def test_flatten_axes():
    layer = build("name: 'f' type: 'Flatten' bottom: 'x' top: 'y' flatten_param { axis: 1 end_axis: 2 }",
                  (2, 3, 4, 5))
    assert layer.top_shapes == [(2, 12, 5)]
    assert layer(torch.zeros(2, 3, 4, 5))[0].shape == (2, 12, 5)
    assert build("name: 'f' type: 'Flatten' bottom: 'x' top: 'y'", (2, 3, 4)).top_shapes == [(2, 12)]



def test_flatten_end_axis_just_before_axis_adds_a_unit_axis_as_caffe():
    """Found by tools/fuzz.py: axis -1, end_axis -2 was a torch error in forward; Caffe's
    count(axis, end_axis + 1) is 1 there (shape (2, 3, 1, 4), checked in pycaffe), and an
    end_axis further before axis is its CHECK."""
    layer = build("name: 'f' type: 'Flatten' bottom: 'x' top: 'y' "
                  "flatten_param { axis: -1 end_axis: -2 }", (2, 3, 4))
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert layer.top_shapes == [(2, 3, 1, 4)]
    assert torch.equal(layer(x)[0], x.reshape(2, 3, 1, 4))
    with pytest.raises(AllconvError, match=r"layer 'f' \(Flatten\): flatten_param.end_axis 0 "
                                           r"\(axis 0\) comes before flatten_param.axis 2"):
        build("name: 'f' type: 'Flatten' bottom: 'x' top: 'y' "
              "flatten_param { axis: 2 end_axis: 0 }", (2, 3, 4))


def test_split_gradients_add_up():
    x = torch.randn(3, requires_grad=True)
    y1, y2 = build("name: 's' type: 'Split' bottom: 'x' top: 'a' top: 'b'", (3,))(x)
    (2 * y1 + 3 * y2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 5.0))


# ---------------------------------------------------------------------------- registry

def test_unknown_type_lists_supported_types():
    with pytest.raises(AllconvError, match="layer 'm' \\(Mystery\\): unknown layer type "
                                           "\\(supported: .*Accuracy, .*Convolution.*\\)"):
        build("name: 'm' type: 'Mystery' bottom: 'x' top: 'y'", (1,))
    with pytest.raises(AllconvError, match="layer 'r' \\(Relu\\): unknown layer type; Caffe's "
                                           "types are case-sensitive: ReLU\\? \\(supported"):
        build("name: 'r' type: 'Relu' bottom: 'x' top: 'y'", (1,))
    with pytest.raises(AllconvError, match="layer 'c' \\(Convolutoin\\): unknown layer type "
                                           "\\(did you mean Convolution, Deconvolution\\?\\) "
                                           "\\(supported: AbsVal"):
        build("name: 'c' type: 'Convolutoin' bottom: 'x' top: 'y'", (1,))
    assert {"Input", "Data", "Convolution", "Pooling", "ReLU", "Dropout", "InnerProduct",
            "Softmax", "SoftmaxWithLoss", "Accuracy", "LRN", "Concat", "Eltwise", "Flatten",
            "Split"} <= set(LAYERS)


def test_wrong_number_of_bottoms():
    with pytest.raises(AllconvError, match="'loss' \\(SoftmaxWithLoss\\): needs 2 bottom"):
        build("name: 'loss' type: 'SoftmaxWithLoss' bottom: 'x' top: 'y'", (2, 3))


def test_no_warning_with_fillers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(IP.format("num_output: 2"), (1, 3))


# layers/convolution.py:56 `min(stride) <= 0` / `min(dilation) <= 0` -> `< 0` and :70
# `conv.num_output <= 0` / `self.group <= 0` -> `< 0` survived test_layers,
# test_layers_geometry, test_fuzz, test_blob_limits, test_net and the net fixtures (only a zero
# kernel is refused by a test). With the mutants a zero stride or group ends in a
# ZeroDivisionError, not the promised one-line AllconvError naming the layer; a zero
# num_output or dilation is accepted (Caffe: CHECK_GT(num_output, 0); CHECK_EQ(channels %
# group, 0) on group 0 is a division by zero).
@pytest.mark.parametrize("fields", ["num_output: 2 kernel_size: 1 stride: 0",
                                    "num_output: 2 kernel_size: 3 dilation: 0",
                                    "num_output: 0 kernel_size: 1",
                                    "num_output: 2 kernel_size: 1 group: 0"])
def test_conv_refuses_a_zero_stride_dilation_num_output_or_group(fields):
    from layer_kit import build
    from runtime.errors import AllconvError
    with pytest.raises(AllconvError, match="'conv' \\(Convolution\\): .*must be positive"):
        build(CONV.format(fields), (1, 2, 5, 5))


def torch_equal_params(x, y) -> bool:
    return all(torch.equal(p, q) for p, q in zip(x.learnable_params, y.learnable_params))


@pytest.mark.parametrize("kind, param", [("Flatten", ""),
                                         ("Reshape", "reshape_param { shape { dim: 0 } }")])
def test_shape_changing_layers_refuse_to_run_in_place(kind, param):
    """Caffe: "Flatten layer does not allow in-place computation" (Reshape likewise)."""
    with pytest.raises(AllconvError, match=f"{kind} cannot run in place"):
        build(f"name: 'f' type: '{kind}' bottom: 'x' top: 'x' {param}", (2, 3, 4))


@pytest.mark.parametrize("axis, index", [(-4, 0), (-1, 3), (3, 3)])
def test_a_negative_axis_counts_from_the_end_down_to_minus_the_axes(axis, index):
    """Caffe's CanonicalAxisIndex takes -num_axes <= axis < num_axes."""
    from runtime.layers.shapes import canonical_axis
    assert canonical_axis(axis, 4) == index
    for out_of_range in (-5, 4):
        with pytest.raises(AllconvError, match=f"axis {out_of_range} is out of range for a "
                                               "4-axis blob"):
            canonical_axis(out_of_range, 4)


def test_pooling_takes_one_or_two_tops_and_refuses_three():
    text = "name: 'p' type: 'Pooling' bottom: 'x' {} pooling_param {{ pool: MAX kernel_size: 2 }}"
    two = build(text.format("top: 'y' top: 'mask'"), (1, 1, 4, 4))
    assert len(two(torch.ones(1, 1, 4, 4))) == 2
    with pytest.raises(AllconvError, match="Pooling"):
        build(text.format("top: 'y' top: 'mask' top: 'z'"), (1, 1, 4, 4))
