"""Fixture cases for the normalisation and affine layers: BatchNorm, Scale, Bias, MVN, PReLU,
and the bilinear filler (collected by make_fixtures.layer_cases)."""
from __future__ import annotations

import fixture_format as ff
from case_kit import L, conv, net_case, net_text, normal, ties, uniform

# BatchNorm's variance and scale factor must be positive; its blobs after a TRAIN forward are
# recorded (``param:``), the moving averages Caffe updates.
POSITIVE = "positive"


def batch_norm_cases():
    c = []

    def add(name, shape, body="", weight_mode=POSITIVE, layers=None, more_inputs=None, **kw):
        layers = layers or [L("bn", "BatchNorm", "data", "out", body)]
        inputs = {"data": normal(*shape, scale=2.0), **(more_inputs or {})}
        c.append(net_case(f"batchnorm_{name}", "BatchNorm", inputs, layers,
                          weight_mode=weight_mode, params_after_forward=True, **kw))

    # TRAIN by the layer's phase: batch statistics, blobs updated (maf 0.999, m = 3·3·2 = 18)
    add("train_phase", (3, 4, 3, 2), "phase: TRAIN")
    # use_global_stats false at TEST, 2-d bottom, in place after an InnerProduct without bias
    # (a bias's gradient through batch statistics is 0, rounding noise in both), another
    # fraction and eps
    add("train_inplace_2d", (5, 3), layers=[
        L("ip", "InnerProduct", "data", "ip",
          "inner_product_param { num_output: 4 bias_term: false }"),
        L("bn", "BatchNorm", "ip", "ip", "batch_norm_param { use_global_stats: false "
                                         "moving_average_fraction: 0.9 eps: 0.001 }")],
        weight_mode={"ip:0": "msra", "*": POSITIVE})
    # m = 2: two values per channel, y = ±(nearly 1), and the backward's sums cancel to a
    # few ulps: it takes Caffe's closed form in Caffe's order (found by random_layer_check)
    add("train_m2", (2, 3, 1), "phase: TRAIN batch_norm_param { use_global_stats: false }")
    # m = 1: no bias correction (c = 1), the variance is 0
    add("train_m1", (1, 3), "batch_norm_param { use_global_stats: false }")
    # constant channels: x − μ is exactly 0 in Caffe for this value (for some others its sums
    # leave ~1e-5 after 1/√eps); so here, where a plain mean left 2e-6
    c.append(net_case("batchnorm_train_constant_channels", "BatchNorm",
                      {"data": uniform(2, 3, 5, 5, low=0.1, high=0.1)},
                      [L("bn", "BatchNorm", "data", "out",
                         "batch_norm_param { use_global_stats: false }")],
                      weight_mode=POSITIVE, params_after_forward=True))
    # TEST: global statistics, the sums over s
    add("global_test", (2, 3, 4, 5))
    # without ParamSpecs it runs Backward (the net's default lr_mult is 1; its own lr_mult 0
    # is the solver's) and writes its bottom's diff, though nothing below needs it
    add("without_specs_writes_bottom_diff", (2, 2, 3),
        layers=[L("bn", "BatchNorm", "data", "h"),
                L("loss", "EuclideanLoss", ["h", "t"], "loss")],
        more_inputs={"t": normal(2, 2, 3)}, backward="loss", force_backward=False)
    # ... with propagate_down: false over an InnerProduct: it still writes the diff, but the
    # skip rule stops the InnerProduct, whose weights get none
    add("without_specs_not_propagating_down", (4, 3),
        layers=[L("ip", "InnerProduct", "data", "f", "inner_product_param { num_output: 2 }"),
                L("bn", "BatchNorm", "f", "h", "propagate_down: false"),
                L("loss", "EuclideanLoss", ["h", "t"], "loss")],
        weight_mode={"ip:0": "msra", "ip:1": "msra", "*": POSITIVE},
        more_inputs={"t": normal(4, 2)}, backward="loss", force_backward=False)
    # ... below a Flatten that runs no Backward (nothing under it learns): Flatten shares its
    # diff only in Backward, so its bottom keeps a zero diff
    add("under_a_flatten_without_backward", (4, 2, 3),
        layers=[L("flat", "Flatten", "data", "f"), L("bn", "BatchNorm", "f", "h"),
                L("loss", "EuclideanLoss", ["h", "t"], "loss")],
        more_inputs={"t": normal(4, 6)}, backward="loss", force_backward=False)
    add("global_explicit_5d", (2, 3, 2, 2, 3), "phase: TRAIN batch_norm_param { "
                                               "use_global_stats: true eps: 0.01 }")
    # s = 0: mean and variance 0, y = x / sqrt(eps)
    add("global_s_zero", (2, 3, 2, 2), weight_mode={"bn:2": "zeros", "*": POSITIVE})
    # ResNet's pair: conv, BatchNorm and Scale with bias in place
    add("scale_pair_resnet", (2, 3, 5, 5), layers=[
        conv("conv", "data", "conv", "num_output: 4 kernel_size: 3 pad: 1 bias_term: false"),
        L("bn", "BatchNorm", "conv", "conv"),
        L("scale", "Scale", "conv", "conv", "scale_param { bias_term: true }"),
        L("relu", "ReLU", "conv", "conv")],
        weight_mode={"conv:0": "msra", "scale:0": "normal", "scale:1": "normal",
                     "*": POSITIVE})
    return c


def scale_bias_cases():
    c = []

    def add(name, inputs, type_, body, bottoms=("data",), weight_mode="normal"):
        c.append(net_case(f"{type_.lower()}_{name}", type_, inputs,
                          [L(type_.lower(), type_, list(bottoms), "out", body)],
                          weight_mode=weight_mode))

    x = {"data": normal(2, 3, 4, 5)}
    add("learned_axis1_bias", x, "Scale", "scale_param { bias_term: true }")
    add("learned_axis1_num_axes2", x, "Scale", "scale_param { num_axes: 2 }")
    add("learned_scalar_bias", x, "Scale", "scale_param { num_axes: 0 bias_term: true }")
    add("learned_axis_neg2_to_end", x, "Scale", "scale_param { axis: -2 num_axes: -1 }")
    add("two_bottoms_axis0", dict(x, factor=normal(2, 3)), "Scale",
        "scale_param { axis: 0 }", ("data", "factor"))
    add("two_bottoms_bias", dict(x, factor=normal(3, 4)), "Scale",
        "scale_param { bias_term: true }", ("data", "factor"))
    add("two_bottoms_last_axis", dict(x, factor=normal(5)), "Scale",
        "scale_param { axis: -1 num_axes: 3 }", ("data", "factor"))
    add("learned_axis2", x, "Bias", "bias_param { axis: 2 num_axes: 2 }")
    add("learned_scalar", x, "Bias", "bias_param { num_axes: 0 }")
    add("two_bottoms_axis1", dict(x, bias=normal(3, 4)), "Bias", "", ("data", "bias"))
    return c


def mvn_cases():
    c = []

    def add(name, shape, body="", scale=1.0):
        c.append(net_case(f"mvn_{name}", "MVN", {"data": normal(*shape, scale=scale)},
                          [L("mvn", "MVN", "data", "out", f"mvn_param {{ {body} }}")]))

    add("default", (2, 3, 4, 5), scale=3.0)
    add("across_channels", (2, 3, 3, 3), "across_channels: true")
    add("mean_only", (2, 3, 4, 4), "normalize_variance: false")
    # a large eps shows Caffe's backward, which is not the exact gradient
    add("eps_large_2d", (3, 8), "eps: 0.5", scale=0.5)
    return c


def prelu_cases():
    c = []

    def add(name, inputs, body=""):
        c.append(net_case(f"prelu_{name}", "PReLU", inputs,
                          [L("prelu", "PReLU", "data", "out", body)], weight_mode="normal"))

    add("channels_ties", {"data": ties(2, 3, 4, 4)})
    add("shared", {"data": normal(2, 3, 3, 3)}, "prelu_param { channel_shared: true }")
    add("2d", {"data": ties(4, 5)})
    return c


def bilinear_filler_cases():
    """Deconvolution weights from Caffe's deterministic bilinear filler (FCN's upsampling).
    Only kernels that are multiples of 4: the reference build has the filler's centre before
    BVLC commit 888597e6, (2f − 1 − f mod 2) / 2f, which equals master's (k − 1) / 2f only
    there (tests/test_layers_geometry.py pins master's for the others)."""
    c = []
    for name, kernel, channels in (("k4", 4, 3), ("k16", 16, 2)):
        inputs = {"data": {"shape": [1, channels, 3, 3], "kind": "normal"}}
        body = L("layer", "Deconvolution", "data", "out", f"""convolution_param {{
            num_output: {channels} group: {channels} kernel_size: {kernel}
            stride: {kernel // 2} bias_term: false weight_filler {{ type: "bilinear" }} }}""")
        c.append({"kind": "filler", "name": f"filler_bilinear_{name}", "group": "Filler",
                  "prototxt": net_text(f"filler_bilinear_{name}", inputs, [body], False),
                  "inputs": inputs, "layer": "layer", "filler": 'type: "bilinear"',
                  "note": "deterministic", "seed": ff.seed_of("filler", name) % 100000})
    return c


def cases():
    return (batch_norm_cases() + scale_bias_cases() + mvn_cases() + prelu_cases()
            + bilinear_filler_cases())
