"""ONNX export of the normalisation/affine and geometry layers: onnxruntime against the runtime
on hand-written nets (ResNet's BatchNorm + Scale blocks, FCN's bilinear Deconvolution + Crop,
squeeze-and-excitation's Scale by a second bottom, and every other inference type), BatchNorm
+ Scale fused and unfused alike, and what does not export as one line. Real Caffe's values for
each layer's fixtures are compared in test_export.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")   # the [onnx] extra: without it, these tests skip
import torch

from runtime.errors import AllconvError
from runtime.export import build_model, check, to_onnx
from runtime.export.registry import BatchFixed
from runtime.net import Net
from runtime.proto import pb
from test_export import (FILLED, _conv, _input, _layer,
                         assert_fixed_at_the_prototxts_batch)

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")


def _bn_scale(name, bottom) -> str:
    """ResNet's pair, in place."""
    return (_layer(f"bn_{name}", "BatchNorm", [bottom], [bottom])
            + _layer(f"scale_{name}", "Scale", [bottom], [bottom],
                     "scale_param { bias_term: true filler { type: 'gaussian' std: 0.5 } "
                     "bias_filler { type: 'gaussian' std: 0.5 } }"))


NETS = {
    # a ResNet basic block: conv, BatchNorm + Scale, ReLU twice, the shortcut summed; PReLU
    "resnet_block": (
        _input((2, 3, 8, 8))
        + _layer("conv0", "Convolution", ["data"], ["x"],
                 f"convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {FILLED} }}")
        + _layer("conv1", "Convolution", ["x"], ["a"], "convolution_param { num_output: 4 "
                 "kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'msra' } }")
        + _bn_scale("1", "a") + _layer("relu1", "ReLU", ["a"], ["a"])
        + _layer("conv2", "Convolution", ["a"], ["b"], "convolution_param { num_output: 4 "
                 "kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'msra' } }")
        + _bn_scale("2", "b")
        + _layer("sum", "Eltwise", ["x", "b"], ["sum"])
        + _layer("prelu", "PReLU", ["sum"], ["sum"], "prelu_param { filler { type: 'gaussian' "
                                                     "std: 0.3 } }")
        + _layer("pool", "Pooling", ["sum"], ["pool"], "pooling_param { pool: AVE "
                                                       "global_pooling: true }"),
        {"BatchNormalization", "Conv", "PRelu", "Sum"}),
    # FCN's upsampling: a score conv, per-channel bilinear Deconvolution without bias, Crop
    # back to the input's size with offset, then a pixelwise softmax
    "fcn_head": (
        _input((2, 3, 13, 13))
        + _layer("pool", "Pooling", ["data"], ["pool"], "pooling_param { pool: MAX "
                                                        "kernel_size: 2 stride: 2 }")
        + _conv("score", "pool", "num_output: 2 kernel_size: 1")
        + _layer("up", "Deconvolution", ["score"], ["up"], "convolution_param { num_output: 2 "
                 "group: 2 kernel_size: 4 stride: 2 bias_term: false weight_filler { "
                 "type: 'bilinear' } }")
        + _layer("crop", "Crop", ["up", "data"], ["crop"], "crop_param { axis: 2 offset: 1 }")
        + _layer("prob", "Softmax", ["crop"], ["prob"]),
        {"ConvTranspose", "Slice", "Softmax"}),
    # squeeze-and-excitation: global pooling, a bottleneck, the channel weights as a second
    # Scale bottom on axis 0; a Bias by a second bottom; MVN; Reduction
    "squeeze_excite": (
        _input((2, 4, 5, 5))
        + _layer("gap", "Pooling", ["data"], ["gap"], "pooling_param { pool: AVE "
                                                      "global_pooling: true }")
        + _layer("fc", "InnerProduct", ["gap"], ["fc"],
                 f"inner_product_param {{ num_output: 4 {FILLED} }}")
        + _layer("gate", "Scale", ["fc"], ["gate"], "scale_param { num_axes: 0 filler { "
                                                    "value: 0.5 } bias_term: true }")
        + _layer("excite", "Scale", ["data", "gate"], ["excite"], "scale_param { axis: 0 }")
        + _layer("shift", "Bias", ["excite", "fc"], ["shift"], "bias_param { axis: 0 }")
        + _layer("mvn", "MVN", ["shift"], ["mvn"], "mvn_param { eps: 0.01 }")
        + _layer("mvn_all", "MVN", ["shift"], ["mvn_all"], "mvn_param { across_channels: true "
                                                           "normalize_variance: false }")
        + _layer("energy", "Reduction", ["mvn"], ["energy"], "reduction_param { operation: "
                                                             "SUMSQ axis: 1 coeff: 0.5 }")
        + _layer("total", "Reduction", ["mvn_all"], ["total"], "reduction_param { operation: "
                                                               "MEAN axis: 2 }"),
        {"Mul", "Add", "ReduceSum", "ReduceMean"}),
    # Slice, Tile, Reshape, SPP, ArgMax, batch-statistics BatchNorm, Bias, Silence
    "geometry": (
        _input((2, 6, 7, 9))
        + _layer("slice", "Slice", ["data"], ["s1", "s2", "s3"],
                 "slice_param { slice_point: 1 slice_point: 4 }")
        + _layer("tile", "Tile", ["s1"], ["tile"], "tile_param { tiles: 3 }")
        + _layer("cat", "Concat", ["tile", "s2"], ["cat"])
        + _layer("halves", "Slice", ["s3"], ["h1", "h2"], "slice_param { slice_dim: 1 }")
        + _layer("quiet", "Silence", ["h1"], [])          # no top: pruned from the graph
        + _layer("spp", "SPP", ["cat"], ["spp"], "spp_param { pyramid_height: 3 }")
        + _layer("spp_ave", "SPP", ["s2"], ["spp_ave"], "spp_param { pyramid_height: 1 "
                                                        "pool: AVE }")
        + _layer("rows", "Reshape", ["spp_ave"], ["rows"], "reshape_param { shape { dim: 0 "
                                                           "dim: -1 } }")
        + _layer("bn", "BatchNorm", ["rows"], ["bn"], "batch_norm_param { use_global_stats: "
                                                      "false }")
        + _layer("bias", "Bias", ["bn"], ["bias"], "bias_param { filler { type: 'gaussian' } }")
        + _layer("top3", "ArgMax", ["spp"], ["top3"], "argmax_param { top_k: 3 "
                                                      "out_max_val: true }")
        + _layer("amax", "ArgMax", ["cat"], ["amax"], "argmax_param { axis: 1 top_k: 2 }")
        + _layer("vmax", "ArgMax", ["cat"], ["vmax"], "argmax_param { axis: 3 "
                                                      "out_max_val: true }"),
        {"Split", "Tile", "TopK", "MaxPool", "ReduceMean"}),
}


def _with_statistics(net) -> Net:
    """Give every BatchNorm stored statistics (positive variances, s ≠ 1)."""
    g = torch.Generator().manual_seed(7)
    for layer in net.layers:
        if layer.type_name == "BatchNorm":
            with torch.no_grad():
                layer.blobs[0].normal_(generator=g)
                layer.blobs[1].uniform_(0.5, 2.0, generator=g)
                layer.blobs[2].fill_(1.5)
    return net


@pytest.mark.parametrize("opset", [17, 18])     # 18 moved Reduce*'s axes and Split's parts
@pytest.mark.parametrize("name", NETS)
def test_hand_written_nets_match_the_runtime(name, opset, tmp_path):
    text, ops = NETS[name]
    net = _with_statistics(Net(text, pb.TEST, seed=2))
    worst = to_onnx(net, tmp_path / "m.onnx", outputs=net.outputs, opset=opset)
    assert max(worst.values()) <= check.TOL_FP32
    assert ops <= {node.op_type for node in onnx.load(tmp_path / "m.onnx").graph.node}


def test_argmax_ties_in_onnxruntime_go_to_the_larger_index():
    net = Net(_input((2, 5)) + _layer("a", "ArgMax", ["data"], ["a"], "argmax_param { top_k: 3 "
                                                                    "out_max_val: true }"),
              pb.TEST)
    model, _ = build_model(net)
    x = np.array([[1, 3, 3, 0, 3], [2, 2, 1, 2, 0]], dtype=np.float32)
    got = check.session(model, check.LEVELS["optimisations on"]).run(None, {"data": x})[0]
    np.testing.assert_array_equal(got, [[[4, 2, 1], [3, 3, 3]], [[3, 1, 0], [2, 2, 2]]])
    np.testing.assert_array_equal(got, check.run_runtime(net, {"data": x})["a"])


def _outputs(model, feeds):
    return check.session(model, check.LEVELS["optimisations off"]).run(None, feeds)


def test_batchnorm_scale_fused_and_unfused_give_equal_outputs():
    net = _with_statistics(Net(NETS["resnet_block"][0], pb.TEST, seed=3))
    fused, _ = build_model(net)
    unfused, _ = build_model(net, fuse_batchnorm=False)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("BatchNormalization") == 2 and "Mul" not in ops
    ops = [n.op_type for n in unfused.graph.node]
    assert ops.count("BatchNormalization") == 2 and ops.count("Mul") == 2
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    want = check.run_runtime(net, {"data": x})["pool"]
    for model in (fused, unfused):
        got = _outputs(model, {"data": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(_outputs(fused, {"data": x})[0],
                               _outputs(unfused, {"data": x})[0], rtol=1e-5, atol=1e-6)


def test_a_batchnorm_read_by_more_than_its_scale_is_not_fused():
    def ops(text, outputs):
        model, _ = build_model(_with_statistics(Net(text, pb.TEST)), outputs=outputs)
        return {n.op_type for n in model.graph.node}

    pair = (_input((2, 3, 4, 4)) + _layer("bn", "BatchNorm", ["data"], ["bn"])
            + _layer("scale", "Scale", ["bn"], ["scale"], "scale_param { bias_term: true }"))
    assert "Mul" not in ops(pair, ["scale"])                 # fused
    assert "Mul" in ops(pair, ["scale", "bn"])               # the BatchNorm's top is wanted
    shared = pair + _layer("relu", "ReLU", ["bn"], ["relu"])  # read twice (through a Split)
    assert "Mul" in ops(shared, ["scale"])


def test_filter_and_batch_reindex_with_their_index_inputs():
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'keep' top: 'index' input_param "
            "{ shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } shape { dim: 5 } } }\n"
            + _layer("filter", "Filter", ["data", "keep"], ["kept"])
            + _layer("reindex", "BatchReindex", ["data", "index"], ["picked"]))
    net = Net(text, pb.TEST)
    model, _ = build_model(net, outputs=["kept", "picked"])
    feeds = {"data": np.arange(12, dtype=np.float32).reshape(4, 3),
             "keep": np.array([[1], [0], [-2], [0]], dtype=np.float32),
             "index": np.array([3, 0, 0, 2.7, 1], dtype=np.float32)}
    kept, picked = _outputs(model, feeds)
    np.testing.assert_array_equal(kept, feeds["data"][[0, 2]])
    np.testing.assert_array_equal(picked, feeds["data"][[3, 0, 0, 2, 1]])
    runtime = check.run_runtime(net, feeds)
    np.testing.assert_array_equal(kept, runtime["kept"])
    np.testing.assert_array_equal(picked, runtime["picked"])


REINDEXED = ("layer { name: 'in' type: 'Input' top: 'data' top: 'raw' input_param "
             "{ shape { dim: 3 dim: 4 dim: 1 dim: 8 } shape { dim: 3 } } }\n"
             + _layer("p", "Pooling", ["data"], ["pooled", "mask"],
                      "pooling_param { pool: MAX kernel_h: 1 kernel_w: 3 stride: 1 }"))


@pytest.mark.parametrize("index, also", [
    ("raw", _layer("sig_raw", "Sigmoid", ["raw"], ["raw_sig"])),    # the index read elsewhere
    ("index", _layer("pw", "Power", ["raw"], ["index"], "power_param { scale: 1 }"))])  # computed
def test_a_batch_reindex_index_as_long_as_the_batch_keeps_a_length_of_its_own(index, also):
    """3 indices into a batch of 3 (then a MAX pool's mask beside it): the index, what it is
    computed from and what reads it were declared N like the data, and onnxruntime reused the
    buffer of batch 3 for 9 ("Shape mismatch attempting to re-use buffer"). Their length is
    now unnamed."""
    text = (REINDEXED + also + _layer("reindex", "BatchReindex", ["pooled", index], ["picked"])
            + _layer("sig", "Sigmoid", ["picked"], ["out"]))
    net = Net(text, pb.TEST)
    model, _ = build_model(net)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}
    assert {k: v for k, v in dims.items() if k != "raw_sig"} == {
        "data": ["N", 4, 1, 8], "raw": [0], "mask": ["N", 4, 1, 6], "out": [0, 4, 1, 6]}
    assert dims.get("raw_sig", [0]) == [0]
    feeds = {"data": np.random.default_rng(0).standard_normal((9, 4, 1, 8), np.float32),
             "raw": np.array([8, 0, 4], np.float32)}
    runtime = check.run_runtime(net, feeds)
    for level in check.LEVELS.values():
        outputs = [o.name for o in model.graph.output]
        for got, name in zip(check.session(model, level).run(None, feeds), outputs):
            np.testing.assert_allclose(got, runtime[name], rtol=1e-6)


def test_the_prototxt_batch_is_the_datas_not_an_index_declared_before_it(tmp_path):
    """An index Input of 5 before the data's batch of 4: the export took 5 for the batch, and
    a static batch of 4 was not the prototxt's."""
    from runtime.export.model import net_batch
    net = Net("layer { name: 'in' type: 'Input' top: 'index' top: 'data' input_param "
              "{ shape { dim: 5 } shape { dim: 4 dim: 3 } } }\n"
              + _layer("reindex", "BatchReindex", ["data", "index"], ["picked"]), pb.TEST)
    assert net_batch(net) == 4
    model, _ = build_model(net, static_batch=4)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in model.graph.input}
    assert dims == {"index": [5], "data": [4, 3]}


@pytest.mark.parametrize("static_batch", [None, 4])
def test_the_check_feeds_batch_reindex_indices_into_the_batch(tmp_path, static_batch):
    """The check's random inputs: BatchReindex's index input gets 0 … batch − 1 of the blob
    it indexes, so a correct export passes (with random floats the static export was
    refused)."""
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'index' input_param "
            "{ shape { dim: 4 dim: 3 } shape { dim: 5 } } }\n"
            + _layer("reindex", "BatchReindex", ["data", "index"], ["picked"]))
    assert check.index_ranges(Net(text, pb.TEST)) == {"index": check.IndexRange(4, True)}
    to_onnx(Net(text, pb.TEST), tmp_path / "m.onnx", static_batch=static_batch)


@pytest.mark.parametrize("layer,match", [
    (_layer("c", "Crop", ["data", "data"], ["c"], "crop_param { axis: 0 }"),
     r"layer 'c' crops the batch axis \(crop_param.axis 0\)"),
    (_layer("s", "Slice", ["data"], ["a", "b"], "slice_param { axis: 0 slice_point: 1 }"),
     r"layer 's' slices the batch axis at slice_point 1"),
    (_layer("m", "Scale", ["data"], ["m"], "scale_param { axis: 0 bias_term: true filler "
                                           "{ type: 'gaussian' } bias_filler { type: 'gaussian' } }"),
     r"layer 'm' has a learned factor over the batch axis"),
    (_layer("b", "Bias", ["data"], ["b"], "bias_param { axis: 0 filler { type: 'gaussian' } }"),
     r"layer 'b' has a learned bias over the batch axis"),
    (_layer("am", "ArgMax", ["data"], ["am"], "argmax_param { axis: 0 }"),
     r"layer 'am' ranks along the batch axis \(argmax_param.axis 0\)"),
    (_layer("ip", "InnerProduct", ["data"], ["ip"],
            f"inner_product_param {{ num_output: 2 axis: 0 {FILLED} }}"),
     r"layer 'ip' folds the batch into its inputs \(inner_product_param.axis 0\)"),
    (_layer("cv", "Convolution", ["data"], ["cv"],
            f"convolution_param {{ num_output: 2 kernel_size: 2 axis: 0 {FILLED} }}"),
     r"layer 'cv' takes the batch axis as its channels \(convolution_param.axis 0\)"),
])
def test_what_is_exact_only_at_the_prototxts_batch_exports_there(layer, match, tmp_path):
    """One line says why; the model takes the prototxt's batch and equals the runtime there."""
    net = Net(_input((2, 3)) + layer, pb.TEST, seed=0)
    with pytest.raises(BatchFixed, match=match):
        build_model(net)
    worst = assert_fixed_at_the_prototxts_batch(net, tmp_path, match, [2, 3], match, 3)
    assert max(worst.values()) <= check.TOL_FP32


def test_slice_points_on_the_batch_axis_export_with_the_prototxts_static_batch():
    net = Net(_input((4, 3)) + _layer("s", "Slice", ["data"], ["a", "b"],
                                      "slice_param { axis: 0 slice_point: 1 }"), pb.TEST)
    model, _ = build_model(net, static_batch=4)
    feeds = {"data": np.arange(12, dtype=np.float32).reshape(4, 3)}
    got = dict(zip(("a", "b"), _outputs(model, feeds)))
    runtime = check.run_runtime(net, feeds)
    for name in ("a", "b"):
        np.testing.assert_array_equal(got[name], runtime[name])
    with pytest.raises(AllconvError, match="slices the batch axis"):
        build_model(net, static_batch=3)


def test_a_net_exact_only_at_its_prototxts_batch_exports_there_with_a_warning(tmp_path):
    """The default dynamic batch becomes the prototxt's, said in a warning; another static
    batch is refused in one line that names the prototxt's."""
    net = Net(_input((4, 3)) + _layer("s", "Slice", ["data"], ["a", "b"],
                                      "slice_param { axis: 0 slice_point: 1 }"), pb.TEST)
    assert_fixed_at_the_prototxts_batch(net, tmp_path, r"layer 's' slices the batch axis at "
                                        r"slice_point 1", [4, 3], r"slice_point 1", 3)


@pytest.mark.parametrize("shape,body", [
    ((1, 2, 3), "shape { dim: 1 dim: -1 }"),        # a batch-1 deploy net's flatten: (1, 6N)
    ((2, 3), "shape { dim: -1 }"),                   # everything in one axis: (3N,)
    ((2, 6, 4), "shape { dim: 2 dim: -1 } axis: 1 num_axes: 1"),
    ((2, 3, 4), "shape { dim: 3 dim: 1 } axis: 1 num_axes: 1"),   # the tail read from the input
    ((2, 6), "shape { dim: 1 } axis: 0 num_axes: 0"),             # an axis put before the batch
])
def test_reshape_gives_caffes_top_at_every_batch(shape, body):
    """Caffe's formula in the graph (0 copies, −1 infers, the other axes follow the input):
    at three times the prototxt's batch the top is the runtime's, in values and shape, and
    the shape the model declares holds at both batches, and at a static one (found against
    real Caffe: (1, 6N) was declared (1, 6) and then ('N', 6), and --static-batch refused)."""
    net = Net(_input(shape) + _layer("r", "Reshape", ["data"], ["r"], f"reshape_param {{ {body} }}"),
              pb.TEST)
    model, _ = build_model(net)
    x = np.random.RandomState(0).randn(3 * shape[0], *shape[1:]).astype(np.float32)
    got, runtime = _at_batch(model, net, {"data": x})
    assert got["r"].shape == runtime["r"].shape
    np.testing.assert_array_equal(got["r"], runtime["r"])
    declared = [d.dim_value if d.HasField("dim_value") else None
                for d in model.graph.output[0].type.tensor_type.shape.dim]
    for actual in (got["r"].shape, net.blobs["r"].shape):
        assert len(declared) == len(actual)
        assert all(d is None or d == a for d, a in zip(declared, actual)), (declared, actual)
    static, _ = build_model(net, static_batch=5)
    with check.inputs_shaped(net, {"data": (5, *shape[1:])}):
        assert [d.dim_value for d in static.graph.output[0].type.tensor_type.shape.dim] == \
            list(net.blobs["r"].shape)


def test_inputs_of_two_batches_concatenated_declare_the_sum(tmp_path):
    """A 2-row and a 4-row input: each grows with the batch in proportion (the 4-row one is
    unnamed), so their Concat is 15 rows at --static-batch 5 and unnamed when dynamic."""
    text = ('layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }\n'
            'layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 4 dim: 3 } } }\n'
            + _layer("c", "Concat", ["a", "b"], ["c"], "concat_param { axis: 0 }"))
    net = Net(text, pb.TEST)
    for static, want in ((None, [None, 3]), (5, [15, 3])):
        to_onnx(net, tmp_path / "m.onnx", static_batch=static)    # checked at its batches
        model = onnx.load(tmp_path / "m.onnx")
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in model.graph.output[0].type.tensor_type.shape.dim]
        assert dims == want


def test_the_check_refuses_an_output_of_another_shape_than_declared():
    """onnxruntime only logs it ("Expected shape from model of {1,6} does not match actual
    shape of {1,15}"); a consumer that trusts the declaration would get the wrong size."""
    net = Net(_input((2, 3)) + _layer("r", "Reshape", ["data"], ["r"],
                                      "reshape_param { shape { dim: 1 dim: -1 } }"), pb.TEST)
    model, values = build_model(net)
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 6    # as it was declared
    # right at the prototxt's batch, wrong at three times it: exported there, with a warning
    with pytest.raises(BatchFixed, match=r"batch 6\) gives output 'r' the shape \(1, 18\), "
                                         r"where the model declares \[1, 6\]"):
        check.validate(model, net, lambda feeds: feeds, values, False, None)


def _at_batch(model, net, feeds):
    """onnxruntime's outputs and the runtime's blobs on ``feeds`` (another batch than the
    prototxt's)."""
    names = [o.name for o in model.graph.output]
    return dict(zip(names, _outputs(model, feeds))), check.run_runtime(net, feeds)


def test_a_mean_over_the_batch_axis_divides_by_the_batch_it_is_given(tmp_path):
    """Reduction MEAN at Caffe's default axis 0: the graph divides by the batch it runs on
    (the runtime's coeff / count held the prototxt's batch of 2: refused, and wrong at batch 3
    unchecked)."""
    net = Net(_input((2, 3, 4)) + _layer("r", "Reduction", ["data"], ["r"],
                                         "reduction_param { operation: MEAN coeff: 1.5 }"),
              pb.TEST)
    to_onnx(net, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((3, 3, 4)).astype(np.float32)
    got, runtime = _at_batch(onnx.load(tmp_path / "m.onnx"), net, {"data": x})
    assert got["r"] == pytest.approx(1.5 * x.mean(), rel=1e-6)
    assert got["r"] == pytest.approx(float(runtime["r"]), rel=1e-6)


@pytest.mark.parametrize("type_,param", [("Scale", "scale_param { axis: 1 bias_term: true }"),
                                         ("Bias", "bias_param { axis: 1 }")])
@pytest.mark.parametrize("static_batch", [None, 4])
def test_a_second_bottom_after_the_batch_axis_keeps_its_own_shape(tmp_path, type_, param,
                                                                   static_batch):
    """Scale/Bias by an input covering axes 1-2: that input has no batch axis, so it keeps its
    3×4 in the graph and in the check (it was declared N×4: refused, and with --static-batch 4
    the check made it 6×4)."""
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'f' input_param "
            "{ shape { dim: 2 dim: 3 dim: 4 dim: 5 } shape { dim: 3 dim: 4 } } }\n"
            + _layer("s", type_, ["data", "f"], ["s"], param))
    net = Net(text, pb.TEST, seed=0)
    to_onnx(net, tmp_path / "m.onnx", static_batch=static_batch)
    model = onnx.load(tmp_path / "m.onnx")
    declared = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in model.graph.input}
    assert declared == {"data": [static_batch or "N", 3, 4, 5], "f": [3, 4]}
    rng = np.random.default_rng(1)
    feeds = {"data": rng.standard_normal((static_batch or 5, 3, 4, 5)).astype(np.float32),
             "f": rng.standard_normal((3, 4)).astype(np.float32)}
    got, runtime = _at_batch(model, net, feeds)
    np.testing.assert_allclose(got["s"], runtime["s"], rtol=1e-6, atol=1e-6)


def test_equal_slices_of_the_batch_export_dynamic_and_are_checked_at_multiples_of_it(tmp_path):
    """Slice into two equal parts on axis 0 of a batch-4 net: the check runs at 4 and 12 (at 1
    and 3 no equal split exists, and the export was refused)."""
    net = Net(_input((4, 3)) + _layer("s", "Slice", ["data"], ["a", "b"],
                                      "slice_param { axis: 0 }"), pb.TEST)
    to_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    assert check.prototxt_batch(model, net) == 4
    x = np.arange(18, dtype=np.float32).reshape(6, 3)
    got, _ = _at_batch(model, net, {"data": x})
    np.testing.assert_array_equal(got["a"], x[:3])
    np.testing.assert_array_equal(got["b"], x[3:])


def test_fp16_keeps_index_inputs_float32_and_refuses_indices_it_cannot_hold(tmp_path):
    """float16 holds integers exactly only up to 2048: Embed's index input stays float32 (index
    4097 read as 4096 gathered the wrong row), ArgMax over 3000 values is refused, and an index
    input also read as values is refused."""
    text = ("layer { name: 'in' type: 'Input' top: 'idx' input_param { shape { dim: 2 dim: 3 } } }\n"
            + _layer("e", "Embed", ["idx"], ["e"], "embed_param { input_dim: 5000 num_output: 2 "
                     "weight_filler { type: 'gaussian' std: 1 } bias_term: false }"))
    net = Net(text, pb.TEST, seed=0)
    to_onnx(net, tmp_path / "m.onnx", fp16=True)
    model = onnx.load(tmp_path / "m.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # the metadata says so (it said float16, and an input made by it was refused), and gives
    # a layout only to an input of an image's 4 axes
    described = {p.key: p.value for p in model.metadata_props}["allconv.input"]
    assert json.loads(described) == {"name": "idx", "dtype": "float32", "shape": ["N", 3]}
    idx = np.array([[4097, 4096, 4999]], dtype=np.float32)
    (got,) = _outputs(model, {"idx": idx})
    weight = net.layers[1].blobs[0].detach().numpy()
    np.testing.assert_allclose(got[0], weight[[4097, 4096, 4999]], rtol=1e-3, atol=1e-3)
    assert not np.allclose(got[0, 0], got[0, 1])

    mixed = Net(text + _layer("p", "Power", ["idx"], ["p"]), pb.TEST, seed=0)
    with pytest.raises(AllconvError, match=r"--fp16: input 'idx' holds indices and layer 'p' "
                                           r"reads it as values; export it in float32"):
        build_model(mixed, fp16=True)
    wide = Net(_input((2, 3000)) + _layer("am", "ArgMax", ["data"], ["am"],
                                          "argmax_param { axis: 1 }"), pb.TEST)
    with pytest.raises(AllconvError, match=r"--fp16: ArgMax 'am' gives indices up to 2999; "
                                           r"float16 holds integers exactly only up to 2048"):
        build_model(wide, fp16=True)
    values = Net(_input((2, 3000)) + _layer("am", "ArgMax", ["data"], ["am"],
                                            "argmax_param { axis: 1 out_max_val: true }"),
                 pb.TEST)
    build_model(values, fp16=True)      # values, not indices: float16 holds them


def test_fp16_argmax_over_near_equal_scores_is_refused_with_the_reason(tmp_path):
    """Scores 100 ± 0.03 are ties in float16 (steps of 0.0625 there): its ArgMax picks other
    indices than Caffe's, and the refusal says why and what to export instead."""
    text = _input((2, 6)) + _layer("ip", "InnerProduct", ["data"], ["ip"], (
        "inner_product_param { num_output: 10 weight_filler { type: 'gaussian' std: 0.01 } "
        "bias_filler { type: 'constant' value: 100 } }")) + _layer(
        "am", "ArgMax", ["ip"], ["top"], "argmax_param { top_k: 3 }")
    with pytest.raises(check.Mismatch, match=r"on output 'top' by \d.*ArgMax then picks other "
                                             r"indices: export the blob it reads\); nothing"):
        to_onnx(Net(text, pb.TEST, seed=0), tmp_path / "m.onnx", fp16=True)
    assert not (tmp_path / "m.onnx").exists()
    to_onnx(Net(text, pb.TEST, seed=0), tmp_path / "m.onnx", fp16=True, outputs=["ip"])


def test_to_onnx_fuses_batchnorm_with_its_scale_by_default(tmp_path):
    """export-onnx relies on to_onnx's default (build_model's alone was tested)."""
    net = _with_statistics(Net(NETS["resnet_block"][0], pb.TEST, seed=3))
    to_onnx(net, tmp_path / "m.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert ops.count("BatchNormalization") == 2 and "Mul" not in ops


def test_an_empty_output_differs_by_nothing():
    assert check.largest_difference(np.zeros((0, 3), np.float32),
                                    np.zeros((0, 3), np.float32)) == 0.0


def test_a_size_only_the_prototxts_batch_gives_falls_back_to_that_batch(tmp_path, capfd):
    """A Reshape moves the batch into axis 1 and a Slice cuts that axis at sizes of the
    prototxt's batch: onnxruntime fails at three times it, so the model is written at the
    prototxt's batch with a warning (it was refused); onnxruntime's own log stays quiet."""
    net = Net(_input((3, 6)) + _layer("r", "Reshape", ["data"], ["r"],
                                      "reshape_param { shape { dim: 2 dim: -1 } }")
              + _layer("s", "Slice", ["r"], ["a", "b"], "slice_param { axis: 1 slice_point: 4 }"),
              pb.TEST)
    with pytest.warns(UserWarning, match=r"the model is exact only at the prototxt's batch "
                                         r"\(onnxruntime .* cannot run the model at batch 9 .*"
                                         r"the model's batch is fixed at the prototxt's, 3"):
        worst = to_onnx(net, tmp_path / "m.onnx")
    assert max(worst.values()) == 0
    dims = onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 6]
    assert "onnxruntime:" not in capfd.readouterr().err


def test_batch_reindex_indices_stay_within_the_blob_they_index(tmp_path):
    """Eight indices into a blob of one row (Caffe runs it with index 0): the check draws
    them within that row; it drew 0 … 7 and refused."""
    net = Net("layer { name: 'in' type: 'Input' top: 'perm' top: 'data' input_param { shape "
              "{ dim: 8 } shape { dim: 1 dim: 4 } } }\n"
              + _layer("bri", "BatchReindex", ["data", "perm"], ["y"]), pb.TEST)
    assert check.index_ranges(net) == {"perm": check.IndexRange(1, True)}
    assert max(to_onnx(net, tmp_path / "m.onnx", static_batch=8).values()) == 0


FILTERED = ("layer { name: 'in' type: 'Input' top: 'data' top: 'sel' input_param { shape "
            "{ dim: 4 dim: 3 } shape { dim: 4 } } }\n"
            + _layer("flt", "Filter", ["data", "sel"], ["f"]))


FILTERED_IP = FILTERED + _layer("ip", "InnerProduct", ["f"], ["ip"],
                               f"inner_product_param {{ num_output: 2 {FILLED} }}")


@pytest.mark.parametrize("static", [None, 4, 6])
def test_the_rows_a_filter_keeps_are_an_unnamed_axis(static, tmp_path):
    """As many as the selector keeps, at a static batch too (the declared-shape check refused
    --static-batch 4: "(2, 2), where the model declares [4, 2]"; dynamic, it was 'N')."""
    to_onnx(Net(FILTERED_IP, pb.TEST), tmp_path / "m.onnx", static_batch=static)
    dims = onnx.load(tmp_path / "m.onnx").graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value if d.HasField("dim_value") else d.dim_param or None
            for d in dims] == [None, 2]


@pytest.mark.parametrize("check_model", [False, True])
def test_an_export_leaves_the_nets_blobs_as_they_were(check_model, tmp_path):
    """pycaffe's way: set the input, forward, export, read the blobs. The shape probe at
    another batch (and the check's forwards) dropped them, and a written input."""
    net = Net(FILTERED_IP, pb.TEST, seed=1)
    net.blobs["data"].data[...] = torch.arange(12.0).reshape(4, 3)
    net.blobs["sel"].data[...] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    net.forward()
    before = {name: blob.data.clone() for name, blob in net.blobs.items()}
    to_onnx(net, tmp_path / "m.onnx", check_model=check_model)
    for name, blob in net.blobs.items():
        torch.testing.assert_close(blob.data, before[name], rtol=0, atol=0)
    net.forward()
    torch.testing.assert_close(net.blobs["ip"].data, before["ip"], rtol=0, atol=0)


def test_the_check_drops_rows_through_a_filter(tmp_path):
    """The selector the check feeds keeps half the rows, so a graph that takes the Filter's
    size from the prototxt would fail; Filter then InnerProduct exports and agrees."""
    feeds = check.random_feeds(build_model(Net(FILTERED, pb.TEST))[0], 4, 0, {}, {"sel"})
    assert sorted(feeds["sel"].tolist()) == [0, 0, 1, 1]
    net = Net(FILTERED + _layer("ip", "InnerProduct", ["f"], ["ip"],
                                f"inner_product_param {{ num_output: 2 {FILLED} }}"), pb.TEST)
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) <= check.TOL_FP32


@pytest.mark.parametrize("static_batch", [None, 4])
def test_a_batch_fixed_layer_below_a_filter_is_refused_in_one_line(tmp_path, static_batch):
    """The Filter's selection sets the batch, not the prototxt: a Slice point there does not
    export, static batch or not (it was written, and onnxruntime then failed on it)."""
    net = Net(FILTERED + _layer("s", "Slice", ["f"], ["a", "b"],
                                "slice_param { axis: 0 slice_point: 1 }"), pb.TEST)
    with pytest.raises(AllconvError, match=r"^layer 's' slices the batch axis at slice_point 1, "
                                           r"and its input's batch follows the selection of "
                                           r"Filter 'flt': it does not export$"):
        to_onnx(net, tmp_path / "m.onnx", static_batch=static_batch)
    assert not (tmp_path / "m.onnx").exists()


def test_float16_mvn_of_one_value_per_row_is_zero(tmp_path):
    """Caffe's eps 1e-9 is 0 in float16 and a row of one value was 0/0, NaN; Caffe gives 0."""
    net = Net(_input((2, 5)) + _layer("mvn", "MVN", ["data"], ["mvn"]), pb.TEST)
    to_onnx(net, tmp_path / "m.onnx", fp16=True)
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float16)
    (got,) = _outputs(onnx.load(tmp_path / "m.onnx"), {"data": x})
    assert np.array_equal(got, np.zeros((3, 5, 1, 1), np.float16))


@pytest.mark.parametrize("across", ["false", "true"])
def test_mvn_of_a_one_axis_bottom_exports(across, tmp_path):
    """A bottom of one axis (N) is Caffe's N × 1 × 1 × 1: one channel per row (its reshape
    to N × C × rest had no C to copy, and onnxruntime refused the model)."""
    net = Net(_input((5,)) + _layer("mvn", "MVN", ["data"], ["mvn"],
                                    f"mvn_param {{ across_channels: {across} }}"), pb.TEST)
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) <= check.TOL_FP32
    assert net.blobs["mvn"].shape == (5, 1, 1, 1)


def test_a_net_that_runs_only_with_every_row_kept_is_checked_so(tmp_path):
    """A Filter's top concatenated with its unfiltered input along the channels runs (in Caffe
    too) only when the selector keeps every row: the check then keeps them all (it refused)."""
    net = Net(FILTERED + _layer("cc", "Concat", ["f", "data"], ["cc"]), pb.TEST)
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) == 0


def test_the_metadata_describes_every_input():
    """With several inputs, allconv.input listed their names but gave the first's shape, and a
    float32 and NCHW for all (a 2-axis input too)."""
    net = Net("layer { name: 'in' type: 'Input' top: 'a' top: 'b' input_param { shape { dim: 2 "
              "dim: 3 dim: 4 dim: 4 } shape { dim: 2 dim: 5 } } }\n"
              + _layer("pa", "Pooling", ["a"], ["pa"],
                       "pooling_param { pool: AVE global_pooling: true }")
              + _layer("fa", "Flatten", ["pa"], ["fa"])
              + _layer("c", "Concat", ["fa", "b"], ["c"]), pb.TEST)
    model, _ = build_model(net)
    described = {p.key: p.value for p in model.metadata_props}["allconv.input"]
    assert json.loads(described) == [
        {"name": "a", "layout": "NCHW", "dtype": "float32", "shape": ["N", 3, 4, 4]},
        {"name": "b", "dtype": "float32", "shape": ["N", 5]}]


def test_an_fp16_output_past_float16s_range_says_why(tmp_path):
    """A MAX pooling window over nothing gives -FLT_MAX, which float16 cannot hold: the
    refusal gave only the difference, 3.4e+38."""
    net = Net(_input((1, 1, 12, 12)) + _layer("p", "Pooling", ["data"], ["p"],
                                             "pooling_param { pool: MAX kernel_size: 2 "
                                             "stride: 4 }"), pb.TEST)
    with pytest.raises(AllconvError, match=r"differs from the runtime on output 'p' by 3.4e\+38; "
                                           r".*\(the runtime's values reach 3.4e\+38, past "
                                           r"float16's 65504: a MAX pooling window over nothing"):
        to_onnx(net, tmp_path / "m.onnx", fp16=True)
    assert not (tmp_path / "m.onnx").exists()
