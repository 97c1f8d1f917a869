"""Fixture cases of what Caffe computes from infinite and NaN values (forward only): 24 layer
types (neurons, pooling, convolutions, normalizations, Softmax and its loss, Reduction,
ArgMax, Eltwise) on inputs that hold them; Power where it overflows or
its base is 0 or infinite; LRN, whose sliding window sum stays NaN after an infinite term has
left the window; a MAX pooling window outside its input (−FLT_MAX) before an LRN. Collected
by make_fixtures.py's ``layer_cases``; compared by fixture_format.rel_error, which asks for
Caffe's infinities and NaN in the same places."""
from __future__ import annotations

import numpy as np

from case_kit import L, ff, labels, net_case, normal, pool

INF, NAN, FLT_MAX = float("inf"), float("nan"), float(np.finfo(np.float32).max)
# 13 values, repeated to fill each blob, so the non-finite ones fall on other channels and
# positions in each row
SPECIALS = [0.5, -INF, 1e30, -0.0, NAN, -1.25, 0.0, INF, 2.0, -1e30, -FLT_MAX, 3.0, -0.75]


def specials(*shape):
    return {"shape": list(shape), "kind": "values", "values": SPECIALS}


def sprinkled(name, *shape):
    """N(0, 1) values with every 17th one of −FLT_MAX, inf and NaN in turn."""
    a = ff.rng("nonfinite", name).standard_normal(int(np.prod(shape)))
    a[5::17] = np.resize([-FLT_MAX, INF, NAN], a[5::17].size)
    return {"shape": list(shape), "kind": "values", "values": [float(v) for v in a]}


def one(name, type_, body="", shape=(2, 3, 4, 5), data=None):
    return net_case(f"nonfinite_{name}", f"{type_} (inf, NaN)",
                    {"data": data or specials(*shape)},
                    [L("layer", type_, "data", "out", body)], backward="none")


def cases():
    c = [one("relu", "ReLU"), one("relu_leaky", "ReLU", "relu_param { negative_slope: 0.1 }"),
         one("sigmoid", "Sigmoid"), one("tanh", "TanH"), one("absval", "AbsVal"),
         one("elu", "ELU", "elu_param { alpha: 0.5 }"), one("bnll", "BNLL"),
         one("threshold", "Threshold", "threshold_param { threshold: 0.25 }"),
         one("exp", "Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"),
         one("log", "Log", "log_param { scale: 2 shift: 1 }"),
         one("softmax", "Softmax"),
         one("pool_max", "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
         one("pool_ave", "Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 1 pad: 1 }")]
    c += [one("conv", "Convolution", "convolution_param { num_output: 2 kernel_size: 2 pad: 1 }"),
          one("deconv", "Deconvolution", "convolution_param { num_output: 2 kernel_size: 2 stride: 2 }"),
          one("inner_product", "InnerProduct", "inner_product_param { num_output: 3 }"),
          one("batch_norm", "BatchNorm", "batch_norm_param { use_global_stats: false }"),
          one("mvn", "MVN"), one("mvn_across", "MVN", "mvn_param { across_channels: true }"),
          one("scale", "Scale", "scale_param { bias_term: true }"),
          one("prelu", "PReLU"),
          # with NaN: Caffe's std::partial_sort over (value, index) pairs gets no strict
          # order from a NaN, and its result is libstdc++'s heap order, replayed in topk.py
          one("argmax", "ArgMax", "argmax_param { top_k: 2 out_max_val: true }"),
          one("argmax_top3", "ArgMax", "argmax_param { top_k: 3 }",
              data=sprinkled("argmax_top3", 6, 11)),
          one("argmax_axis", "ArgMax", "argmax_param { top_k: 2 axis: 1 out_max_val: true }",
              data=sprinkled("argmax_axis", 3, 7, 4)),
          one("reduction_sumsq", "Reduction", "reduction_param { operation: SUMSQ axis: 1 }"),
          one("reduction_asum", "Reduction", "reduction_param { operation: ASUM axis: 2 }"),
          one("softmax_axis2", "Softmax", "softmax_param { axis: 2 }")]
    c.append(net_case("nonfinite_softmax_loss", "SoftmaxWithLoss (inf, NaN)",
                      {"data": specials(4, 3), "label": labels(4, classes=3)},
                      [L("loss", "SoftmaxWithLoss", ["data", "label"], "out")], backward="none"))
    for name, body in (("cube", "power: 3"), ("half", "power: 0.5 scale: -1"),
                       ("minus_half", "power: -0.5 shift: 1"),
                       ("three_halves_scale_inf", "power: 1.5 shift: 1 scale: -inf"),
                       ("square_shift", "power: 2 shift: -1")):
        c.append(one(f"power_{name}", "Power", f"power_param {{ {body} }}"))
    c.append(net_case("nonfinite_eltwise_max", "Eltwise (inf, NaN)",
                      {"a": specials(3, 13), "b": sprinkled("b", 3, 13), "c": normal(3, 13)},
                      [L("max", "Eltwise", ["a", "b", "c"], "out",
                         "eltwise_param { operation: MAX }"),
                       L("max2", "Eltwise", ["b", "a"], "out2",
                         "eltwise_param { operation: MAX }")], backward="none"))
    for name, body in (("across", "alpha: 0.1 beta: 0.75 k: 1"),
                       ("across_negative_alpha", "alpha: -0.2 beta: 0.5 k: 2"),
                       ("across_alpha_inf", "alpha: inf beta: 0.75"),
                       ("within", "alpha: 0.1 beta: 0.75 norm_region: WITHIN_CHANNEL")):
        c.append(net_case(f"nonfinite_lrn_{name}", "LRN (inf, NaN)",
                          {"data": sprinkled(name, 2, 7, 3, 4)},
                          [L("lrn", "LRN", "data", "out",
                             f"lrn_param {{ local_size: 3 {body} }}")], backward="none"))
    # finite but huge squares: Caffe's sliding sum keeps their rounding after they leave the
    # window (k lost: NaN from a negative scale) or overflows for good
    for name, values, body in (("k_lost", [3e4, 1, 1, 1, 1, 1], "alpha: 1 beta: 0.75"),
                               ("overflow", [1.5e19, 1.5e19, 0, 0, 1, 1], "alpha: 3 beta: 0.75")):
        c.append(net_case(f"nonfinite_lrn_{name}", "LRN (inf, NaN)",
                          {"data": {"shape": [2, 6, 1, 1], "kind": "values", "values": values}},
                          [L("lrn", "LRN", "data", "out",
                             f"lrn_param {{ local_size: 3 {body} }}")], backward="none"))
    # rows all NaN: Caffe's (score, index) pairs then compare by index alone, so the label
    # ranks below every higher class (a diverged net is right on its last class's images)
    nan, rows = float("nan"), [[0.5, 0.5, 1, -1, 0], [2, 0, 2, 2, 1], [-1, -2, -3, -4, -5]]
    mixed = sprinkled("accuracy_mixed", 40, 7)     # rows mixing NaN, inf and numbers
    mixed["values"][:3] = [5.0, NAN, 3.0]
    c.append(net_case("nonfinite_accuracy_mixed_rows", "Accuracy (NaN)",
                      {"data": mixed, "label": {"shape": [40], "kind": "values",
                                                "values": [2] + list(range(7)) * 6}},
                      [L(f"acc{k}", "Accuracy", ["data", "label"], f"acc{k}",
                         f"accuracy_param {{ top_k: {k} }}") for k in (1, 2, 3, 5)],
                      backward="none"))
    c.append(net_case("nonfinite_accuracy_nan_rows", "Accuracy (NaN)",
                      {"data": {"shape": [6, 5], "kind": "values",
                                "values": [nan] * 15 + sum(rows, [])},
                       "label": {"shape": [6], "kind": "values", "values": [4, 0, 2, 1, 3, 4]}},
                      [L("acc", "Accuracy", ["data", "label"], "acc"),
                       L("acc3", "Accuracy", ["data", "label"], "acc3",
                         "accuracy_param { top_k: 3 }")], backward="none"))
    # the windows of a MAX pooling that start past its input give −FLT_MAX, whose square is inf
    c.append(net_case("nonfinite_pool_outside_lrn", "LRN (inf, NaN)",
                      {"data": normal(2, 6, 5, 4)},
                      [pool("pool", "data", "pool", "pool: MAX kernel_size: 1 stride: 3"),
                       L("lrn", "LRN", "pool", "out",
                         "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")],
                      backward="none"))
    return c
