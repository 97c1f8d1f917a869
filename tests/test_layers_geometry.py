"""Geometry layers (Slice, Crop, Reshape, Tile, SPP, ArgMax, Reduction, Filter, BatchReindex,
Silence, Deconvolution) against hand-computed Caffe rules; bad parameters as one line naming
the layer and the field. Real Caffe's values are in tests/fixtures (test_caffe_fixtures.py)."""
import pytest
import torch

from runtime.errors import AllconvError
from layer_kit import build, rand

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")
TEST = 1


# ---------------------------------------------------------------------------- Slice

SLICE = "name: 'slice' type: 'Slice' bottom: 'x' {tops} slice_param {{ {body} }}"


def slice_layer(shape, body, tops=2):
    return build(SLICE.format(tops=" ".join(f"top: 't{i}'" for i in range(tops)), body=body),
                 shape)


def test_slice_points_and_gradient():
    x = rand(2, 6, 3).requires_grad_()
    layer = slice_layer(x.shape, "slice_point: 1 slice_point: 4", tops=3)
    assert layer.top_shapes == [(2, 1, 3), (2, 3, 3), (2, 2, 3)]
    a, b, c = layer(x)
    torch.testing.assert_close(torch.cat([a, b, c], 1), x)
    (a.sum() + 2 * b.sum() + 3 * c.sum()).backward()
    torch.testing.assert_close(x.grad[0, :, 0], torch.tensor([1., 2, 2, 2, 3, 3]))


def test_slice_equal_parts_axis_and_legacy_slice_dim():
    assert slice_layer((4, 3, 6), "axis: -1", tops=3).top_shapes == [(4, 3, 2)] * 3
    assert slice_layer((4, 3, 6), "slice_dim: 0").top_shapes == [(2, 3, 6)] * 2
    assert slice_layer((4, 6), "").top_shapes == [(4, 3)] * 2       # default axis 1


@pytest.mark.parametrize("shape,body,tops,match", [
    ((2, 6), "axis: 1 slice_dim: 1", 2, "slice_param: give axis or slice_dim, not both"),
    ((2, 6), "slice_point: 2", 3, r"slice_param.slice_point: 1 point\(s\) for 3 tops"),
    ((2, 6), "slice_point: 3 slice_point: 2", 3, r"slice_point \[3, 2\] must increase"),
    ((2, 6), "slice_point: 0", 2, r"slice_point \[0\] must increase"),
    ((2, 6), "slice_point: 7", 2, r"at most the axis size 6"),
    # at the axis size: Caffe sets up an empty last top, then aborts at the first forward
    ((2, 6), "slice_point: 6", 2, r"top 't1' is empty, shape \(2, 0\); Caffe aborts when the "
                                  r"layer writes it \(blob.cpp: Check failed: data_\)"),
    ((2, 6), "axis: 0 slice_point: 2", 2, r"top 't1' is empty, shape \(0, 6\)"),
    ((2, 5), "", 2, "slice_param: 2 tops do not divide axis 1 of size 5"),
    ((2, 5), "slice_dim: 2", 2, "slice_param.slice_dim 2 is out of range"),
    ((2, 5), "axis: 2", 2, "axis 2 is out of range"),
])
def test_slice_errors_name_layer_and_field(shape, body, tops, match):
    with pytest.raises(AllconvError, match=r"^layer 'slice' \(Slice\): .*" + match):
        slice_layer(shape, body, tops)


# ---------------------------------------------------------------------------- Deconvolution

DECONV = "name: 'up' type: 'Deconvolution' bottom: 'x' top: 'y' convolution_param {{ {} }}"


@pytest.mark.parametrize("h,k,s,p,d,out", [
    (4, 3, 2, 1, 1, 7), (5, 4, 2, 1, 1, 10), (3, 3, 1, 0, 2, 7), (6, 64, 32, 16, 1, 192),
])
def test_deconvolution_output_size_and_weight_shape(h, k, s, p, d, out):
    layer = build(DECONV.format(f"num_output: 6 group: 2 kernel_size: {k} stride: {s} pad: {p} "
                                f"dilation: {d}"), (1, 4, h, h))
    assert layer.top_shapes == [(1, 6, out, out)]
    assert tuple(layer.blobs[0].shape) == (4, 3, k, k) and tuple(layer.blobs[1].shape) == (6,)
    assert layer(torch.zeros(1, 4, h, h))[0].shape == (1, 6, out, out)


def test_deconvolution_is_the_transpose_of_convolution():
    """<deconv(x), y> = <x, conv(y)> with the same weights, stride, pad and dilation."""
    spec = "num_output: 2 kernel_size: 3 stride: 2 pad: 1 dilation: 1 bias_term: false"
    up = build(DECONV.format(spec), (1, 3, 4, 4))
    down = build(DECONV.format(spec).replace("Deconvolution", "Convolution").replace(
        "num_output: 2", "num_output: 3"), (1, 2, 7, 7))
    with torch.no_grad():
        down.blobs[0].copy_(up.blobs[0])
    x, y = rand(1, 3, 4, 4), rand(1, 2, 7, 7, seed=1)
    torch.testing.assert_close((up(x)[0] * y).sum(), (x * down(y)[0]).sum())


@pytest.mark.parametrize("kernel,ramp", [
    (4, [0.25, 0.75, 0.75, 0.25]),
    # the reference build's centre (2f − 1 − f mod 2) / 2f: k = 3 (f = 2) is off-centre
    # (BVLC master centres it since its PR 5713, of after Caffe 1.0)
    (3, [0.25, 0.75, 0.75]),
    (5, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]),
])
def test_bilinear_filler_fcn_upsampling(kernel, ramp):
    layer = build(DECONV.format(f"num_output: 3 group: 3 kernel_size: {kernel} stride: 2 "
                                "bias_term: false weight_filler { type: 'bilinear' }"),
                  (1, 3, 4, 4))
    ramp = torch.tensor(ramp)
    torch.testing.assert_close(layer.blobs[0].detach(),
                               (ramp[:, None] * ramp[None, :]).expand(3, 1, kernel, kernel))


@pytest.mark.parametrize("spec,shape,match", [
    ("num_output: 2 kernel_size: 3 pad: 3", (1, 2, 1, 1), r"gives output size \(-3, -3\)"),
    ("num_output: 3 kernel_size: 2 group: 2", (1, 2, 4, 4),
     r"group 2 must divide the input channels \(2\) and num_output \(3\)"),
    ("num_output: 2 kernel_h: 2 kernel_w: 3 weight_filler { type: 'bilinear' }", (1, 2, 4, 4),
     r"bilinear filler needs a 4-d blob with square filters"),
])
def test_deconvolution_errors_name_layer_and_field(spec, shape, match):
    with pytest.raises(AllconvError, match=r"^layer 'up' \(Deconvolution\): .*" + match):
        build(DECONV.format(spec), shape)


@pytest.mark.parametrize("links,shapes,match", [
    ("bottom: 'a' bottom: 'b' top: 'y'", [(1, 2, 4, 4)] * 2,
     r"2 bottom\(s\) and 1 top\(s\): each bottom gives one top"),
    ("bottom: 'a' bottom: 'b' top: 'y' top: 'z'", [(1, 2, 4, 4), (1, 2, 4, 5)],
     r"all inputs must have the same shape: bottom 1 is \(1, 2, 4, 5\), bottom 0 "
     r"\(1, 2, 4, 4\)"),
])
@pytest.mark.parametrize("type_", ["Convolution", "Deconvolution"])
def test_convolution_takes_n_bottoms_of_one_shape_for_n_tops(type_, links, shapes, match):
    text = (f"name: 'c' type: '{type_}' {links} "
            "convolution_param {{ num_output: 2 kernel_size: 2 }}")
    with pytest.raises(AllconvError, match=rf"^layer 'c' \({type_}\): " + match):
        build(text.format(), *shapes)


# ---------------------------------------------------------------------------- Crop

CROP = "name: 'crop' type: 'Crop' bottom: 'x' bottom: 'ref' top: 'y' crop_param {{ {} }}"


def test_crop_offsets_and_gradient():
    x = rand(2, 3, 6, 7).requires_grad_()
    layer = build(CROP.format("axis: 1 offset: 1 offset: 2 offset: 3"), x.shape, (9, 2, 3, 4))
    assert layer.top_shapes == [(2, 2, 3, 4)]
    y = layer(x, torch.zeros(9, 2, 3, 4))[0]
    torch.testing.assert_close(y, x[:, 1:3, 2:5, 3:7])
    y.sum().backward()
    assert x.grad.sum() == y.numel() and x.grad[:, 0].sum() == 0
    one = build(CROP.format("offset: 2"), (1, 1, 5, 5), (1, 1, 2, 3))   # axis 2 by default
    z = torch.arange(25.).reshape(1, 1, 5, 5)
    torch.testing.assert_close(one(z, torch.zeros(1, 1, 2, 3))[0], z[:, :, 2:4, 2:5])


@pytest.mark.parametrize("body,ref,match", [
    ("offset: 19", (2, 1, 4, 5), r"crop_param.offset 19 on axis 2: a crop of 4 runs past the "
                                 r"bottom's size 20"),
    ("offset: 1 offset: 2 offset: 3", (2, 1, 4, 5), r"crop_param.offset: 3 values for the 2 "
                                                    r"cropped axes 2..3; give 1 or 2"),
    ("axis: 1", (2, 5, 4, 5), r"crop_param.offset 0 on axis 1: a crop of 5 runs past"),
    ("", (2, 1, 4), r"the reference bottom shape \(2, 1, 4\) has fewer axes"),
    ("axis: -5", (2, 1, 4, 5), r"axis -5 is out of range"),
])
def test_crop_errors_name_layer_and_field(body, ref, match):
    with pytest.raises(AllconvError, match=r"^layer 'crop' \(Crop\): " + match):
        build(CROP.format(body), (2, 3, 20, 21), ref)


# ---------------------------------------------------------------------------- Reshape

RESHAPE = "name: 'r' type: 'Reshape' bottom: 'x' top: 'y' reshape_param {{ {} }}"


@pytest.mark.parametrize("body,shape,top", [
    ("shape { dim: 0 dim: -1 }", (2, 3, 4, 5), (2, 60)),
    ("shape { dim: -1 dim: 0 }", (2, 3, 4), (8, 3)),    # 0 copies the bottom dim at its place
    ("shape { dim: 0 dim: 2 dim: -1 } axis: 1 num_axes: 2", (2, 4, 6, 5), (2, 4, 2, 3, 5)),
    ("shape { dim: 1 } axis: -1 num_axes: 0", (2, 3), (2, 3, 1)),
    ("shape { dim: 6 } axis: 0 num_axes: 2", (2, 3, 4), (6, 4)),
    ("shape { }", (1, 1), ()),
])
def test_reshape_copy_infer_axis_num_axes(body, shape, top):
    layer = build(RESHAPE.format(body), shape)
    assert layer.top_shapes == [top]
    x = rand(*shape)
    torch.testing.assert_close(layer(x)[0], x.reshape(top))


@pytest.mark.parametrize("body,shape,match", [
    ("shape { dim: -1 dim: -1 }", (2, 3), r"reshape_param.shape \[-1, -1\] has more than one -1"),
    ("shape { dim: -2 }", (2, 3), r"reshape_param.shape dim -2: give a size, 0 \(copy\)"),
    ("shape { dim: 0 dim: 0 dim: 0 }", (2, 3), r"reshape_param.shape dim 2 is 0 but the bottom "
                                               r"has no axis 2"),
    ("shape { dim: 4 dim: -1 }", (2, 3), r"reshape_param.shape \[4, -1\]: the bottom's count 6 is not divisible by the given dims' product 4"),
    ("shape { dim: 5 }", (2, 3), r"reshape_param.shape \[5\] gives top shape \(5,\)"),
    ("axis: 3", (2, 3), r"reshape_param.axis 3 is out of range for a 2-axis bottom"),
    ("axis: 1 num_axes: 2", (2, 3), r"reshape_param: axis 1 \+ num_axes 2 runs past"),
])
def test_reshape_errors_name_layer_and_field(body, shape, match):
    with pytest.raises(AllconvError, match=r"^layer 'r' \(Reshape\): " + match):
        build(RESHAPE.format(body), shape)


def test_reshape_refuses_in_place():
    with pytest.raises(AllconvError, match=r"^layer 'r' \(Reshape\): .*in place"):
        build("name: 'r' type: 'Reshape' bottom: 'x' top: 'x' reshape_param { shape { } }",
              (1,))


# ---------------------------------------------------------------------------- Tile, SPP

def test_tile_repeats_the_block_after_axis():
    x = torch.arange(6.).reshape(2, 3).requires_grad_()
    layer = build("name: 't' type: 'Tile' bottom: 'x' top: 'y' tile_param { axis: 0 tiles: 2 }",
                  x.shape)
    y = layer(x)[0]
    torch.testing.assert_close(y, torch.cat([x, x]).detach())
    y.backward(torch.arange(12.).reshape(4, 3))
    torch.testing.assert_close(x.grad, torch.tensor([[6., 8, 10], [12, 14, 16]]))


@pytest.mark.parametrize("body,match", [
    ("", "tile_param.tiles is required"), ("tiles: 0", "tile_param.tiles 0 must be positive"),
])
def test_tile_errors(body, match):
    with pytest.raises(AllconvError, match=r"^layer 't' \(Tile\): " + match):
        build(f"name: 't' type: 'Tile' bottom: 'x' top: 'y' tile_param {{ {body} }}", (2, 3))


SPP = "name: 'spp' type: 'SPP' bottom: 'x' top: 'y' spp_param {{ {} }}"


def test_spp_levels_pool_into_2_to_the_l_bins():
    x = rand(2, 3, 7, 9)
    layer = build(SPP.format("pyramid_height: 3"), x.shape)
    assert layer.top_shapes == [(2, 3 * (1 + 4 + 16))]
    y = layer(x)[0]
    torch.testing.assert_close(y[:, :3], x.amax((2, 3)))
    # level 1: 2x2 bins of kernel (4, 5), pad (1, 1): the first bin is rows 0..2, cols 0..3
    torch.testing.assert_close(y[:, 3:15].reshape(2, 3, 2, 2)[..., 0, 0], x[:, :, :3, :4].amax((2, 3)))
    one = build(SPP.format("pyramid_height: 1 pool: AVE"), x.shape)
    assert one.top_shapes == [(2, 3, 1, 1)]
    torch.testing.assert_close(one(x)[0], x.mean((2, 3), keepdim=True))


@pytest.mark.parametrize("body,shape,match", [
    ("", (1, 1, 4, 4), "spp_param.pyramid_height must be at least 1"),
    ("pyramid_height: 3 pool: STOCHASTIC", (1, 1, 4, 4), "spp_param.pool STOCHASTIC is not supported"),
    ("pyramid_height: 3", (1, 1, 5, 5), r"spp_param.pyramid_height 3: level 2 on a 5x5 bottom: "
                                        r"pad \(2, 2\) must be smaller than the kernel"),
    ("pyramid_height: 1", (1, 5, 5), r"bottom shape \(1, 5, 5\) is not 4-d"),
])
def test_spp_errors(body, shape, match):
    with pytest.raises(AllconvError, match=r"^layer 'spp' \(SPP\): " + match):
        build(SPP.format(body), shape)


# ---------------------------------------------------------------------------- ArgMax, Reduction

ARGMAX = "name: 'a' type: 'ArgMax' bottom: 'x' top: 'y' argmax_param {{ {} }}"


def test_argmax_ties_go_to_the_larger_index():
    x = torch.tensor([[3., 1., 3., 2., 3.]])
    layer = build(ARGMAX.format("top_k: 2 out_max_val: true"), x.shape)
    assert layer.top_shapes == [(1, 2, 2)]
    torch.testing.assert_close(layer(x)[0], torch.tensor([[[4., 2.], [3., 3.]]]))
    along = build(ARGMAX.format("axis: 0"), (3, 2))
    torch.testing.assert_close(along(torch.tensor([[1., 5.], [2., 5.], [2., 0.]]))[0],
                               torch.tensor([[2., 1.]]))


def test_argmax_top_is_padded_to_the_bottoms_axes():
    layer = build(ARGMAX.format(""), (2, 3, 4, 5))
    assert layer.top_shapes == [(2, 1, 1, 1)]
    x = rand(2, 3, 4, 5)
    torch.testing.assert_close(layer(x)[0].reshape(2),
                               x.reshape(2, -1).argmax(1).float())


@pytest.mark.parametrize("body,shape,match", [
    ("top_k: 7", (2, 2, 3), r"argmax_param.top_k 7 exceeds the 6 values"),
    ("top_k: 3 axis: 1", (2, 2, 3), r"argmax_param.top_k 3 exceeds the 2 values"),
    ("top_k: 0", (2, 3), r"argmax_param.top_k must be at least 1"),
])
def test_argmax_errors(body, shape, match):
    with pytest.raises(AllconvError, match=r"^layer 'a' \(ArgMax\): " + match):
        build(ARGMAX.format(body), shape)


@pytest.mark.parametrize("op,axis,coeff,fn", [
    ("SUM", 0, 1, lambda x: x.sum()),
    ("ASUM", 1, 2, lambda x: 2 * x.abs().sum((1, 2))),
    ("SUMSQ", -1, 1, lambda x: (x * x).sum(2)),
    ("MEAN", 1, 3, lambda x: 3 * x.mean((1, 2))),
])
def test_reduction_operations(op, axis, coeff, fn):
    x = rand(2, 3, 4)
    layer = build(f"name: 'r' type: 'Reduction' bottom: 'x' top: 'y' reduction_param {{ "
                  f"operation: {op} axis: {axis} coeff: {coeff} }}", x.shape)
    assert layer.top_shapes == [tuple(fn(x).shape)]
    torch.testing.assert_close(layer(x)[0], fn(x))


# ---------------------------------------------------------------------------- Filter, BatchReindex, Silence

NET_HEAD = ("layer { name: 'in' type: 'Input' top: 'x' top: 's' input_param { "
            "shape { dim: 4 dim: 2 } shape { dim: 4 dim: 1 } } }\n")


def test_filter_top_size_follows_the_selector_and_gradient_is_zero_elsewhere():
    from runtime.net import Net
    net = Net("force_backward: true\n" + NET_HEAD
              + "layer { name: 'f' type: 'Filter' bottom: 'x' bottom: 's' top: 'y' "
                "propagate_down: true propagate_down: false }", TEST)
    assert net.blobs["y"].shape == (4, 2)          # Caffe's first Reshape: N
    x = rand(4, 2)
    y = net.forward(x=x, s=torch.tensor([[0.], [2.], [0.], [-1.]]))["y"]
    torch.testing.assert_close(y, x[[1, 3]])
    assert net.blobs["y"].shape == (2, 2)          # after the forward: the selected items
    x.requires_grad_()      # (net.backward would abort as Caffe's: force_backward asks for s)
    net.blob_values(x=x, s=torch.tensor([[0.], [2.], [0.], [-1.]]))["y"].sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.] * 2, [1.] * 2] * 2))


def test_filter_selecting_nothing_runs_on_through_inner_product_and_loss():
    """No item selected: empty tops, and the layers after them (InnerProduct, SoftmaxWithLoss)
    run on an empty batch, loss 0, every gradient 0. (The reference Caffe build dies of an
    integer division by zero in its Softmax here; nothing to compare with.)"""
    from runtime.net import Net
    net = Net(NET_HEAD.replace("top: 's'", "top: 's' top: 'l'").replace(
                  "dim: 4 dim: 1 }", "dim: 4 dim: 1 } shape { dim: 4 }")
              + "layer { name: 'f' type: 'Filter' bottom: 'x' bottom: 'l' bottom: 's' "
                "top: 'y' top: 'yl' propagate_down: true propagate_down: false "
                "propagate_down: false }\n"
                "layer { name: 'ip' type: 'InnerProduct' bottom: 'y' top: 'z' "
                "inner_product_param { num_output: 3 } }\n"
                "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'z' bottom: 'yl' "
                "top: 'loss' loss_param { normalization: NONE } }", TEST)
    net.forward(x=rand(4, 2), s=torch.zeros(4, 1), l=torch.zeros(4))
    assert net.blobs["z"].shape == (0, 3) and float(net.blobs["loss"].data) == 0.0
    net.backward()
    assert not net.blobs["x"].diff.any() and not net.params["ip"][0].diff.any()


def test_layers_after_a_filter_reshape_to_the_selected_items_in_each_forward():
    """Caffe reshapes every layer in each forward: a Reduction MEAN over the batch divides by
    the items kept (it divided by the 4 of set-up: real Caffe 0.49197, allconv 0.12299 on a
    helper's net), a Slice on axis 0 cuts what is there (it failed on 3 rows), and both
    again at the next forward's count."""
    from runtime.net import Net
    net = Net(NET_HEAD + "layer { name: 'f' type: 'Filter' bottom: 'x' bottom: 's' top: 'y' }\n"
              "layer { name: 'm' type: 'Reduction' bottom: 'y' top: 'm' "
              "reduction_param { operation: MEAN axis: 0 } }\n"
              "layer { name: 'sl' type: 'Slice' bottom: 'y' top: 'a' top: 'b' "
              "slice_param { axis: 0 slice_point: 1 } }", TEST)
    x = rand(4, 2)
    for selector, kept in (([0., 1., 1., 1.], [1, 2, 3]), ([1., 0., 0., 1.], [0, 3])):
        out = net.forward(x=x, s=torch.tensor(selector).reshape(4, 1))
        torch.testing.assert_close(out["m"], x[kept].mean())
        torch.testing.assert_close(out["a"], x[kept[:1]])
        torch.testing.assert_close(out["b"], x[kept[1:]])


@pytest.mark.parametrize("tops,selector,match", [
    ("top: 'a'", (4, 2), r"the selector bottom shape \(4, 2\) must be 1 on every axis"),
    ("top: 'a' top: 'b'", (4, 1), r"needs one top per filtered bottom \(1\), got 2"),
    ("top: 'a'", (3, 1), r"bottom shape \(4, 2\) and the selector \(3, 1\) differ on axis 0"),
])
def test_filter_errors(tops, selector, match):
    with pytest.raises(AllconvError, match=r"^layer 'f' \(Filter\): " + match):
        build(f"name: 'f' type: 'Filter' bottom: 'x' bottom: 's' {tops}", (4, 2), selector)


def test_batch_reindex_gathers_and_sums_gradients():
    x = rand(3, 2).requires_grad_()
    layer = build("name: 'b' type: 'BatchReindex' bottom: 'x' bottom: 'i' top: 'y'", (3, 2), (4,))
    assert layer.top_shapes == [(4, 2)]
    y = layer(x, torch.tensor([2., 0., 2.9, 1.]))[0]    # 2.9 truncates to 2
    torch.testing.assert_close(y, x[[2, 0, 2, 1]].detach())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[1.] * 2, [1.] * 2, [2.] * 2]))
    with pytest.raises(AllconvError, match=r"^layer 'b' \(BatchReindex\): an index is outside "
                                           r"\[0, 3\) \(min 0, max 3\)"):
        layer(x, torch.tensor([0., 3., 1., 1.]))
    with pytest.raises(AllconvError, match=r"^layer 'b' \(BatchReindex\): the index bottom must "
                                           r"be 1-d"):
        build("name: 'b' type: 'BatchReindex' bottom: 'x' bottom: 'i' top: 'y'", (3, 2), (4, 1))


def test_silence_consumes_its_bottoms():
    from runtime.net import Net
    net = Net(NET_HEAD + "layer { name: 'q' type: 'Silence' bottom: 'x' bottom: 's' }", TEST)
    assert net.outputs == [] and net.layers[-1].top_shapes == []
    assert net.forward(x=rand(4, 2), s=torch.zeros(4, 1)) == {}


@pytest.mark.parametrize("kind, extra", [("Convolution", "num_output: 4 "), ("Im2col", "")])
def test_a_stride_past_the_input_is_one_window_and_its_backward_runs(kind, extra):
    """Stride 65536 on 8 + 2·1 padded: one window, as stride 10 gives (PyTorch's CPU backward
    segfaulted on such strides; Caffe computes them)."""
    text = (f"name: 'c' type: '{kind}' bottom: 'x' top: 'y' convolution_param {{ {extra}"
            "kernel_size: 3 pad: 1 stride: STRIDE weight_filler { type: 'gaussian' std: 1 } }")
    x = rand(2, 3, 8, 8).requires_grad_()
    far, near = (build(text.replace("STRIDE", str(s)), x.shape) for s in (65536, 10))
    if kind == "Convolution":
        near.blobs[0].data.copy_(far.blobs[0].data)
    (y,) = far(x)
    assert far.top_shapes == near.top_shapes and y.shape[2:] == (1, 1)
    torch.testing.assert_close(y, near(x)[0])
    y.square().sum().backward()
    grad, x.grad = x.grad.clone(), None
    near(x)[0].square().sum().backward()
    torch.testing.assert_close(grad, x.grad)


def test_im2col_copies_infinities_and_nan_as_caffe():
    """The reference build's columns of [[1, inf, 3], [4, 5, 6]] with a 2×2 kernel: the one-hot
    convolution made NaN of every column beside the inf (0 · inf)."""
    layer = build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' "
                  "convolution_param { kernel_size: 2 }", (1, 1, 2, 3))
    (y,) = layer(torch.tensor([[[[1.0, float("inf"), 3.0], [4.0, 5.0, 6.0]]]]))
    assert y.flatten().tolist() == [1.0, float("inf"), float("inf"), 3.0, 4.0, 5.0, 5.0, 6.0]
    (y,) = layer(torch.tensor([[[[1.0, float("nan"), 3.0], [4.0, 5.0, 6.0]]]]))
    assert y.flatten().isnan().tolist() == [False, True, True, False] + [False] * 4


@pytest.mark.parametrize("shape", [(1, 2, 5), (1, 2, 3, 4, 5)])
def test_im2col_of_one_or_three_spatial_axes_copies_an_inf_into_its_windows_only(shape):
    """Each column that reads the inf holds it; every other column is finite (Caffe's
    im2col_nd copies as im2col does)."""
    layer = build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' "
                  "convolution_param { kernel_size: 2 pad: 1 stride: 2 }", shape)
    x = torch.zeros(shape)
    x.view(-1)[3] = float("inf")
    (y,) = layer(x)
    marked = torch.zeros(shape)
    marked.view(-1)[3] = 1.0
    (reads,) = layer(marked)        # where a window reads the element
    assert torch.equal(y.isinf(), reads == 1) and not y.isnan().any() and reads.sum() > 0


@pytest.mark.parametrize("shape", [(2, 2, 7), (2, 2, 5, 6), (2, 2, 4, 5, 6)])
def test_im2col_orders_columns_as_a_one_hot_convolution_does(shape):
    """Channel c, kernel offset k (row-major) at column c·K + k, for 1 to 3 spatial axes:
    a grouped convolution with one-hot kernels (the exporter's) gives the same on finite
    values, dilation, padding, a stride and a window's overhang included."""
    from runtime.export.layers.im2col import one_hot_kernels
    from runtime.layers.convolution import convolve
    n = len(shape) - 2
    layer = build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' convolution_param { "
                  "kernel_size: 2 pad: 1 stride: 2 dilation: 2 }", shape)
    x = rand(*shape)
    kernels = torch.from_numpy(one_hot_kernels(shape[1], (2,) * n))
    want = convolve(x, kernels, None, (2,) * n, (1,) * n, (2,) * n, (2,) * n, shape[1])
    assert torch.equal(layer(x)[0], want)


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 0, 5, 5)])
def test_im2col_of_no_channels_has_no_columns(shape):
    """torch's unfold refuses 0 channels; Caffe's columns are then empty."""
    layer = build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' "
                  "convolution_param { kernel_size: 3 }", shape)
    assert layer(torch.zeros(shape))[0].shape == shape[:2] + (3,) * (len(shape) - 2)


def test_im2col_of_an_empty_batch_is_empty():
    """A Filter that keeps no item: the new reshape could not infer its -1 (a traceback)."""
    layer = build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' "
                  "convolution_param { kernel_size: 3 }", (2, 2, 5, 5))
    x = torch.zeros(0, 2, 5, 5, requires_grad=True)
    (y,) = layer(x)
    assert y.shape == (0, 18, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5)


CONV = ("name: 'conv' type: 'Convolution' bottom: 'x' top: 'y' convolution_param {{ "
        "num_output: 2 {} weight_filler {{ type: 'gaussian' std: 0.1 }} }}")


@pytest.mark.parametrize("fields, shape, message", [
    ("kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 2, 5, 5),
     "kernel_h/kernel_w need 2-d convolution and no repeated kernel"),
    ("kernel_h: 3 kernel_w: 3", (1, 2, 5, 5, 5), "kernel_h/kernel_w need 2-d convolution"),
    ("kernel_size: 3 kernel_size: 3 kernel_size: 3", (1, 2, 5, 5),
     "kernel needs 1 or 2 values for 2 spatial axes, got 3"),
    ("kernel_size: 1", (1, 2, 3, 3, 3, 3), "has 4 spatial axes; 1 to 3 are supported"),
])
def test_convolution_geometry_caffe_refuses_is_one_line(fields, shape, message):
    with pytest.raises(AllconvError, match=message):
        build(CONV.format(fields), shape)


def test_crop_needs_one_offset_or_one_per_cropped_axis():
    with pytest.raises(AllconvError, match=r"crop_param.offset: 2 values for the 3 cropped axes"):
        build("name: 'c' type: 'Crop' bottom: 'x' bottom: 'r' top: 'y' "
              "crop_param { axis: 1 offset: 1 offset: 2 }", (2, 5, 6, 7), (2, 3, 3, 3))
