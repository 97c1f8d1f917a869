"""Fixture cases for Embed, Parameter, Im2col and the recurrent layers RNN, LSTM and LSTMUnit
(issue 17). Collected by make_fixtures.py's ``layer_cases``.

Embed cannot back-propagate to its input (Caffe CHECKs it), so its cases run without
force_backward, and a loss makes Caffe run their backward; cont (T × N) is a 0/1 label input
and gets no diff, as in Caffe."""
from __future__ import annotations

import fixture_format as ff
from case_kit import L, conv, input_layer, labels, net_case, normal, uniform


def recurrent(name, type_, inputs, body, tops=("out",)):
    bottoms = list(inputs)
    return net_case(name, type_, inputs,
                    [L("rec", type_, bottoms, list(tops),
                       f"recurrent_param {{ num_output: 3 {body} }}")])


def carried_state(type_, batches):
    """A recurrent layer without expose_hidden run at the batch sizes ``batches`` (a negative
    size: reshaped to it with no forward): Caffe's h_T blob keeps its memory when N shrinks
    and reallocates zeros past its largest size, and h_0 starts from its first N rows."""
    steps = [{"inputs": {"x": normal(3, abs(n), 2),
                         "cont": {"shape": [3, abs(n)], "kind": "values",
                                  "values": [1, 1, 1, 1, 1, 1, 0]}},
              "forward": n > 0} for n in batches]
    layer = L("rec", type_, ["x", "cont"], "h", "recurrent_param { num_output: 3 }")
    return {"kind": "sequence", "name": f"{type_.lower()}_carried_state_batch_changes",
            "group": type_, "prototxt": input_layer(steps[0]["inputs"]) + layer,
            "steps": steps, "weight_mode": "msra", "sample_size": ff.SAMPLE_SIZE,
            "note": "batches " + ", ".join(map(str, batches))}


def cases():
    c = [carried_state(type_, (3, 2, 3, 1, 5, 2, -9, 4, 6)) for type_ in ("RNN", "LSTM")]
    for name, out, dim, body in (("embed", 4, 5, ""), ("embed_nobias", 3, 7, "bias_term: false")):
        c.append(net_case(name, "Embed", {"data": labels(2, 3, classes=dim),
                                          "target": normal(2, 3, out)},
                          [L("embed", "Embed", "data", "out",
                             f"embed_param {{ num_output: {out} input_dim: {dim} {body} }}"),
                           L("loss", "EuclideanLoss", ["out", "target"], "loss")],
                          backward="loss", force_backward=False))
    # ParamSpec share_mode PERMISSIVE: one 24-value blob read as a 4x6 InnerProduct weight, a
    # 4x3x2x1 convolution kernel and a transposed 6x4 weight; the diffs of all three add up
    permissive = 'param { name: "w" share_mode: PERMISSIVE } '
    c.append(net_case("shared_permissive", "ParamSpec",
                      {"data": normal(2, 6), "image": normal(2, 3, 2, 2)},
                      [L("ip", "InnerProduct", "data", "ip",
                         'param { name: "w" } inner_product_param { num_output: 4 }'),
                       L("conv", "Convolution", "image", "conv", permissive
                         + "convolution_param { num_output: 4 kernel_h: 2 kernel_w: 1 }"),
                       L("ip_t", "InnerProduct", "data", "ip_t", permissive
                         + "inner_product_param { num_output: 4 transpose: true }")]))
    c.append(net_case("parameter", "Parameter", {"data": normal(2, 3)},
                      [L("param", "Parameter", [], "p",
                         "parameter_param { shape { dim: 2 dim: 3 } }"),
                       L("sum", "Eltwise", ["data", "p"], "out")]))
    for name, shape, body in (
            ("k3_s2_p1", (2, 3, 6, 5), "kernel_size: 3 stride: 2 pad: 1"),
            ("rect_dilation", (1, 2, 7, 8), "kernel_h: 2 kernel_w: 3 dilation: 2 pad_w: 1"),
            ("force_nd", (2, 2, 5, 5), "kernel_size: 2 stride: 2 force_nd_im2col: true"),
            ("1d", (2, 3, 9), "kernel_size: 3 stride: 2 pad: 1"),
            # windows overhanging the end by less than a stride (Convolution's sizes)
            ("overhang_1d", (2, 3, 2), "kernel_size: 3 stride: 2"),
            ("overhang_rect", (1, 2, 5, 2), "kernel_h: 3 kernel_w: 4 stride: 3")):
        c.append(net_case(f"im2col_{name}", "Im2col", {"data": normal(*shape)},
                          [L("im2col", "Im2col", "data", "out",
                             f"convolution_param {{ {body} }}")]))
    unit = {"c_prev": normal(1, 3, 4), "gates": normal(1, 3, 16, scale=1.5)}
    for name, cont in (("lstm_unit", labels(1, 3, classes=2)),
                       ("lstm_unit_soft_cont", uniform(1, 3, low=0.2, high=1.0))):
        c.append(net_case(name, "LSTMUnit", dict(unit, cont=cont),
                          [L("unit", "LSTMUnit", ["c_prev", "gates", "cont"], ["c", "h"])]))
    seq = {"x": normal(4, 2, 2, 3), "cont": labels(4, 2, classes=2)}
    static = {"x_static": normal(2, 5)}
    for type_ in ("RNN", "LSTM"):
        low = type_.lower()
        state = {"h0": normal(1, 2, 3)}
        if type_ == "LSTM":
            state["c0"] = normal(1, 2, 3)
        final = ["out"] + [f"{s[0]}T" for s in state]
        c.append(recurrent(f"{low}", type_, seq, ""))
        c.append(recurrent(f"{low}_static", type_, dict(seq, **static), ""))
        c.append(recurrent(f"{low}_expose_hidden", type_, dict(seq, **state),
                           "expose_hidden: true", tops=final))
        c.append(recurrent(f"{low}_static_expose_hidden", type_,
                           dict(seq, **static, **state), "expose_hidden: true", tops=final))
    # Caffe's unrolled net computes every param diff and x's whenever the layer runs backward,
    # lr_mult 0 and an input that needs no diff notwithstanding: one frozen blob beside learned
    # ones; every blob frozen under a learned layer (its backward runs for that layer's sake)
    target = {"target": normal(4, 2, 3)}
    frozen = "param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } "
    for type_ in ("RNN", "LSTM"):
        low = type_.lower()
        c.append(net_case(f"{low}_lr0_blob_diffs", type_, dict(seq, **target),
                          [L("rec", type_, ["x", "cont"], "out",
                             "param { lr_mult: 0 } recurrent_param { num_output: 3 }"),
                           L("loss", "EuclideanLoss", ["out", "target"], "loss")],
                          backward="loss", force_backward=False))
        c.append(net_case(f"{low}_frozen_over_learned", type_, dict(seq, **target),
                          [L("ip", "InnerProduct", "x", "xp",
                             "inner_product_param { num_output: 2 axis: 2 }"),
                           L("rec", type_, ["xp", "cont"], "out",
                             frozen + "recurrent_param { num_output: 3 }"),
                           L("loss", "EuclideanLoss", ["out", "target"], "loss")],
                          backward="loss", force_backward=False))
    # Reshape's top shares its bottom's diff: the x diff the RNN writes (needed by nothing)
    # shows in the Input blob below the Reshape, as pycaffe reads it
    c.append(net_case("rnn_x_diff_through_reshape", "Reshape",
                      {"flat": normal(4, 12), "cont": labels(4, 2, classes=2),
                       "target": normal(4, 2, 3)},
                      [L("seq", "Reshape", "flat", "x",
                         "reshape_param { shape { dim: 0 dim: 2 dim: -1 } }"),
                       L("rec", "RNN", ["x", "cont"], "out", "recurrent_param { num_output: 3 }"),
                       L("loss", "EuclideanLoss", ["out", "target"], "loss")],
                      backward="loss", force_backward=False))
    # an in-place chain over a frozen layer: Bias's bottom needs no diff, so Caffe's blob
    # keeps the diff TanH wrote, the gradient at Bias's output (not 0, the frozen output's)
    c.append(net_case("in_place_chain_over_frozen_layer", "in place",
                      {"data": normal(2, 3), "target": normal(2, 4)},
                      [L("ip", "InnerProduct", "data", "a", "param { lr_mult: 0 } "
                         "param { lr_mult: 0 } inner_product_param { num_output: 4 }"),
                       L("bias", "Bias", "a", "a"),
                       L("tanh", "TanH", "a", "a"),
                       L("loss", "EuclideanLoss", ["a", "target"], "loss")],
                      backward="loss", force_backward=False))
    # Scale's Backward keeps top diff x bottom in bottom 0's diff while it sums the factor's
    # diff, though nothing needs bottom 0's: a learned factor, a factor from a learned layer;
    # none with an eltwise factor (its diff is the product) or a factor with lr_mult 0
    loss = [L("loss", "EuclideanLoss", ["y", "target"], "loss")]
    x, target = normal(2, 3, 2, 2), normal(2, 3, 2, 2)
    for name, body in (("learned", ""), ("learned_bias", "scale_param { bias_term: true }"),
                       ("eltwise", "scale_param { axis: 0 num_axes: -1 }"),
                       ("frozen_factor", "param { lr_mult: 0 } param { lr_mult: 1 } "
                                         "scale_param { bias_term: true }")):
        c.append(net_case(f"scale_scratch_{name}", "Scale", {"x": x, "target": target},
                          [L("scale", "Scale", "x", "y", body)] + loss,
                          backward="loss", force_backward=False))
    # the top diff is the one Scale's Backward reads, under a ReLU run in place on its top
    c.append(net_case("scale_scratch_relu_above", "Scale", {"x": x, "target": target},
                      [L("scale", "Scale", "x", "y"), L("relu", "ReLU", "y", "y")] + loss,
                      backward="loss", force_backward=False))
    # a factor bottom that gets no diff: Caffe's Backward runs for the bias alone and
    # leaves bottom 0's diff alone
    c.append(net_case("scale_scratch_factor_input", "Scale",
                      {"x": x, "factor": normal(2), "target": target},
                      [L("scale", "Scale", ["x", "factor"], "y",
                         "scale_param { axis: 0 bias_term: true }")] + loss,
                      backward="loss", force_backward=False))
    c.append(net_case("scale_scratch_factor_bottom", "Scale",
                      {"x": x, "f": normal(2, 4), "target": target},
                      [L("ip", "InnerProduct", "f", "factor", "inner_product_param { num_output: 3 }"),
                       L("scale", "Scale", ["x", "factor"], "y", "scale_param { axis: 0 }")] + loss,
                      backward="loss", force_backward=False))
    # LRCN's captioning shape: words -> Embed -> LSTM -> InnerProduct (axis 2) -> softmax loss
    c.append(net_case(
        "lrcn_like", "LSTM",
        {"words": labels(4, 2, classes=6), "cont": labels(4, 2, classes=2),
         "target": labels(4, 2, classes=5)},
        [L("embed", "Embed", "words", "embedded", "embed_param { num_output: 3 input_dim: 6 }"),
         L("lstm", "LSTM", ["embedded", "cont"], "lstm", "recurrent_param { num_output: 4 }"),
         L("predict", "InnerProduct", "lstm", "predict",
           "inner_product_param { num_output: 5 axis: 2 }"),
         L("loss", "SoftmaxWithLoss", ["predict", "target"], "loss", "softmax_param { axis: 2 }")],
        backward="loss", force_backward=False))
    def slice_case(name, group, batch, in_place):
        """IP -> Slice into a (the ``in_place`` layers on it) and b, a loss on each."""
        return net_case(name, group,
                        {"data": normal(batch, 3), "ta": normal(batch, 2),
                         "tb": normal(batch, 2)},
                        [L("ip", "InnerProduct", "data", "h",
                           "inner_product_param { num_output: 4 }"),
                         L("slice", "Slice", "h", ["a", "b"],
                           "slice_param { axis: 1 slice_point: 2 }"),
                         *in_place,
                         L("lossA", "EuclideanLoss", ["a", "ta"], "lossA"),
                         L("lossB", "EuclideanLoss", ["b", "tb"], "lossB")],
                        backward="loss", force_backward=False)
    # An in-place ReLU that does not propagate down, on one top of a Slice whose other top
    # learns: the Slice still runs Backward and reads the ReLU's top diff, unmasked, from the
    # memory the in-place blob shares
    c.append(slice_case("inplace_no_propagate_down_passes_diff", "ReLU", 2,
                        [L("relu", "ReLU", "a", "a", "propagate_down: false")]))
    # The same through an in-place chain: the ReLU below the Scale that does not propagate
    # down runs no Backward (its top is skipped), so the Slice reads the TanH's bottom diff,
    # unmasked by either; the Scale still learns
    c.append(slice_case("inplace_chain_skipped_layers_pass_diff", "Scale", 4,
                        [L("relu", "ReLU", "a", "a"),
                         L("scale", "Scale", "a", "a", "propagate_down: false "
                                                       "scale_param { bias_term: true }"),
                         L("tanh", "TanH", "a", "a")]))
    # Layers whose Backward writes the bottom's diff whatever propagate_down says: with the
    # bottom also read by a loss, Caffe's Split adds that diff into the convolution's gradient
    for kind, body, target in (
            ("Softmax", "", (2, 4, 2, 2)),
            ("LRN", "lrn_param { local_size: 3 }", (2, 4, 2, 2)),
            ("MVN", "", (2, 4, 2, 2)),
            ("Im2col", "convolution_param { kernel_size: 2 }", (2, 16, 1, 1)),
            ("Reshape", "reshape_param { shape { dim: 0 dim: -1 } }", (2, 16)),
            ("Flatten", "", (2, 16))):
        c.append(net_case(f"{kind.lower()}_writes_its_bottom_diff_without_propagate_down", kind,
                          {"data": normal(2, 3, 3, 3), "t": normal(*target),
                           "t2": normal(2, 4, 2, 2)},
                          [conv("conv", "data", "h", "num_output: 4 kernel_size: 2"),
                           L("x", kind, "h", "g", f"propagate_down: false {body}"),
                           L("loss", "EuclideanLoss", ["g", "t"], "loss"),
                           L("loss2", "EuclideanLoss", ["h", "t2"], "loss2")],
                          backward="loss", force_backward=False))
    # A Flatten's top shares its bottom's diff memory, which the in-place Scale below rewrites
    c.append(net_case("flatten_top_shows_bottom_diff", "Flatten",
                      {"data": normal(2, 3, 2), "t": normal(2, 6)},
                      [L("s1", "Scale", "data", "x",
                         'scale_param { filler { type: "uniform" min: -1 max: 1.5 } }'),
                       L("s2", "Scale", "x", "x",
                         'scale_param { filler { type: "uniform" min: -1 max: 1.5 } }'),
                       L("flat", "Flatten", "x", "f"),
                       L("loss", "EuclideanLoss", ["f", "t"], "loss")],
                      backward="loss", force_backward=False))
    return c
