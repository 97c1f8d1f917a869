"""Layers at the edges of their inputs and settings, each against the reference build's
value or refusal (or Caffe's source where the reference build cannot run it): from mutation
rounds over the layer files, each test killing changes the other tests let live. The values
on the nets of tests/fixtures/edge_nets are tools/caffe_reference/layer_edge_values.py's."""
from pathlib import Path

import pytest
import torch

from layer_kit import build, rand
from runtime import TEST, Net
from runtime.errors import AllconvError
from runtime.layers.relu import rule_backward
from runtime.proto import pb


CONV = ("name: 'c' type: 'Convolution' bottom: 'x' top: 'y' convolution_param {{ num_output: 1 "
        "{} weight_filler {{ type: 'constant' value: 2 }} "
        "bias_filler {{ type: 'constant' value: 0.5 }} }}")


def test_a_stride_past_the_unpadded_input_is_one_window_of_padding():
    # the reference build: y = [[0.5]] (the bias on zeros), no diff to x
    x = rand(1, 1, 3, 3).requires_grad_()
    layer = build(CONV.format("kernel_size: 1 pad: 2 stride: 10"), x.shape)
    assert layer.top_shapes == [(1, 1, 1, 1)]
    y = layer(x)[0]
    assert y.tolist() == [[[[0.5]]]]
    y.sum().backward()
    assert x.grad.abs().sum() == 0


@pytest.mark.parametrize("fields,match", [
    ("kernel_size: 3", r"gives output size \(0, 0\)"),    # Caffe: blob.cpp "Check failed: data_"
    ("kernel_h: 3", "kernel_h and kernel_w must be given together"),    # "Filter dimensions
])                                                                      # must be nonzero"
def test_convolutions_caffe_aborts_on_are_refused(fields, match):
    with pytest.raises(AllconvError, match=match):
        build(CONV.format(fields), (1, 1, 2, 2))


ELTWISE = "name: 'e' type: 'Eltwise' bottom: 'a' bottom: 'b' top: 'y' eltwise_param {{ {} }}"


def test_eltwise_sum_leaves_out_a_bottom_of_coeff_0_infinities_and_nan_included():
    a = torch.tensor([[1., 5, 3]])
    b = torch.tensor([[float("inf"), float("nan"), -float("inf")]])
    layer = build(ELTWISE.format("operation: SUM coeff: 1 coeff: 0"), a.shape, b.shape)
    assert layer(a, b)[0].tolist() == [[1, 5, 3]]      # the reference build's


def test_eltwise_prod_with_coeff_is_refused_as_caffe_aborts():
    # eltwise_layer.cpp: "Eltwise layer only takes coefficients for summation."
    with pytest.raises(AllconvError, match="coeff is only for operation SUM"):
        build(ELTWISE.format("operation: PROD coeff: 1 coeff: 2"), (1, 3), (1, 3))


def test_eltwise_max_takes_and_ignores_coeff_as_caffe():
    # eltwise_layer.cpp checks coeff only against PROD (and one per bottom); the reference
    # build runs MAX with coeff: 1 coeff: 2 and gives the plain maximum
    layer = build(ELTWISE.format("operation: MAX coeff: 1 coeff: 2"), (1, 3), (1, 3))
    y = layer(torch.tensor([[1., 5, 3]]), torch.tensor([[2., 4, 3]]))[0]
    assert y.tolist() == [[2, 5, 3]]


@pytest.mark.parametrize("op,ignores", [("SUM", True), ("PROD", False), ("MAX", False)])
def test_an_eltwise_backward_depends_on_the_input_unless_it_sums(op, ignores):
    from runtime.reconstruction import backward_ignores_input
    assert backward_ignores_input(build(ELTWISE.format(f"operation: {op}"), (1, 3), (1, 3))) \
        is ignores


def test_a_batchnorm_on_the_batchs_statistics_depends_on_its_input():
    from runtime.reconstruction import backward_ignores_input
    text = "name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y'"
    assert backward_ignores_input(build(text, (2, 3), phase=pb.TEST))
    assert not backward_ignores_input(build(text, (2, 3), phase=pb.TRAIN))


def test_scale_and_bias_say_no_batch_axis_of_a_scalar_second_bottom():
    # export's batch flow: a 0-d bottom 1 holds no axis of bottom 0's (ONNX export asks)
    for kind in ("Bias", "Scale"):
        text = f"name: 'l' type: '{kind}' bottom: 'x' bottom: 'v' top: 'y'"
        field = f"{kind.lower()}_param"
        layer = build(text, (2, 3), ())
        assert layer.operand_batch_axis(0) is None
        layer = build(f"{text} {field} {{ axis: 0 }}", (2, 3), (2, 3))
        assert layer.operand_batch_axis(0) == 0 and layer.operand_batch_axis(1) == 1


def test_prelu_refuses_a_bottom_of_other_channels_on_reshape():
    layer = build("name: 'p' type: 'PReLU' bottom: 'x' top: 'y'", (2, 3))
    with pytest.raises(AllconvError, match="has 4 channels; the slopes have 3"):
        layer.reshape([(2, 4)])


def test_power_of_no_shift_takes_caffes_y_over_x_gradient_where_the_base_overflows():
    # the reference build: d_x = [inf, inf, inf] (power · y / x), not NaN (y / base at inf)
    x = torch.tensor([1e10, 2.0, -1e-20]).requires_grad_()
    layer = build("name: 'p' type: 'Power' bottom: 'x' top: 'y' "
                  "power_param { power: 3 scale: 1e30 }", x.shape)
    layer(x)[0].sum().backward()
    assert x.grad.tolist() == [float("inf")] * 3


def test_an_im2col_of_no_output_position_is_refused_as_caffe_aborts():
    # the reference build: blob.cpp "Check failed: data_" (an empty top)
    with pytest.raises(AllconvError, match=r"smaller than the kernel \(3, 3\)"):
        build("name: 'c' type: 'Im2col' bottom: 'x' top: 'y' convolution_param { kernel_size: 3 }",
              (1, 1, 2, 2))


def test_contrastive_similarity_is_the_int_cast_of_the_label():
    # contrastive_loss_layer.cpp: static_cast<int>(y) != 0 is similar: -1 similar, 0.5 not;
    # the reference build gives 0.135
    a = torch.tensor([0.1, 0.2, 0.3, 0.0]).reshape(2, 2, 1, 1)
    b = torch.zeros(2, 2, 1, 1)
    s = torch.tensor([-1.0, 0.5]).reshape(2, 1, 1, 1)
    layer = build("name: 'l' type: 'ContrastiveLoss' bottom: 'a' bottom: 'b' bottom: 's' "
                  "top: 'loss' contrastive_loss_param { margin: 1 }", a.shape, b.shape, s.shape)
    assert layer(a, b, s)[0].item() == pytest.approx(0.135, rel=1e-6)


def test_infogain_refuses_the_legacy_normalize_as_caffe_master():
    # infogain_loss_layer.cpp (master): CHECK(!has_normalize()) "normalize is deprecated"
    with pytest.raises(AllconvError, match="normalize is deprecated"):
        build("name: 'l' type: 'InfogainLoss' bottom: 'x' bottom: 'y' bottom: 'h' top: 'loss' "
              "loss_param { normalize: true }", (2, 3), (2,), (3, 3))


def test_euclidean_loss_gives_a_4d_second_bottom_its_diff():
    # the reference build, force_backward: d_b = -(a - b) / N
    from runtime import TEST
    from runtime.net import Net
    net = Net('force_backward: true\n'
              'layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 '
              'dim: 1 dim: 1 dim: 2 } shape { dim: 2 dim: 1 dim: 1 dim: 2 } } }\n'
              'layer { name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" }\n',
              TEST)
    net.forward(a=torch.tensor([1., 2, 3, 4]).reshape(2, 1, 1, 2),
                b=torch.tensor([0., 1, 1, 1]).reshape(2, 1, 1, 2))
    net.backward()
    assert net.blobs["b"].diff.reshape(-1).tolist() == [-0.5, -0.5, -1.0, -1.5]


def test_legacy_contrastive_gradient_is_0_where_d_squared_meets_the_margin():
    # contrastive_loss_layer.cpp: (margin - d²) > 0 only; the reference build: d_a = [0, 0]
    a = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1).requires_grad_()
    layer = build("name: 'l' type: 'ContrastiveLoss' bottom: 'a' bottom: 'b' bottom: 's' "
                  "top: 'loss' contrastive_loss_param { margin: 1 legacy_version: true }",
                  (1, 2, 1, 1), (1, 2, 1, 1), (1, 1, 1, 1))
    layer(a, torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, 1))[0].backward()
    assert a.grad.abs().sum() == 0


def test_threshold_at_the_threshold_is_0():
    # threshold_layer.cpp: x > threshold; the reference build: [0, 0, 1]
    layer = build("name: 't' type: 'Threshold' bottom: 'x' top: 'y' "
                  "threshold_param { threshold: 0.5 }", (1, 3))
    assert layer(torch.tensor([[0.5, 0.4, 0.6]]))[0].tolist() == [[0, 0, 1]]


def test_hinge_refuses_labels_fewer_than_its_items():
    with pytest.raises(AllconvError, match="holds 0 labels"):
        build("name: 'h' type: 'HingeLoss' bottom: 'x' bottom: 'l' top: 'loss'", (2, 3), (2, 0))


SWL = "name: 's' type: 'SoftmaxWithLoss' bottom: 'x' bottom: 'l' top: 'loss' loss_param {{ {} }}"


def test_a_loss_of_no_valid_position_or_no_item_is_0():
    # get_normalizer: max(1, normalizer); the reference build: all ignored -> loss 0, diff 0
    x = torch.arange(6.).reshape(2, 3).requires_grad_()
    loss = build(SWL.format("ignore_label: 1"), (2, 3), (2,))(x, torch.tensor([1., 1]))[0]
    loss.backward()
    assert loss.item() == 0 and x.grad.abs().sum() == 0
    empty = build(SWL.format("normalization: BATCH_SIZE"), (0, 3), (0,))
    assert empty(torch.zeros(0, 3), torch.zeros(0))[0].item() == 0


def test_a_loss_of_scalar_bottoms_is_refused_as_caffes_shape_0_check():
    with pytest.raises(AllconvError, match="same first dimension"):
        build("name: 'l' type: 'EuclideanLoss' bottom: 'a' bottom: 'b' top: 'loss'", (), ())


def test_sigmoid_cross_entropy_casts_a_target_to_int_before_it_is_compared_with_ignore_label():
    # sigmoid_cross_entropy_loss_layer.cpp (master): static_cast<int>(target) == ignore_label_
    layer = build("name: 'l' type: 'SigmoidCrossEntropyLoss' bottom: 'x' bottom: 't' top: 'loss' "
                  "loss_param { ignore_label: -1 }", (1, 3), (1, 3))
    x = torch.tensor([[2., 3, -5]])
    assert layer(x, torch.tensor([[-1.5, 1, 0]]))[0].item() == \
        layer(x, torch.tensor([[-1.0, 1, 0]]))[0].item()


IP = "name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y' inner_product_param {{ {} }}"


def test_inner_product_refuses_a_bottom_reshaped_without_its_axis():
    # Caffe's CanonicalAxisIndex(2) of a 2-axis bottom aborts
    layer = build(IP.format("num_output: 2 axis: 2 weight_filler { type: 'constant' }"), (2, 3, 1))
    with pytest.raises(AllconvError, match="gives 1 inputs from axis 2"):
        layer.reshape([(2, 3)])


def test_inner_product_of_num_output_0_is_refused_as_caffe_aborts():
    # the reference build: blob.cpp "Check failed: data_"
    with pytest.raises(AllconvError, match="num_output must be positive"):
        build(IP.format("num_output: 0"), (2, 3))


def test_concat_refuses_bottoms_that_differ_before_the_concat_axis():
    # concat_layer.cpp: "All inputs must have the same shape, except at concat_axis."
    with pytest.raises(AllconvError, match="differ off the concat axis 1"):
        build("name: 'c' type: 'Concat' bottom: 'a' bottom: 'b' top: 'y'", (2, 3), (4, 5))


def test_concat_with_both_axis_and_concat_dim_is_refused_as_caffe():
    # concat_layer.cpp:12 in the reference build: "Either axis or concat_dim should be
    # specified; not both." (the runtime concatenated along concat_dim)
    with pytest.raises(AllconvError, match="Either axis or concat_dim should be specified; "
                                           "not both"):
        build("name: 'c' type: 'Concat' bottom: 'a' bottom: 'b' top: 'y' "
              "concat_param { axis: 1 concat_dim: 0 }", (2, 3), (2, 3))


def test_sigmoid_cross_entropy_of_confident_right_answers_is_0_as_caffe():
    # sigmoid_cross_entropy_loss_layer.cpp: log(1 + exp(-|x|)) in float, 0 for |x| > ~17; the
    # reference build gives loss 0.0 (log1p gave 2.08e-9)
    layer = build("name: 'l' type: 'SigmoidCrossEntropyLoss' bottom: 'x' bottom: 't' "
                  "top: 'loss'", (1, 3), (1, 3))
    loss = layer(torch.tensor([[20., 30, -25]]), torch.tensor([[1., 1, 0]]))[0]
    assert loss.item() == 0.0


@pytest.mark.parametrize("norm, loss, diff", [
    ("L1", 1.75, [-0.5, 0, 0, 0.5, 0.5, -0.5]),
    ("L2", 1.695, [-0.5, 0, 0, 1.3, 0.8, -0.9])])
def test_a_hinge_margin_of_nan_is_0_as_caffes_max(norm, loss, diff):
    """hinge_loss_layer.cpp's std::max(0, 1 ± x) makes a NaN margin 0 (torch.relu kept it):
    the reference build's loss and diff (helper caffe39)."""
    layer = build("name: 'h' type: 'HingeLoss' bottom: 'x' bottom: 'l' top: 'loss' "
                  f"hinge_loss_param {{ norm: {norm} }}", (2, 3), (2,))
    x = torch.tensor([[0.5, float("nan"), -2.0], [0.3, -0.2, 0.1]], requires_grad=True)
    top = layer(x, torch.tensor([0.0, 2.0]))[0]
    top.backward()
    assert top.item() == pytest.approx(loss)
    assert x.grad.flatten().tolist() == pytest.approx(diff)


def test_dummy_data_refuses_shape_with_legacy_fields():
    # layers-27. Caffe: "Both shape and legacy fields were specified"
    with pytest.raises(AllconvError, match="both shape and legacy"):
        build('name: "d" type: "DummyData" top: "y" '
              'dummy_data_param { shape { dim: 2 } num: 2 }')


def test_a_leaky_relus_deconvnet_and_guided_rules_let_the_slope_through():
    # layers-02: with slope s the gates pass s times the signal where they block it
    f = torch.tensor([1.0, -1.0, 2.0, -2.0])
    signal = torch.tensor([1.0, 1.0, -1.0, -1.0])
    deconv = rule_backward(f, signal, 0.25, "deconvnet")
    assert deconv.tolist() == [1.0, 1.0, -0.25, -0.25]
    guided = rule_backward(f, signal, 0.25, "guided")
    assert guided.tolist() == [1.0, 0.25, -0.25, -0.0625]


def test_relus_gradient_at_zero_is_the_slope():
    # layers-01: Caffe's ReLU backward: top_diff * ((x > 0) + slope * (x <= 0))
    f, signal = torch.tensor([0.0, 1.0, -1.0]), torch.ones(3)
    assert rule_backward(f, signal, 0.25, "backprop").tolist() == [0.25, 1.0, 0.25]
    assert rule_backward(f, signal, 0.25, "guided").tolist() == [0.25, 1.0, 0.25]


EDGE_NETS = Path(__file__).resolve().parent / "fixtures" / "edge_nets"


def edge_net(name):
    return (EDGE_NETS / f"{name}.prototxt").read_text()


# ------------------------------------------------------------------ refusals Caffe CHECKs

@pytest.mark.parametrize("name,match", [
    # base_conv_layer.cpp: "All inputs must have the same shape." (a batch of 1 and of 2)
    ("conv_bottoms_differ_in_batch", r"all inputs must have the same shape: bottom 1 is "
                                     r"\(2, 2, 4, 4\), bottom 0 \(1, 2, 4, 4\)"),
    # base_conv_layer.cpp: "kernel_size must be specified once, or once per spatial dimension
    # (kernel_size specified 2 times; 3 spatial dims)."
    ("conv3d_two_kernel_values", r"kernel needs 1 or 3 values for 3 spatial axes, got 2"),
    # pooling_layer.cpp: "With Global_pooling: true; only pad = 0 and stride = 1"
    ("pool_global_stride2", r"global_pooling needs pad 0 and stride 1"),
    # pooling_layer.cpp computes ceil((2 - 3) / 1) + 1 = 0 rows; blob.cpp: "Check failed: data_"
    ("pool_output_size_0", r"bottom shape \(1, 1, 2, 2\) is smaller than the kernel"),
    # blob.hpp CanonicalAxisIndex: "axis 4 out of range for 4-D Blob with shape 2 3 2 2 (24)"
    ("ip_axis_out_of_range", r"axis 4 is out of range for a 4-axis blob"),
    # concat_layer.cpp: "All inputs must have the same #axes." (2 vs. 3)
    ("concat_bottoms_differ_in_axes", r"bottom shapes \(2, 3\) and \(2, 3, 1\) differ off the "
                                      r"concat axis 1"),
    # dummy_data_layer.cpp: "Number of data fillers must be 0, 1 or equal to the number of
    # tops: 3; you specified 2 data fillers."
    ("dummy_two_fillers_three_tops", r"number of data fillers must be 0, 1 or equal to the "
                                     r"number of tops: 3; you specified 2"),
])
def test_nets_the_reference_build_aborts_on_are_refused_in_one_line(name, match):
    with pytest.raises(AllconvError, match=match):
        Net(edge_net(name), TEST)


# ------------------------------------------------------------------ values

def test_log_of_base_10_multiplies_by_caffes_float_reciprocal():
    """log_base10 at (10, 100, 0.1): the reference build's top is (0.99999994, 1.9999999,
    -0.99999994), log(x) times the float 1 / ln 10, not log(x) / ln 10 (1, 2, -1)."""
    y = Net(edge_net("log_base10"), TEST).forward(x=torch.tensor([[10.0, 100.0, 0.1]]))["y"]
    expected = torch.tensor([[0.99999994, 1.9999999, -0.99999994]])
    assert torch.equal(y, expected)


def test_bnll_above_10_keeps_log_one_plus_exp_minus_x():
    """bnll_above_10 at (9.5, 10.5, 11, 12): the reference build's top is (9.500074, 10.500028,
    11.000017, 12.000006), x + log(1 + e^-x): e^-x is still above an ulp of x there (the
    runtime may differ from it by an ulp)."""
    x = torch.tensor([[9.5, 10.5, 11.0, 12.0]])
    y = Net(edge_net("bnll_above_10"), TEST).forward(x=x)["y"]
    torch.testing.assert_close(y, torch.tensor([[9.500074, 10.500028, 11.000017, 12.000006]]),
                               rtol=0, atol=2e-6)


def test_pooling_takes_kernel_size_beside_a_lone_kernel_h_as_caffe():
    """pool_kernel_size_and_kernel_h (MAX, kernel_size 2, kernel_h 3, stride 1, on 5 x 6):
    pooling_layer.cpp's checks pass (!has_kernel_size != !(has_kernel_h && has_kernel_w)) and it
    pools with kernel_size; the reference build's top is (1, 1, 4, 5)."""
    net = Net(edge_net("pool_kernel_size_and_kernel_h"), TEST)
    x = torch.arange(30.0).reshape(1, 1, 5, 6)
    y = net.forward(x=x)["y"]
    assert y.shape == (1, 1, 4, 5)
    assert torch.equal(y, torch.nn.functional.max_pool2d(x, 2, 1))


def test_softmax_loss_takes_normalization_over_the_legacy_normalize():
    """swl_normalization_beside_normalize (normalization FULL, normalize false; scores 0 on
    2 x 3 x 2 x 2, labels 0): the reference build's loss is log 3 = 1.0986123, the sum over 8
    positions over 8 (FULL), not over the batch of 2 (BATCH_SIZE, normalize's)."""
    net = Net(edge_net("swl_normalization_beside_normalize"), TEST)
    loss = net.forward(s=torch.zeros(2, 3, 2, 2), l=torch.zeros(2, 1, 2, 2))["loss"]
    torch.testing.assert_close(loss, torch.tensor(1.0986123))


def test_accuracy_over_axis_2_ranks_the_scores_along_that_axis():
    """accuracy_axis2: scores (7·i mod 11) over 2 x 3 x 4, classes along axis 2, labels
    (3, 2, 0; 2, 1, 1): the reference build's accuracy is 4/6 = 0.6666667."""
    s = (torch.arange(24.0) * 7 % 11).reshape(2, 3, 4)
    labels = torch.tensor([[3.0, 2, 0], [2, 1, 1]])
    acc = Net(edge_net("accuracy_axis2"), TEST).forward(s=s, l=labels)["acc"]
    torch.testing.assert_close(acc, torch.tensor(0.6666667))


def test_accuracy_takes_top_k_equal_to_the_classes():
    """accuracy_top_k_all_classes (top_k 3 of 3 classes): accuracy_layer.cpp checks top_k <=
    count / label count; the reference build's accuracy is 1."""
    net = Net(edge_net("accuracy_top_k_all_classes"), TEST)
    acc = net.forward(s=torch.arange(12.0).reshape(4, 3), l=torch.tensor([0.0, 1, 2, 0]))["acc"]
    assert acc.item() == 1.0


def test_an_lrn_within_channel_honours_propagate_down_false():
    """lrn_within_no_propagate_down, data (0, 0.1, ..., 0.8), t 0, t2 1: the reference build's
    losses are 1.616365 and 0.41, and the diff of h (the LRN's bottom) is loss2's alone,
    (-0.35, -0.15, 0.25, 0.45) per channel; conv's weight diff (0.24, 0.26, 0.3, 0.32) per
    output, its bias diff (0.2, 0.2). (ACROSS_CHANNELS writes the bottom diff whatever
    propagate_down says; WITHIN_CHANNEL's Backward asks it first.)"""
    net = Net(edge_net("lrn_within_no_propagate_down"), TEST)
    out = net.forward(data=torch.arange(9.0).reshape(1, 1, 3, 3) / 10,
                      t=torch.zeros(1, 2, 2, 2), t2=torch.ones(1, 2, 2, 2))
    torch.testing.assert_close(out["loss"], torch.tensor(1.616365))
    torch.testing.assert_close(out["loss2"], torch.tensor(0.41))
    net.backward()
    torch.testing.assert_close(net.blobs["h"].diff.ravel(),
                               torch.tensor([-0.35, -0.15, 0.25, 0.45] * 2))
    torch.testing.assert_close(net.params["conv"][0].diff.ravel(),
                               torch.tensor([0.24, 0.26, 0.3, 0.32] * 2))
    torch.testing.assert_close(net.params["conv"][1].diff, torch.tensor([0.2, 0.2]))


def test_eltwise_prod_without_stable_grad_divides_before_it_multiplies():
    """eltwise_prod_unstable_large, a (1e20, 2), b (1e10, 3), top diff (1e10, 1e38): the
    reference build's top is (1e30, 6) and its diffs a (1e20, 3e38), b (1e30, 2e38): (top /
    bottom) · top diff, finite where top · top diff would overflow to inf."""
    net = Net(edge_net("eltwise_prod_unstable_large"), TEST)
    y = net.forward(a=torch.tensor([[1e20, 2.0]]), b=torch.tensor([[1e10, 3.0]]))["y"]
    torch.testing.assert_close(y, torch.tensor([[1e30, 6.0]]))
    net.backward(y=torch.tensor([[1e10, 1e38]]))
    torch.testing.assert_close(net.blobs["a"].diff, torch.tensor([[1e20, 3e38]]))
    torch.testing.assert_close(net.blobs["b"].diff, torch.tensor([[1e30, 2e38]]))


def test_batchnorm_refuses_a_reshape_to_other_channels():
    """batchnorm_3_channels reshaped to 2 x 4 x 2 x 2: batch_norm_layer.cpp's Reshape,
    "Check failed: bottom[0]->shape(1) == channels_ (4 vs. 3)"."""
    net = Net(edge_net("batchnorm_3_channels"), TEST)
    net.blobs["x"].reshape(2, 4, 2, 2)
    with pytest.raises(AllconvError, match=r"bottom shape \(2, 4, 2, 2\) has 4 channels; the "
                                           r"blobs have 3"):
        net.reshape()


def test_a_bias_by_a_scalar_bottom_ignores_an_out_of_range_axis():
    """bias_scalar_bottom_axis_out_of_range, x = 0..5 (2 x 3), z (1, 2, 3, 4) summed to a
    0-axis s = 10: bias_layer.cpp's Reshape takes axis 0 for a scalar bias without reading
    bias_param.axis 5; the reference build's top is x + 10."""
    net = Net(edge_net("bias_scalar_bottom_axis_out_of_range"), TEST)
    y = net.forward(x=torch.arange(6.0).reshape(2, 3), z=torch.tensor([1.0, 2, 3, 4]))["y"]
    assert y.tolist() == [[10, 11, 12], [13, 14, 15]]


def test_a_learned_one_value_scale_on_one_value_keeps_the_last_backwards_diff():
    """scale_learned_one_value_diff_overwritten (factor 2, t 1), x = 3 then x = 5, two passes
    without clearing diffs: the reference build's losses 12.5 and 40.5, and the factor's diff
    15 after the first and 45 (the second's alone, not 60) after the second: the eltwise
    product is written into the diff."""
    net = Net(edge_net("scale_learned_one_value_diff_overwritten"), TEST)
    diffs = []
    for x, loss in ((3.0, 12.5), (5.0, 40.5)):
        out = net.forward(x=torch.tensor([[x]]), t=torch.tensor([[1.0]]))
        assert out["loss"].item() == loss
        net.backward()
        diffs.append(net.params["sc"][0].diff.tolist())
    assert diffs == [[15.0], [45.0]]


def test_lstm_unit_forgets_a_nan_forget_gate_where_cont_is_0():
    """lstm_unit_nan_forget_gate_cont0, c_prev 2, gate inputs (i, f, o, g) = (0, NaN, 0, 0.5),
    cont (0, 1): the reference build's c_t is (0.23105858, NaN) and h_t (0.11351631, NaN):
    lstm_unit_layer.cpp takes f = 0 where cont is 0, whatever the gate."""
    net = Net(edge_net("lstm_unit_nan_forget_gate_cont0"), TEST)
    gates = torch.tensor([0.0, float("nan"), 0.0, 0.5]).repeat(2).reshape(1, 2, 4)
    out = net.forward(c=torch.full((1, 2, 1), 2.0), g=gates, k=torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(out["c_t"], torch.tensor([[[0.23105858], [float("nan")]]]),
                               equal_nan=True)
    torch.testing.assert_close(out["h_t"], torch.tensor([[[0.11351631], [float("nan")]]]),
                               equal_nan=True)


def test_crop_by_a_reference_of_more_axes_reads_only_the_cropped_axes():
    """crop_reference_with_more_axes (offset 1; data 0..15 as 1 x 1 x 4 x 4, reference
    1 x 1 x 2 x 2 x 5): the reference build's top is 1 x 1 x 2 x 2, (5, 6; 9, 10)."""
    net = Net(edge_net("crop_reference_with_more_axes"), TEST)
    assert tuple(net.blobs["crop"].data.shape) == (1, 1, 2, 2)      # as set up
    crop = net.forward(data=torch.arange(16.0).reshape(1, 1, 4, 4))["crop"]
    assert crop.tolist() == [[[[5, 6], [9, 10]]]]


def test_fractional_labels_are_truncated_as_caffes_int_cast():
    """labels_fractional: scores (0.5, 2, -1; 1, -0.5, 0.25), labels (1.7, 0.6), H (1, 0.5, 0;
    0, 1, 0.5; 0.25, 0, 1): the reference build reads labels (1, 0) (static_cast<int>) and
    gives SoftmaxWithLoss 0.38464355, Accuracy 1, HingeLoss 1.625, MultinomialLogisticLoss
    0.38464355 (of the softmax) and InfogainLoss 1.7019653 (the reference build's of the
    softmax; the runtime's, master's, takes the scores and applies it itself)."""
    text = edge_net("labels_fractional")
    assert text.count('bottom: "p" bottom: "l" bottom: "H"') == 1
    net = Net(text.replace('bottom: "p" bottom: "l" bottom: "H"',
                           'bottom: "s" bottom: "l" bottom: "H"'), TEST)
    out = net.forward(s=torch.tensor([[0.5, 2.0, -1.0], [1.0, -0.5, 0.25]]),
                      l=torch.tensor([1.7, 0.6]),
                      H=torch.tensor([[1, 0.5, 0], [0, 1, 0.5], [0.25, 0, 1]]).reshape(1, 1, 3, 3))
    expected = {"swl": 0.38464355, "acc": 1.0, "hinge": 1.625, "mll": 0.38464355,
                "infogain": 1.7019653}
    for name, value in expected.items():
        torch.testing.assert_close(out[name], torch.tensor(value), msg=name)


def test_an_infogain_matrix_bottom_is_checked_by_its_count_as_master_does():
    """infogain_h_bottom_2d: the reference build refuses H given as a 3 x 3 bottom
    (infogain->num() == 1, 3 vs. 1); BVLC master checks only its count, 3 x 3 = 9, and the
    runtime is master's (README: deviations); a count of 8 is refused."""
    text = edge_net("infogain_h_bottom_2d")
    net = Net(text, TEST)
    assert net.blobs["H"].data.shape == (3, 3)
    assert text.count("dim: 3 dim: 3") == 1
    with pytest.raises(AllconvError, match="the infogain matrix H has 8 values; 3 classes need"):
        Net(text.replace("dim: 3 dim: 3", "dim: 2 dim: 4"), TEST)


INPUT = 'layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }\n'


# real Caffe: tools/caffe_reference/module_edges/silence_top.py and misc_reference.py (Im2col)
def test_a_silence_layer_with_a_top_is_refused():
    """Real Caffe: "Silence Layer produces 0 top blob(s) as output." (layer.hpp:389)."""
    with pytest.raises(AllconvError, match=r"^layer 's' \(Silence\): needs 0 top blob\(s\), "
                                           r"got 1$"):
        Net(INPUT + 'layer { name: "s" type: "Silence" bottom: "a" top: "t" }\n', TEST)
    assert Net(INPUT + 'layer { name: "s" type: "Silence" bottom: "a" }\n', TEST).outputs == []


def test_a_silence_layer_without_a_bottom_is_refused():
    """Real Caffe: "Silence Layer takes at least 1 bottom blob(s) as input." (layer.hpp:379)."""
    with pytest.raises(AllconvError, match=r"^layer 's' \(Silence\): needs at least 1 bottom "
                                           r"blob\(s\), got 0$"):
        Net('layer { name: "s" type: "Silence" }\n', TEST)


def test_an_im2col_window_past_the_input_reads_zeros_there():
    """2 x 2 input, kernel 3, stride 2: one window, overhanging the input by a row and a
    column, which im2col_cpu reads as zeros (reference build: 1 2 0 3 4 0 0 0 0)."""
    net = Net('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 '
              'dim: 2 dim: 2 } } }\nlayer { name: "c" type: "Im2col" bottom: "data" top: "cols" '
              'convolution_param { kernel_size: 3 stride: 2 } }\n', TEST)
    cols = net.forward(data=torch.arange(1., 5).reshape(1, 1, 2, 2))["cols"]
    assert cols.flatten().tolist() == [1, 2, 0, 3, 4, 0, 0, 0, 0]
