"""ONNX export of issue 17's inference layers (neurons, Embed, Parameter, Im2col, RNN, LSTM,
LSTMUnit): onnxruntime against the runtime through ``to_onnx``'s own check (optimisations off
and on, two batch sizes on each input's batch axis), the ops chosen, and the loss layers'
refusal. Real Caffe's values for the same layers are compared in test_export.py
(``test_onnxruntime_computes_what_real_caffe_computed``, every fixture net that exports)."""
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")   # the [onnx] extra: without it, these tests skip

from runtime.errors import AllconvError
from runtime.export import build_model, check, to_onnx
from runtime.net import Net
from runtime.proto import pb

FILLED = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 }'


def inputs(**shapes) -> str:
    tops = "".join(f' top: "{n}"' for n in shapes)
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in s) + " }" for s in shapes.values())
    return f'layer {{ name: "input" type: "Input"{tops} input_param {{ {dims} }} }}\n'


def layer(name, type_, bottoms, tops, body="") -> str:
    links = "".join(f' bottom: "{b}"' for b in bottoms) + "".join(f' top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_}"{links} {body} }}\n'


def neuron(name, type_, bottom, body="", top=None):
    return layer(name, type_, [bottom], [top or name], body)


NETS = {
    "neurons": (
        inputs(data=(2, 3, 4, 5))
        + neuron("sigmoid", "Sigmoid", "data")
        + neuron("tanh", "TanH", "data")
        + neuron("elu", "ELU", "data", "elu_param { alpha: 0.3 }")
        + neuron("abs", "AbsVal", "data")
        + neuron("power", "Power", "abs", "power_param { power: 1.5 scale: 0.5 shift: 0.1 }")
        + neuron("square", "Power", "data", "power_param { power: 2 scale: -1 shift: 0.5 }")
        + neuron("constant", "Power", "data", "power_param { power: 3 scale: 0 shift: 2 }")
        + neuron("exp", "Exp", "data", "exp_param { base: 2 scale: 0.5 shift: 1 }")
        + neuron("log", "Log", "exp", "log_param { base: 10 scale: 2 shift: 0.5 }")
        + neuron("ln", "Log", "exp")
        + neuron("bnll", "BNLL", "data")
        + neuron("threshold", "Threshold", "data", "threshold_param { threshold: 0.2 }")
        + neuron("clip", "Clip", "data", "clip_param { min: -0.5 max: 0.8 }")
        + neuron("clip_crossed", "Clip", "data", "clip_param { min: 0.5 max: -0.5 }")
        + neuron("swish", "Swish", "data", "swish_param { beta: 0.7 }")
        + neuron("swish1", "Swish", "data")
        + neuron("tanh_inplace", "TanH", "swish1", top="swish1"),
        {"Reciprocal", "Tanh", "Elu", "Abs", "Pow", "Expand", "Exp", "Log", "Softplus",
         "Greater", "Cast", "Min", "Max"}),
    "im2col": (
        inputs(data=(2, 3, 7, 6), seq=(2, 2, 9))
        + neuron("cols", "Im2col", "data", "convolution_param { kernel_size: 3 stride: 2 pad: 1 }")
        + neuron("rect", "Im2col", "data", "convolution_param { kernel_h: 2 kernel_w: 3 "
                 "dilation: 2 pad_w: 1 }")
        + neuron("cols1d", "Im2col", "seq", "convolution_param { kernel_size: 3 stride: 2 }"),
        {"Conv"}),
    "embed": (
        inputs(words=(2, 3))
        + neuron("embed", "Embed", "words",
                 f"embed_param {{ num_output: 4 input_dim: 6 {FILLED} }}")
        + neuron("embed_nobias", "Embed", "words",
                 f"embed_param {{ num_output: 2 input_dim: 6 bias_term: false {FILLED} }}"),
        {"Gather", "Cast"}),
    "lstm": (
        inputs(x=(3, 2, 2, 2), cont=(3, 2), x_static=(2, 5))
        + layer("lstm", "LSTM", ["x", "cont"], ["h"],
                f"recurrent_param {{ num_output: 3 {FILLED} }}")
        + neuron("h_tanh", "TanH", "h", top="h")
        + layer("lstm_static", "LSTM", ["x", "cont", "x_static"], ["hs"],
                f"recurrent_param {{ num_output: 2 {FILLED} }}"),
        {"Split", "Reciprocal", "Tanh", "MatMul", "Gather", "Concat"}),
    "lstm_expose_hidden": (
        inputs(x=(4, 2, 3), cont=(4, 2), h0=(1, 2, 3), c0=(1, 2, 3))
        + layer("lstm", "LSTM", ["x", "cont", "h0", "c0"], ["h", "hT", "cT"],
                f"recurrent_param {{ num_output: 3 expose_hidden: true {FILLED} }}"),
        {"Squeeze", "Unsqueeze"}),
    "rnn": (
        inputs(x=(3, 2, 4), cont=(3, 2), x_static=(2, 2, 2), h0=(1, 2, 3))
        + layer("rnn", "RNN", ["x", "cont"], ["o"], f"recurrent_param {{ num_output: 3 {FILLED} }}")
        + layer("rnn_all", "RNN", ["x", "cont", "x_static", "h0"], ["o_all", "hT"],
                f"recurrent_param {{ num_output: 3 expose_hidden: true {FILLED} }}"),
        {"Tanh", "MatMul"}),
    # LRCN's captioning shape: the batch stays on axis 1 through InnerProduct and Softmax
    "lrcn_like": (
        inputs(words=(4, 2), cont=(4, 2))
        + neuron("embed", "Embed", "words",
                 f"embed_param {{ num_output: 3 input_dim: 6 {FILLED} }}")
        + layer("lstm", "LSTM", ["embed", "cont"], ["lstm"],
                f"recurrent_param {{ num_output: 4 {FILLED} }}")
        + neuron("predict", "InnerProduct", "lstm",
                 f"inner_product_param {{ num_output: 5 axis: 2 {FILLED} }}")
        + neuron("prob", "Softmax", "predict", "softmax_param { axis: 2 }"),
        {"Gather", "Softmax"}),
    # what reads a recurrent T × N × … top at batch N = 1: Caffe's MVN (num T, channels N;
    # the channels were fixed at 1), a Reshape folding N in (exported as (−1, N·H)) and a
    # Reduction down to (T,) (its batch axis 1 lay past its rank: a traceback)
    "after_recurrent": (
        inputs(x=(2, 1, 3), cont=(2, 1))
        + layer("lstm", "LSTM", ["x", "cont"], ["h"],
                f"recurrent_param {{ num_output: 4 {FILLED} }}")
        + neuron("mvn", "MVN", "h")
        + neuron("flat", "Reshape", "h", "reshape_param { shape { dim: 0 dim: -1 } }")
        + neuron("per_t", "Reduction", "h", "reduction_param { axis: 1 }"),
        {"Shape", "Reshape", "ReduceSum"}),
    "lstm_unit": (
        inputs(c_prev=(1, 3, 2), gates=(1, 3, 8), cont=(1, 3))
        + layer("unit", "LSTMUnit", ["c_prev", "gates", "cont"], ["c", "h"]),
        {"Split"}),
    # blobs named like the values the exporter makes up for a layer ("<layer>/bias", a MAX
    # pool's "<layer>/lowest"), written after them: a ValueError traceback
    "blobs_named_like_internal_values": (
        inputs(x=(2, 3, 5, 5))
        + neuron("c", "Convolution", "x", f"convolution_param {{ num_output: 2 kernel_size: 3 "
                                          f"{FILLED} }}")
        + neuron("r", "ReLU", "c", top="c/bias")
        + neuron("p", "Pooling", "x", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
        + neuron("r2", "ReLU", "p", top="p/lowest"),
        {"Conv", "MaxPool"}),
    # a copy (Dropout) of a split blob as an output, beside an AVE pool's Pad of the same
    # blob: as Identity nodes, onnxruntime's optimiser lost 'b' ("onnxruntime cannot load")
    "copied_output_beside_a_padded_ave_pool": (
        inputs(x=(1, 2, 6, 5))
        + neuron("s", "Sigmoid", "x", top="b")
        + neuron("p", "Pooling", "b", "pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 }")
        + neuron("d", "Dropout", "b")
        + neuron("t", "TanH", "p"),
        {"Pad", "AveragePool", "Dropout"}),
    # MVN in place on a 2-d blob: its top is Caffe's 4-d (N, C, 1, 1), and the converter took
    # the bottom's rank from the blob, already 4-d (the ONNX checker refused the model)
    "mvn_in_place_on_a_2d_blob": (
        inputs(x=(2, 5))
        + neuron("ip", "InnerProduct", "x", f"inner_product_param {{ num_output: 4 {FILLED} }}")
        + neuron("mvn", "MVN", "ip", top="ip"),
        {"MatMul", "ReduceMean"}),
}


@pytest.mark.parametrize("name", NETS)
def test_export_matches_the_runtime(name, tmp_path):
    text, ops = NETS[name]
    net = Net(text, pb.TEST, seed=2)
    worst = to_onnx(net, tmp_path / "m.onnx")
    assert max(worst.values()) <= check.TOL_FP32
    model = onnx.load(tmp_path / "m.onnx")
    assert ops <= {node.op_type for node in model.graph.node}
    assert {o.name for o in model.graph.output} == set(net.outputs)


def test_a_sigmoid_below_minus_16_is_caffes_in_onnxruntime(tmp_path):
    """onnxruntime's Sigmoid gave 5.96e-8 at −16 (Caffe: 1.125e-7) and 0 from −18, so a Log
    above it was −inf (helper onnx40); Caffe's 1 / (1 + e^−x) keeps log σ(x) = x."""
    import onnxruntime
    text = inputs(data=(1, 8)) + neuron("s", "Sigmoid", "data") + neuron("logs", "Log", "s")
    net = Net(text, pb.TEST)
    to_onnx(net, tmp_path / "m.onnx")
    x = np.array([[-10, -16, -17, -18, -20, -22, -38, -61]], np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    logs, = session.run(["logs"], {"data": x})
    np.testing.assert_allclose(logs, net.forward(data=x)["logs"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(logs[0, 1:], x[0, 1:], rtol=1e-6)      # log σ(x) ≈ x there


def test_the_export_check_leaves_the_nets_carried_state(tmp_path):
    """The check runs the net from zero states at other batches; the caller's net then went
    on from the check's last state, of random inputs."""
    net = Net(NETS["after_recurrent"][0], pb.TEST, seed=2)
    x, cont = torch.randn(2, 1, 3, generator=torch.Generator().manual_seed(1)), torch.ones(2, 1)
    net.forward(x=x, cont=cont)
    twin = Net(NETS["after_recurrent"][0], pb.TEST, seed=2)
    twin.forward(x=x, cont=cont)
    to_onnx(net, tmp_path / "m.onnx")
    for each in (net, twin):
        each.forward(x=x, cont=cont)
    torch.testing.assert_close(net.blobs["h"].data, twin.blobs["h"].data, rtol=0, atol=0)


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_recurrent_blobs_have_the_batch_on_axis_1():
    """x (T × N × …), cont, the states and the outputs vary in N, never in the fixed T;
    x_static (N × …) in its axis 0."""
    net = Net(NETS["rnn"][0], pb.TEST, seed=2)
    model, _ = build_model(net)
    dims = {v.name: _dims(v) for v in [*model.graph.input, *model.graph.output]}
    assert dims == {"x": [3, "N", 4], "cont": [3, "N"], "x_static": ["N", 2, 2],
                    "h0": [1, "N", 3], "o": [3, "N", 3], "o_all": [3, "N", 3],
                    "hT": [1, "N", 3]}


def test_an_lstm_with_a_static_input_and_exposed_states_keeps_n_on_axis_1_of_its_tops(
        tmp_path):
    """x_static holds N on axis 0; the tops (h, h_T, c_T) all hold it on axis 1 (a bottom's
    axes given to the tops made c_T's axis 0, the static input's)."""
    net = Net(inputs(x=(4, 2, 3), cont=(4, 2), x_static=(2, 5), h0=(1, 2, 3), c0=(1, 2, 3))
              + layer("lstm", "LSTM", ["x", "cont", "x_static", "h0", "c0"], ["h", "hT", "cT"],
                      f"recurrent_param {{ num_output: 3 expose_hidden: true {FILLED} }}"),
              pb.TEST, seed=4)
    to_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    dims = {v.name: _dims(v) for v in [*model.graph.input, *model.graph.output]}
    assert dims == {"x": [4, "N", 3], "cont": [4, "N"], "x_static": ["N", 5],
                    "h0": [1, "N", 3], "c0": [1, "N", 3], "h": [4, "N", 3],
                    "hT": [1, "N", 3], "cT": [1, "N", 3]}


def test_clip_of_nan_exports_as_min():
    net = Net(inputs(data=(1, 3)) + neuron("clip", "Clip", "data",
                                           "clip_param { min: -0.5 max: 0.8 }"), pb.TEST)
    model, _ = build_model(net)
    x = np.array([[np.nan, 2.0, 0.25]], np.float32)
    for level in check.LEVELS.values():
        (got,) = check.session(model, level).run(None, {"data": x})
        np.testing.assert_array_equal(got, check.run_runtime(net, {"data": x})["clip"])
        assert got.tolist() == [[-0.5, 0.800000011920929, 0.25]]


def test_eltwise_sum_leaves_out_a_bottom_of_coeff_0_as_blas_axpy_does():
    """Caffe's SUM is axpy after axpy into a zeroed top, and axpy returns at once for a coeff of
    0: the reference build gives x where 0 · inf would give NaN (x + 0 · z)."""
    net = Net(inputs(x=(1, 4), z=(1, 4))
              + layer("e", "Eltwise", ["x", "z"], ["y"],
                      "eltwise_param { operation: SUM coeff: 1 coeff: 0 }")
              + layer("zero", "Eltwise", ["x", "z"], ["none"],
                      "eltwise_param { operation: SUM coeff: 0 coeff: 0 }"), pb.TEST)
    feeds = {"x": np.array([[1, 2, 3, 4]], np.float32),
             "z": np.array([[np.inf, np.nan, 5, -np.inf]], np.float32)}
    want = {"y": [[1, 2, 3, 4]], "none": [[0, 0, 0, 0]]}
    runtime = check.run_runtime(net, feeds)
    model, _ = build_model(net)
    for level in check.LEVELS.values():
        got = dict(zip(["y", "none"], check.session(model, level).run(["y", "none"], feeds)))
        assert {k: v.tolist() for k, v in got.items()} == want
    assert {k: runtime[k].tolist() for k in want} == want


def test_bnll_softplus_equals_caffes_formula_far_out():
    net = Net(inputs(data=(1, 401)) + neuron("bnll", "BNLL", "data"), pb.TEST)
    model, _ = build_model(net)
    x = np.linspace(-100, 100, 401, dtype=np.float32)[None]
    xs = x.astype(np.float64)
    caffe = np.where(xs > 0, xs + np.log1p(np.exp(-xs)), np.log1p(np.exp(np.minimum(xs, 0))))
    for level in check.LEVELS.values():
        got = check.session(model, level).run(None, {"data": x})[0]
        np.testing.assert_allclose(got, caffe, rtol=2e-7, atol=1e-30)
    # float16: a plain Softplus was infinite from x = 88.7 on, where Caffe gives x
    half, _ = build_model(net, fp16=True)
    x16 = np.linspace(-160, 160, 401, dtype=np.float16)[None]
    xs = x16.astype(np.float64)
    caffe = np.where(xs > 0, xs + np.log1p(np.exp(-xs)), np.log1p(np.exp(np.minimum(xs, 0))))
    for level in check.LEVELS.values():
        got = check.session(half, level).run(None, {"data": x16})[0]
        np.testing.assert_allclose(got.astype(np.float64), caffe, rtol=1e-3, atol=1e-3)


def test_parameter_exports_as_its_blob(tmp_path):
    text = (inputs(data=(2, 3))
            + layer("p", "Parameter", [], ["p"], "parameter_param { shape { dim: 2 dim: 3 } }")
            + layer("sum", "Eltwise", ["data", "p"], ["sum"]))
    net = Net(text, pb.TEST)
    net.params["p"][0].data.copy_(net.params["p"][0].data.new_tensor([[1, 2, 3], [4, 5, 6]]))
    assert max(to_onnx(net, tmp_path / "m.onnx", static_batch=2).values()) == 0.0


@pytest.mark.parametrize("readers", [1, 2])
def test_loss_layers_refuse_to_export_naming_the_prototxts_blob(readers):
    """With a second reader, the loss reads Caffe's inserted Split top; the message names the
    blob the prototxt gives it."""
    text = (inputs(data=(2, 3), label=(2, 3))
            + layer("loss", "SigmoidCrossEntropyLoss", ["data", "label"], ["loss"])
            + (layer("out", "Sigmoid", ["data"], ["out"]) if readers == 2 else ""))
    with pytest.raises(AllconvError, match="layer 'loss' \\(SigmoidCrossEntropyLoss\\): a loss "
                                           "layer computes a training loss, not an inference "
                                           "output, and does not export to ONNX; export the "
                                           "blob it reads instead \\(--outputs data\\)$"):
        build_model(Net(text, pb.TEST), outputs=["loss"])


def test_an_accuracy_layer_refuses_to_export_naming_the_blob_it_reads():
    """Accuracy got only the list of exportable types, where a loss names the blob to export
    instead (helper fuzz45)."""
    text = (inputs(data=(2, 3), label=(2,))
            + layer("acc", "Accuracy", ["data", "label"], ["acc"]))
    with pytest.raises(AllconvError, match="layer 'acc' \\(Accuracy\\): an Accuracy layer "
                                           "scores predictions against labels, not an "
                                           "inference output, and does not export to ONNX; "
                                           "export the blob it reads instead \\(--outputs "
                                           "data\\)$"):
        build_model(Net(text, pb.TEST), outputs=["acc"])


def test_a_loss_below_a_split_of_the_users_names_the_splits_top():
    """An inserted Split's top is named by the blob it copies (its own name is not the
    prototxt's); a Split the prototxt writes has tops of its own names, and the hint names
    the one the loss reads."""
    base = (inputs(data=(2, 3), label=(2,))
            + layer("s", "Split", ["data"], ["d1", "d2"])
            + layer("acc", "Accuracy", ["d1", "label"], ["acc"]))
    with pytest.raises(AllconvError, match="\\(--outputs d1\\)$"):
        build_model(Net(base, pb.TEST), outputs=["acc"])
    inserted = (inputs(data=(2, 3), label=(2,))
                + layer("acc", "Accuracy", ["data", "label"], ["acc"])
                + layer("out", "Sigmoid", ["data"], ["out"]))
    with pytest.raises(AllconvError, match="\\(--outputs data\\)$"):
        build_model(Net(inserted, pb.TEST), outputs=["acc"])


def test_a_loss_is_refused_before_a_batch_fixed_below_it_is_said(tmp_path):
    """A learned bias over the batch axis fixes the batch (a warning), a loss above it is
    refused: the refusal alone, one line (helper onnx40 saw the warning first)."""
    import warnings
    text = (inputs(data=(2, 3), label=(2, 3))
            + layer("b", "Bias", ["data"], ["b"], "bias_param { axis: 0 num_axes: 1 }")
            + layer("loss", "SigmoidCrossEntropyLoss", ["b", "label"], ["loss"]))
    with warnings.catch_warnings(record=True) as said, pytest.raises(AllconvError,
                                                                     match="a loss layer"):
        warnings.simplefilter("always")
        to_onnx(Net(text, pb.TEST), tmp_path / "m.onnx", outputs=["loss"])
    assert [str(w.message) for w in said] == []


# export/walker.py:55 dropping `axes.update((top, axes.get(layer.bottoms[0], 0)) ...)` survived
#: the batch axis of a plain layer's tops follows its first bottom. No test has a layer
# after a recurrent one, whose output (T x N x ...) must keep N on axis 1 in the ONNX output,
# not get the dynamic batch on its fixed time axis T.
def test_a_layer_after_a_recurrent_one_keeps_the_batch_on_axis_1():
    from runtime import Net
    net = Net(NETS["rnn"][0] + 'layer { name: "r" type: "ReLU" bottom: "o" top: "r" }',
              pb.TEST, seed=2)
    model, _ = build_model(net)
    dims = {v.name: _dims(v) for v in model.graph.output}
    assert dims["r"] == [3, "N", 3]
