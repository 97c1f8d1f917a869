"""Fixture cases for the geometry layers: Slice, Crop, Reshape, Tile, SPP, ArgMax, Reduction,
Filter, BatchReindex, Silence, Deconvolution (collected by make_fixtures.layer_cases)."""
from __future__ import annotations

from case_kit import L, conv, labels, net_case, normal, ties


def slice_cases():
    c = []

    def add(name, shape, body, tops):
        c.append(net_case(f"slice_{name}", "Slice", {"data": normal(*shape)},
                          [L("slice", "Slice", "data", [f"s{i}" for i in range(tops)],
                             f"slice_param {{ {body} }}")]))

    add("points_axis1", (2, 7, 3, 2), "slice_point: 2 slice_point: 3 slice_point: 5", 4)
    add("equal_axis_neg1", (2, 3, 6), "axis: -1", 3)
    add("legacy_slice_dim0", (4, 3, 2), "slice_dim: 0", 2)
    return c


def deconvolution_cases():
    c = []

    def add(name, shape, body):
        c.append(net_case(f"deconv_{name}", "Deconvolution", {"data": normal(*shape)},
                          [L("deconv", "Deconvolution", "data", "out",
                             f"convolution_param {{ {body} }}")]))

    add("k3_s2_p1", (2, 3, 4, 4), "num_output: 4 kernel_size: 3 stride: 2 pad: 1")
    add("group2_dilation2_nobias", (2, 4, 3, 3),
        "num_output: 6 kernel_size: 3 dilation: 2 group: 2 bias_term: false")
    # FCN's upsampling: per-channel (group = C), kernel 2f, stride f, no bias
    add("fcn_upsample_x2", (1, 3, 5, 5),
        "num_output: 3 group: 3 kernel_size: 4 stride: 2 bias_term: false")
    add("rect_hw", (2, 2, 3, 4), "num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 3 "
                                 "stride_w: 1 pad_h: 1 pad_w: 0")
    add("1x1", (2, 5, 3, 3), "num_output: 2 kernel_size: 1")
    # channel axis 2: the two axes before it are Caffe's num (export folds and unfolds them)
    add("axis2_5d", (2, 2, 3, 3, 4), "num_output: 2 kernel_size: 2 stride: 2 axis: 2")
    c.append(net_case("deconv_two_bottoms", "Deconvolution",
                      {"a": normal(2, 3, 3, 3), "b": normal(2, 3, 3, 3)},
                      [L("deconv", "Deconvolution", ["a", "b"], ["da", "db"],
                         "convolution_param { num_output: 2 kernel_size: 2 stride: 2 }")]))
    return c


def crop_cases():
    c = []

    def add(name, data, ref, body=""):
        c.append(net_case(f"crop_{name}", "Crop", {"data": normal(*data), "ref": normal(*ref)},
                          [L("crop", "Crop", ["data", "ref"], "out",
                             f"crop_param {{ {body} }}")], top_diffs=["out"]))

    add("fcn_offset19", (2, 3, 24, 25), (2, 1, 4, 5), "axis: 2 offset: 19")
    add("default_axis2_no_offset", (2, 3, 7, 6), (1, 1, 4, 3))
    add("axis1_per_axis_offsets", (2, 5, 6, 7), (2, 3, 2, 4), "axis: 1 offset: 1 offset: 3 "
                                                              "offset: 2")
    add("axis_neg1", (2, 3, 6), (9, 9, 2), "axis: -1 offset: 4")
    return c


def reshape_cases():
    c = []

    def add(name, shape, body):
        c.append(net_case(f"reshape_{name}", "Reshape", {"data": normal(*shape)},
                          [L("reshape", "Reshape", "data", "out",
                             f"reshape_param {{ {body} }}")]))

    add("copy0_infer", (2, 3, 4, 5), "shape { dim: 0 dim: -1 }")
    add("axis1_num_axes2", (2, 3, 4, 5), "shape { dim: -1 dim: 2 } axis: 1 num_axes: 2")
    add("copy_two_infer_middle", (2, 3, 4, 6), "shape { dim: 0 dim: 0 dim: -1 dim: 3 }")
    add("insert_trailing_axis", (2, 3, 4), "shape { dim: 1 } axis: -1 num_axes: 0")
    return c


def tile_spp_cases():
    c = []
    c.append(net_case("tile_axis1_x3", "Tile", {"data": normal(2, 3, 2, 2)},
                      [L("tile", "Tile", "data", "out", "tile_param { tiles: 3 }")]))
    c.append(net_case("tile_last_axis_x2", "Tile", {"data": normal(2, 3, 4)},
                      [L("tile", "Tile", "data", "out", "tile_param { axis: -1 tiles: 2 }")]))

    def spp(name, shape, body, kind="normal"):
        data = ties(*shape) if kind == "ties" else normal(*shape)
        c.append(net_case(f"spp_{name}", "SPP", {"data": data},
                          [L("spp", "SPP", "data", "out", f"spp_param {{ {body} }}")]))

    spp("max_h3_7x9", (2, 2, 7, 9), "pyramid_height: 3")
    spp("ave_h2_5x6", (2, 3, 5, 6), "pyramid_height: 2 pool: AVE")
    spp("max_h1_4d_ties", (2, 2, 5, 4), "pyramid_height: 1", kind="ties")
    return c


def argmax_reduction_cases():
    c = []

    def argmax(name, data, body):
        c.append(net_case(f"argmax_{name}", "ArgMax", {"data": data},
                          [L("argmax", "ArgMax", "data", "out", f"argmax_param {{ {body} }}")],
                          backward="none"))

    argmax("default_2d", normal(3, 7), "")
    argmax("top3_max_val_ties", ties(2, 3, 2, 2), "top_k: 3 out_max_val: true")
    argmax("axis1_top2_ties", ties(2, 5, 3), "axis: 1 top_k: 2")
    argmax("axis2_max_val", normal(2, 3, 4), "axis: -1 out_max_val: true top_k: 2")

    def reduction(name, data, body):
        c.append(net_case(f"reduction_{name}", "Reduction", {"data": data},
                          [L("reduction", "Reduction", "data", "out",
                             f"reduction_param {{ {body} }}")]))

    reduction("sum_axis0_scalar", normal(2, 3, 4), "")
    reduction("asum_axis1_coeff_ties", ties(2, 3, 4), "operation: ASUM axis: 1 coeff: 0.5")
    reduction("sumsq_last_axis", normal(2, 3, 4), "operation: SUMSQ axis: -1")
    reduction("mean_axis2_coeff", normal(2, 3, 4, 5), "operation: MEAN axis: 2 coeff: 2")
    return c


def selection_cases():
    """Filter and BatchReindex: Caffe aborts when force_backward reaches their index bottom, so
    the backward comes from a loss without it, through a conv whose output they select from."""
    c = []
    head = [conv("conv", "data", "c", "num_output: 3 kernel_size: 1")]
    c.append(net_case(
        "filter_with_labels", "Filter",
        {"data": normal(5, 2, 2, 2), "label": labels(5, classes=4),
         "select": labels(5, 1, classes=2)},
        head + [L("filter", "Filter", ["c", "label", "select"], ["fc", "flabel"]),
                L("ip", "InnerProduct", "fc", "ip", "inner_product_param { num_output: 4 }"),
                L("loss", "SoftmaxWithLoss", ["ip", "flabel"], "loss",
                  "propagate_down: true propagate_down: false")],
        backward="loss", force_backward=False))
    c.append(net_case(
        "batch_reindex_repeats", "BatchReindex",
        {"data": normal(4, 2, 2, 2), "index": labels(6, classes=4),
         "label": labels(6, classes=3)},
        head + [L("reindex", "BatchReindex", ["c", "index"], "r"),
                L("ip", "InnerProduct", "r", "ip", "inner_product_param { num_output: 3 }"),
                L("loss", "SoftmaxWithLoss", ["ip", "label"], "loss")],
        backward="loss", force_backward=False))
    c.append(net_case(
        "silence_blob_also_used", "Silence", {"data": normal(2, 3, 4, 4)},
        head + [L("relu", "ReLU", "c", "r"), L("silence", "Silence", ["c", "data"], [])],
        top_diffs=["r"]))
    return c


def cases():
    return (slice_cases() + deconvolution_cases() + crop_cases() + reshape_cases()
            + tile_spp_cases() + argmax_reduction_cases() + selection_cases())
