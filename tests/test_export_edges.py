"""The exporter at the edges of its nets and settings, each against onnxruntime and the
runtime: from a mutation round over runtime/export, each test killing a change the other
tests let live."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")   # the [onnx] extra: without it, these tests skip

from runtime.errors import AllconvError
from runtime.export import build_model, check, to_onnx
from runtime.net import Net
from runtime.proto import pb
from test_export import FILLED, _input, _layer

pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")


def _run(model, feeds):
    """onnxruntime's outputs, optimisations off and on (each must agree)."""
    outputs = [o.name for o in model.graph.output]
    got = [check.session(model, level).run(outputs, feeds) for level in check.LEVELS.values()]
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
    return dict(zip(outputs, got[0]))


def test_one_blob_shared_by_a_transposed_and_a_plain_inner_product(tmp_path):
    """Two InnerProducts share one square weight (param name 'w'), one with transpose: true:
    the initializer cache keys on the tensor *and* the transposition, so each gets its own
    layout (as mutated: keyed on the tensor alone, the second got the first's Wᵀ)."""
    ip = ("param {{ name: 'w' }} inner_product_param {{ num_output: 4 bias_term: false {t} "
          "weight_filler {{ type: 'gaussian' std: 0.5 }} }}")
    text = (_input((2, 4))
            + _layer("a", "InnerProduct", ["data"], ["a"], ip.format(t=""))
            + _layer("b", "InnerProduct", ["data"], ["b"], ip.format(t="transpose: true")))
    net = Net(text, pb.TEST, seed=0)
    layers = {layer.name: layer for layer in net.layers}
    assert layers["a"].blobs[0] is layers["b"].blobs[0]      # one tensor, two layouts
    worst = to_onnx(net, tmp_path / "m.onnx", outputs=["a", "b"])
    assert max(worst.values()) <= check.TOL_FP32
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    got = _run(onnx.load(tmp_path / "m.onnx"), {"data": x})
    runtime = check.run_runtime(net, {"data": x})
    np.testing.assert_allclose(got["a"], runtime["a"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["b"], runtime["b"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(runtime["a"], runtime["b"])           # W is not symmetric


def test_two_embeds_of_one_input_are_checked_within_the_smaller_input_dim(tmp_path):
    """An index Input read (through a Split) by Embeds of input_dim 3 and 50: the check draws
    indices below 3, the smaller range, so that both run (as mutated: the larger range, 50,
    made the first Embed refuse its input and the export failed)."""
    text = ('layer { name: "in" type: "Input" top: "idx" '
            'input_param { shape { dim: 2 dim: 3 } } }\n'
            + _layer("e1", "Embed", ["idx"], ["e1"], f"embed_param {{ num_output: 2 input_dim: 3 "
                                                     f"{FILLED} }}")
            + _layer("e2", "Embed", ["idx"], ["e2"], f"embed_param {{ num_output: 2 input_dim: 50 "
                                                     f"{FILLED} }}"))
    net = Net(text, pb.TEST, seed=0)
    assert check.index_ranges(net) == {"idx": check.IndexRange(3)}
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) <= check.TOL_FP32


def test_a_static_batch_below_the_prototxts_draws_reindex_indices_within_it(tmp_path):
    """BatchReindex of 5 indices into data of prototxt batch 4, exported at --static-batch 2:
    the check draws the indices within the 2 rows it feeds (as mutated: it drew 0 … 3, the
    runtime refused the index, and the export was refused 'give --static-batch 4')."""
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'index' input_param "
            "{ shape { dim: 4 dim: 3 } shape { dim: 5 } } }\n"
            + _layer("reindex", "BatchReindex", ["data", "index"], ["picked"]))
    net = Net(text, pb.TEST)
    assert max(to_onnx(net, tmp_path / "m.onnx", static_batch=2).values()) == 0
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in onnx.load(tmp_path / "m.onnx").graph.input}
    assert dims == {"data": [2, 3], "index": [5]}


def test_a_float16_mask_of_indices_up_to_2048_exports(tmp_path):
    """A MAX pooling mask over a plane of 3 × 683 = 2049 values: its indices reach 2048, which
    float16 holds exactly (FP16_EXACT), so --fp16 exports it; one more is refused
    (test_export.py). l05 (>= FP16_EXACT) refused 2048."""
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
            'dim: 3 dim: 683 } } }\n'
            + _layer("pool", "Pooling", ["x"], ["p", "mask"],
                     "pooling_param { pool: MAX kernel_size: 1 stride: 1 }"))
    net = Net(text, pb.TEST)
    model, _ = build_model(net, fp16=True)
    x = np.random.default_rng(0).standard_normal((1, 1, 3, 683)).astype(np.float16)
    mask = _run(model, {"x": x})["mask"]
    assert mask.dtype == np.float16 and mask.max() == 2048
    np.testing.assert_array_equal(mask.reshape(-1), np.arange(2049))
    with pytest.raises(AllconvError, match="holds indices up to 2049"):
        build_model(Net(text.replace("dim: 3 dim: 683", "dim: 2 dim: 1025"), pb.TEST), fp16=True)


def test_a_mask_where_caffe_drops_the_last_window_counts_in_the_cropped_width(tmp_path):
    """MAX pooling with a mask, kernel 2 stride 3 pad 1 on 5 × 7: Caffe's last window would
    start in the padding and is dropped, so the last input row (and columns) no window reads;
    the converter crops them, and the mask's row arithmetic is over the cropped, padded width
    (as mutated: without the crop MaxPool's flat indices ran over a wider plane and the mask was
    wrong, though the values were right)."""
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 2 '
            'dim: 5 dim: 7 } } }\n'
            + _layer("pool", "Pooling", ["x"], ["p", "mask"],
                     "pooling_param { pool: MAX kernel_size: 2 stride: 3 pad: 1 }"))
    net = Net(text, pb.TEST)
    assert tuple(net.blobs["mask"].shape) == (2, 2, 2, 3)
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) == 0
    x = np.random.default_rng(1).standard_normal((3, 2, 5, 7)).astype(np.float32)
    got = _run(onnx.load(tmp_path / "m.onnx"), {"x": x})
    runtime = check.run_runtime(net, {"x": x})
    np.testing.assert_array_equal(got["p"], runtime["p"])
    np.testing.assert_array_equal(got["mask"], runtime["mask"])


def _batch_statistics_scaled(shape, scale_param: str) -> Net:
    """A TEST net of a BatchNorm of batch statistics (use_global_stats: false) read by a Scale
    of ``scale_param``'s fields."""
    return Net(_input(shape) + _layer("bn", "BatchNorm", ["data"], ["bn"],
                                      "batch_norm_param { use_global_stats: false }")
               + _layer("sc", "Scale", ["bn"], ["sc"], f"scale_param {{ {scale_param} }}"),
               pb.TEST, seed=0)


def test_batch_statistics_with_a_scale_of_factor_1_keep_its_bias(tmp_path):
    """BatchNorm with batch statistics (use_global_stats: false in a TEST net) fused with a
    Scale whose factor is its default filler's 1 and whose bias is not 0: the bias is added
    (as mutated: a factor of all 1s left the bias out too)."""
    net = _batch_statistics_scaled((3, 4, 2, 2), "bias_term: true bias_filler { type: "
                                   "'gaussian' std: 1 }")
    factor, bias = (b.detach().numpy() for b in net.layers[-1].blobs)
    assert np.all(factor == 1) and np.any(bias)
    model, _ = build_model(net)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) <= check.TOL_FP32


def _argmax_net(size: int, fields: str) -> str:
    return ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 '
            f'dim: {size} }} }} }}\n' + _layer("am", "ArgMax", ["x"], ["am"],
                                             f"argmax_param {{ {fields} }}"))


def test_a_float16_argmax_over_2049_values_exports_its_indices_up_to_2048():
    """ArgMax over 2049 values in float16: its indices 0 … 2048 are integers float16 holds,
    so it exports; over 2050 it is refused (as mutated: > FP16_EXACT on the size refused 2049)."""
    model, _ = build_model(Net(_argmax_net(2049, "axis: 1"), pb.TEST), fp16=True)
    x = np.zeros((2, 2049), np.float16)
    x[0, 2048], x[1, 7] = 1, 1
    np.testing.assert_array_equal(_run(model, {"x": x})["am"], [[2048], [7]])
    with pytest.raises(AllconvError, match="gives indices up to 2049"):
        build_model(Net(_argmax_net(2050, "axis: 1"), pb.TEST), fp16=True)


def test_a_float16_argmax_without_an_axis_refuses_indices_beside_its_values():
    """ArgMax without an axis and with out_max_val gives Caffe's (N, 2, top_k): indices and
    values; indices past 2048 do not fit float16, so --fp16 is refused as it is for
    indices alone (as mutated: out_max_val was taken for values only, and it exported)."""
    with pytest.raises(AllconvError, match="ArgMax 'am' gives indices up to 2999"):
        build_model(Net(_argmax_net(3000, "out_max_val: true"), pb.TEST), fp16=True)
    with pytest.raises(AllconvError, match="ArgMax 'am' gives indices up to 2999"):
        build_model(Net(_argmax_net(3000, ""), pb.TEST), fp16=True)
    build_model(Net(_argmax_net(3000, "axis: 1 out_max_val: true"), pb.TEST), fp16=True)


def _batch_dims(path) -> dict:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in onnx.load(path).graph.input}


def test_a_scale_by_a_second_bottom_over_the_batch_axis_keeps_the_batch_dynamic(tmp_path):
    """Scale axis 0 by a second bottom (N, C) of a (N, C, H, W) bottom: the factor's view
    (N, C, 1, 1) copies its batch (Reshape's 0), so the model takes any batch (as mutated: the view
    held the prototxt's 2, the check failed at 6, and the export fell back to a static batch
    of 2 with a warning)."""
    text = ("layer { name: 'in' type: 'Input' top: 'data' top: 'f' input_param "
            "{ shape { dim: 2 dim: 3 dim: 2 dim: 2 } shape { dim: 2 dim: 3 } } }\n"
            + _layer("s", "Scale", ["data", "f"], ["s"], "scale_param { axis: 0 }"))
    net = Net(text, pb.TEST)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worst = to_onnx(net, tmp_path / "m.onnx")
    assert not [w for w in caught if "fixed at the prototxt" in str(w.message)]
    assert max(worst.values()) <= check.TOL_FP32
    assert _batch_dims(tmp_path / "m.onnx") == {"data": ["N", 3, 2, 2], "f": ["N", 3]}


@pytest.mark.parametrize("type_,param", [("Scale", "scale_param"), ("Bias", "bias_param")])
def test_a_learned_scalar_on_axis_0_keeps_the_batch_dynamic(tmp_path, type_, param):
    """A learned Scale or Bias of num_axes 0 (one scalar) with axis 0: the scalar covers no
    axis, the batch's neither, so the export is dynamic (as mutated: it was taken for a learned blob
    over the batch axis, BatchFixed, and the batch was fixed at the prototxt's)."""
    text = (_input((2, 3))
            + _layer("s", type_, ["data"], ["s"], f"{param} {{ axis: 0 num_axes: 0 filler "
                                                  "{ type: 'gaussian' std: 1 } }"))
    net = Net(text, pb.TEST, seed=0)
    assert tuple(net.layers[-1].blobs[0].shape) == ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worst = to_onnx(net, tmp_path / "m.onnx")
    assert not [w for w in caught if "fixed at the prototxt" in str(w.message)]
    assert max(worst.values()) <= check.TOL_FP32
    assert _batch_dims(tmp_path / "m.onnx") == {"data": ["N", 3]}


@pytest.mark.parametrize("static_batch", [0, -1])
def test_a_static_batch_of_zero_or_less_is_refused(tmp_path, static_batch):
    """to_onnx/build_model refuse a static batch that is not positive (as mutated: 0 was
    taken, and, being falsy, exported a dynamic batch where a fixed one was asked for)."""
    net = Net(_input((2, 3)) + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)
    with pytest.raises(AllconvError,
                       match=f"the static batch must be positive, not {static_batch}"):
        to_onnx(net, tmp_path / "m.onnx", static_batch=static_batch)
    assert not (tmp_path / "m.onnx").exists()


def test_repeated_outputs_are_refused_by_the_api_too(tmp_path):
    """to_onnx(outputs=[b, b]) is refused in one line, as the command line refuses it
    (as mutated: without the check a model with the graph output 'r' twice was written)."""
    net = Net(_input((2, 3)) + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)
    with pytest.raises(AllconvError, match=r"output blob\(s\) 'r' named more than once"):
        to_onnx(net, tmp_path / "m.onnx", outputs=["r", "r"])
    assert not (tmp_path / "m.onnx").exists()


def test_with_preprocessing_refuses_a_net_of_two_inputs():
    """--with-preprocessing feeds the one net input from ``image``: a second input (a label
    beside a 3×32×32 data) is refused (as mutated: only a net of no input was)."""
    from runtime.export import check_image_net
    net = Net("layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape "
              "{ dim: 1 dim: 3 dim: 32 dim: 32 } shape { dim: 1 } } }\n"
              + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)
    with pytest.raises(AllconvError, match=r"one 3×32×32 input; this net's input\(s\): "
                                           r"data \(1, 3, 32, 32\), label \(1,\)"):
        check_image_net(net)
    check_image_net(Net(_input((1, 3, 32, 32)) + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST))


def test_the_metadata_gives_a_layout_to_4_axis_inputs_alone():
    """allconv.input's "layout": "NCHW" only for an input of an image's 4 axes, not a 3-axis
    one (as mutated: >= 3 axes)."""
    net = Net(_input((2, 3, 5)) + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)
    model, _ = build_model(net)
    described = {p.key: p.value for p in model.metadata_props}["allconv.input"]
    assert json.loads(described) == {"name": "data", "dtype": "float32", "shape": ["N", 3, 5]}


def test_a_net_whose_only_output_is_an_input_rewritten_in_place_says_so(tmp_path):
    """Caffe's only output is the Input top a ReLU rewrites in place: the default outputs fall
    back to it, and the refusal says why it cannot be one (as mutated: without the fallback it said
    "the net has no output blob: a layer reads every top (none among the last)", which is not
    what happened)."""
    net = Net(_input((2, 3)) + _layer("r", "ReLU", ["data"], ["data"]), pb.TEST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AllconvError, match=r"output blob\(s\) 'data' are net inputs"):
            to_onnx(net, tmp_path / "m.onnx")


def test_a_part_of_a_net_exports_with_its_inputs_at_their_present_shape(tmp_path):
    """A part of a net (the ArgMax over the batch beside an unexported ReLU) is built with the
    net's inputs at their present shapes, 5 after a reshape, not the prototxt's 2: it is exact
    only at its batch, which is then 5 (as mutated: the part kept the prototxt's 2)."""
    net = Net(_input((2, 3)) + _layer("am", "ArgMax", ["data"], ["am"], "argmax_param { axis: 0 }")
              + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)
    net.blobs["data"].reshape(5, 3)
    net.reshape()
    with pytest.warns(UserWarning, match=r"the model's batch is fixed at the prototxt's, 5"):
        worst = to_onnx(net, tmp_path / "m.onnx", outputs=["am"])
    assert max(worst.values()) == 0
    assert _batch_dims(tmp_path / "m.onnx") == {"data": [5, 3]}


PARAMETER_SCALED = (
    "layer { name: 'in' type: 'Input' top: 'f' input_param { shape { dim: 3 } } }\n"
    "layer { name: 'p' type: 'Parameter' top: 'p' parameter_param { shape { dim: 2 dim: 3 } } }\n"
    + _layer("s", "Scale", ["p", "f"], ["s"], "scale_param { axis: 1 }")
    + _layer("am", "ArgMax", ["s"], ["am"], "argmax_param { axis: 0 }"))


def test_a_net_whose_input_has_no_batch_axis_has_the_batch_1(tmp_path):
    """The only input is a Scale's factor over the axes after the batch (no batch axis): the
    prototxt's batch is 1, so --static-batch 1 is its own and the ArgMax over axis 0 exports
    (as mutated: the default batch 2 refused it, 'give --static-batch 2')."""
    from runtime.export.model import net_batch
    net = Net(PARAMETER_SCALED, pb.TEST)
    assert net_batch(net) == 1
    assert max(to_onnx(net, tmp_path / "m.onnx", static_batch=1).values()) == 0


def _image_net():
    return Net(_input((1, 3, 32, 32)) + _layer("r", "ReLU", ["data"], ["r"]), pb.TEST)


def test_preprocessing_of_a_uniform_image_divides_by_1_as_gcn(tmp_path):
    """A uniform image (every value 128) has a GCN norm of 0, below min_divisor: GCN divides
    by 1 there, giving zeros before ZCA, and the graph does the same (as mutated: dividing by the
    norm gave 0/0, NaN). The check's random images never have such a norm."""
    from test_export import fast_whitening
    rng = np.random.default_rng(0)
    whitening = fast_whitening(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    model, _ = build_model(_image_net(), whitening=whitening)
    images = np.full((2, 32, 32, 3), 128, np.uint8)
    images[1] = rng.integers(0, 256, (32, 32, 3))
    got = _run(model, {"image": images})["r"]
    want = np.maximum(whitening(images.transpose(0, 3, 1, 2), device="cpu"), 0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_preprocessing_adds_the_whitenings_sqrt_bias(tmp_path):
    """A Whitening of sqrt_bias 1e5 (pylearn2's GCN: sqrt(sqrt_bias + Σx²) / scale): the graph
    adds it under the root, as the harness does (as mutated: left out, unseen with the
    default 0)."""
    import dataclasses
    from test_export import fast_whitening
    rng = np.random.default_rng(0)
    whitening = dataclasses.replace(
        fast_whitening(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)), sqrt_bias=1e5)
    assert max(to_onnx(_image_net(), tmp_path / "m.onnx", whitening=whitening).values()) \
        <= check.TOL_FP32


def test_a_batchnorm_scaled_on_another_axis_is_not_fused(tmp_path):
    """A BatchNorm read by a learned Scale of one (3,) factor on axis 2 (the height, as long as
    the channels): not the channel-wise pair, so it exports as BatchNorm then Mul (as mutated:
    without the axis test it was fused, the factor applied per channel, and the check
    refused the model)."""
    net = _batch_statistics_scaled((2, 3, 3, 2), "axis: 2 num_axes: 1 filler { type: "
                                   "'gaussian' std: 1 }")
    assert tuple(net.layers[-1].blobs[0].shape) == (3,)
    model, _ = build_model(net)
    assert "Mul" in {n.op_type for n in model.graph.node}
    assert max(to_onnx(net, tmp_path / "m.onnx").values()) <= check.TOL_FP32


def test_a_nan_on_one_side_near_float32s_overflow_says_so():
    """A weight of -1.9e38 overflows float32 in one sum order and not in the other: the
    refusal said "differs by nan" alone."""
    reference = {"c": np.array([1.5e38, 1.0], np.float32), "p": np.array([0.5, 0.5], np.float32)}
    with pytest.raises(check.Mismatch, match=(
            r"on output 'p' by NaN \(NaN on one side only\); the first blob that differs is 'c' "
            r"\(the runtime's blobs reach 1.5e\+38, near float32's 3.4e\+38")):
        check._compare(np.array([np.nan, 0.5], np.float32), reference, "p", False, "o",
                       lambda: "'c'")
    reference["c"][0] = -np.finfo(np.float32).max    # -FLT_MAX: Caffe's MAX over nothing
    with pytest.raises(check.Mismatch, match=r"by 0.5; the first blob that differs is 'c'; "):
        check._compare(np.array([1.0, 0.5], np.float32), reference, "p", False, "o",
                       lambda: "'c'")
