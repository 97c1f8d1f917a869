"""Layers at the edges of their inputs and settings, each against the reference build's
value or refusal (or Caffe's source where the reference build cannot run it): from a mutation
round over the layer files, each test killing changes the other tests let live."""
import pytest
import torch

from layer_kit import build, rand
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
