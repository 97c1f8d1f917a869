"""runtime.proto (our caffe.proto), runtime.prototxt and runtime.caffemodel."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf.descriptor import FieldDescriptor as FD

from runtime import caffemodel, prototxt
from runtime.errors import AllconvError
from runtime.layers import NoFillerWarning
from runtime.net import Net
from runtime.proto import DESCRIPTOR_PATH, PROTO_PATH, pb

ROOT = Path(__file__).resolve().parent.parent


def field(message_cls, name):
    return message_cls.DESCRIPTOR.fields_by_name[name]


# --------------------------------------------------------------------- schema

# (message, field, number) as in BVLC Caffe master's caffe.proto.
FIELD_NUMBERS = [
    ("BlobShape", "dim", 1),
    ("BlobProto", "shape", 7),
    ("BlobProto", "data", 5),
    ("BlobProto", "diff", 6),
    ("BlobProto", "double_data", 8),
    ("BlobProto", "double_diff", 9),
    ("BlobProto", "num", 1),
    ("BlobProto", "width", 4),
    ("Datum", "data", 4),
    ("Datum", "encoded", 7),
    ("FillerParameter", "variance_norm", 8),
    ("NetParameter", "name", 1),
    ("NetParameter", "input", 3),
    ("NetParameter", "input_dim", 4),
    ("NetParameter", "input_shape", 8),
    ("NetParameter", "state", 6),
    ("NetParameter", "layer", 100),
    ("NetParameter", "layers", 2),
    ("SolverParameter", "net", 24),
    ("SolverParameter", "train_net", 1),
    ("SolverParameter", "test_iter", 3),
    ("SolverParameter", "test_interval", 4),
    ("SolverParameter", "base_lr", 5),
    ("SolverParameter", "display", 6),
    ("SolverParameter", "max_iter", 7),
    ("SolverParameter", "lr_policy", 8),
    ("SolverParameter", "gamma", 9),
    ("SolverParameter", "power", 10),
    ("SolverParameter", "momentum", 11),
    ("SolverParameter", "weight_decay", 12),
    ("SolverParameter", "stepsize", 13),
    ("SolverParameter", "snapshot", 14),
    ("SolverParameter", "snapshot_prefix", 15),
    ("SolverParameter", "solver_mode", 17),
    ("SolverParameter", "random_seed", 20),
    ("SolverParameter", "regularization_type", 29),
    ("SolverParameter", "solver_type", 30),
    ("SolverParameter", "test_initialization", 32),
    ("SolverParameter", "average_loss", 33),
    ("SolverParameter", "stepvalue", 34),
    ("SolverParameter", "clip_gradients", 35),
    ("SolverParameter", "iter_size", 36),
    ("SolverParameter", "snapshot_format", 37),
    ("SolverParameter", "type", 40),
    ("SolverParameter", "layer_wise_reduce", 41),
    ("SolverParameter", "weights", 42),
    ("SolverState", "iter", 1),
    ("SolverState", "history", 3),
    ("SolverState", "current_step", 4),
    ("NetState", "phase", 1),
    ("NetStateRule", "not_stage", 5),
    ("ParamSpec", "name", 1),
    ("ParamSpec", "share_mode", 2),
    ("ParamSpec", "lr_mult", 3),
    ("ParamSpec", "decay_mult", 4),
    ("LayerParameter", "name", 1),
    ("LayerParameter", "type", 2),
    ("LayerParameter", "bottom", 3),
    ("LayerParameter", "top", 4),
    ("LayerParameter", "loss_weight", 5),
    ("LayerParameter", "param", 6),
    ("LayerParameter", "blobs", 7),
    ("LayerParameter", "include", 8),
    ("LayerParameter", "exclude", 9),
    ("LayerParameter", "phase", 10),
    ("LayerParameter", "propagate_down", 11),
    ("LayerParameter", "transform_param", 100),
    ("LayerParameter", "loss_param", 101),
    ("LayerParameter", "accuracy_param", 102),
    ("LayerParameter", "concat_param", 104),
    ("LayerParameter", "convolution_param", 106),
    ("LayerParameter", "data_param", 107),
    ("LayerParameter", "dropout_param", 108),
    ("LayerParameter", "dummy_data_param", 109),
    ("LayerParameter", "eltwise_param", 110),
    ("LayerParameter", "hdf5_data_param", 112),
    ("LayerParameter", "image_data_param", 115),
    ("LayerParameter", "inner_product_param", 117),
    ("LayerParameter", "lrn_param", 118),
    ("LayerParameter", "memory_data_param", 119),
    ("LayerParameter", "pooling_param", 121),
    ("LayerParameter", "power_param", 122),
    ("LayerParameter", "relu_param", 123),
    ("LayerParameter", "softmax_param", 125),
    ("LayerParameter", "reshape_param", 133),
    ("LayerParameter", "flatten_param", 135),
    ("LayerParameter", "batch_norm_param", 139),
    ("LayerParameter", "bias_param", 141),
    ("LayerParameter", "scale_param", 142),
    ("LayerParameter", "input_param", 143),
    ("LayerParameter", "swish_param", 147),
    ("LayerParameter", "clip_param", 148),
    ("TransformationParameter", "mean_value", 5),
    ("LossParameter", "normalization", 3),
    ("LossParameter", "normalize", 2),
    ("ConvolutionParameter", "kernel_size", 4),
    ("ConvolutionParameter", "stride", 6),
    ("ConvolutionParameter", "dilation", 18),
    ("ConvolutionParameter", "weight_filler", 7),
    ("ConvolutionParameter", "engine", 15),
    ("PoolingParameter", "pool", 1),
    ("PoolingParameter", "kernel_size", 2),
    ("PoolingParameter", "stride", 3),
    ("PoolingParameter", "pad", 4),
    ("PoolingParameter", "global_pooling", 12),
    ("PoolingParameter", "round_mode", 13),
    ("DataParameter", "batch_size", 4),
    ("DataParameter", "backend", 8),
    ("InnerProductParameter", "axis", 5),
    ("ConcatParameter", "axis", 2),
    ("ConcatParameter", "concat_dim", 1),
    ("V1LayerParameter", "bottom", 2),
    ("V1LayerParameter", "top", 3),
    ("V1LayerParameter", "name", 4),
    ("V1LayerParameter", "type", 5),
    ("V1LayerParameter", "blobs", 6),
    ("V1LayerParameter", "blobs_lr", 7),
    ("V1LayerParameter", "weight_decay", 8),
    ("V1LayerParameter", "include", 32),
    ("V1LayerParameter", "exclude", 33),
    ("V1LayerParameter", "param", 1001),
    ("V1LayerParameter", "convolution_param", 10),
    ("V1LayerParameter", "pooling_param", 19),
    ("V1LayerParameter", "inner_product_param", 17),
    ("V1LayerParameter", "transform_param", 36),
    ("V1LayerParameter", "loss_param", 42),
]


@pytest.mark.parametrize("message,name,number", FIELD_NUMBERS)
def test_field_numbers(message, name, number):
    assert field(getattr(pb, message), name).number == number


@pytest.mark.parametrize(
    "message,name,value",
    [
        ("FillerParameter", "type", "constant"),
        ("FillerParameter", "std", 1.0),
        ("FillerParameter", "max", 1.0),
        ("FillerParameter", "sparse", -1),
        ("ConvolutionParameter", "bias_term", True),
        ("ConvolutionParameter", "group", 1),
        ("InnerProductParameter", "bias_term", True),
        ("PoolingParameter", "stride", 1),
        ("DropoutParameter", "dropout_ratio", 0.5),
        ("ParamSpec", "lr_mult", 1.0),
        ("ParamSpec", "decay_mult", 1.0),
        ("SolverParameter", "test_initialization", True),
        ("SolverParameter", "iter_size", 1),
        ("SolverParameter", "average_loss", 1),
        ("SolverParameter", "random_seed", -1),
        ("SolverParameter", "regularization_type", "L2"),
        ("SolverParameter", "type", "SGD"),
        ("SolverParameter", "clip_gradients", -1.0),
        ("SolverParameter", "snapshot_after_train", True),
        ("LRNParameter", "local_size", 5),
        ("LRNParameter", "beta", 0.75),
        ("AccuracyParameter", "top_k", 1),
        ("ConcatParameter", "axis", 1),
        ("FlattenParameter", "end_axis", -1),
        ("DataParameter", "prefetch", 4),
        ("SolverState", "current_step", 0),
    ],
)
def test_defaults(message, name, value):
    assert getattr(getattr(pb, message)(), name) == pytest.approx(value)


def test_enum_defaults_and_values():
    assert pb.PoolingParameter().pool == pb.PoolingParameter.MAX == 0
    assert pb.PoolingParameter.AVE == 1 and pb.PoolingParameter.STOCHASTIC == 2
    assert pb.PoolingParameter().round_mode == pb.PoolingParameter.CEIL
    assert pb.LossParameter().normalization == pb.LossParameter.VALID == 1
    assert pb.SolverParameter().solver_mode == pb.SolverParameter.GPU == 1
    assert pb.SolverParameter().snapshot_format == pb.SolverParameter.BINARYPROTO
    assert pb.SolverParameter.NESTEROV == 1
    assert pb.NetState().phase == pb.TEST
    assert (pb.TRAIN, pb.TEST) == (0, 1)
    assert pb.Phase.Name(0) == "TRAIN"
    assert pb.ParamSpec.STRICT == 0 and pb.ParamSpec.PERMISSIVE == 1
    assert pb.EltwiseParameter().operation == pb.EltwiseParameter.SUM
    assert pb.DataParameter().backend == pb.DataParameter.LEVELDB
    assert pb.FillerParameter().variance_norm == pb.FillerParameter.FAN_IN
    assert pb.V1LayerParameter.CONVOLUTION == 4
    assert pb.V1LayerParameter.SOFTMAX_LOSS == 21
    assert pb.V1LayerParameter.DECONVOLUTION == 39


def _field_proto(message, name):
    # FieldDescriptor.label is gone in newer protobuf; read the raw descriptor.
    committed = descriptor_pb2.FileDescriptorSet()
    committed.ParseFromString(DESCRIPTOR_PATH.read_bytes())
    (msg,) = [m for m in committed.file[0].message_type if m.name == message]
    (fld,) = [f for f in msg.field if f.name == name]
    return fld


def test_types_and_labels():
    FP = descriptor_pb2.FieldDescriptorProto
    assert field(pb.BlobShape, "dim").type == FD.TYPE_INT64
    assert field(pb.BlobShape, "dim").GetOptions().packed
    assert field(pb.BlobProto, "data").type == FD.TYPE_FLOAT
    assert field(pb.BlobProto, "data").GetOptions().packed
    assert field(pb.BlobProto, "double_data").type == FD.TYPE_DOUBLE
    assert field(pb.BlobProto, "num").type == FD.TYPE_INT32
    assert field(pb.SolverParameter, "random_seed").type == FD.TYPE_INT64
    assert field(pb.SolverParameter, "max_iter").type == FD.TYPE_INT32
    assert field(pb.ConvolutionParameter, "num_output").type == FD.TYPE_UINT32
    assert _field_proto("SolverParameter", "stepvalue").label == FP.LABEL_REPEATED
    assert _field_proto("ConvolutionParameter", "kernel_size").label == FP.LABEL_REPEATED
    assert _field_proto("PoolingParameter", "kernel_size").label == FP.LABEL_OPTIONAL
    assert _field_proto("ClipParameter", "min").label == FP.LABEL_REQUIRED
    assert _field_proto("NetParameter", "layers").type_name == ".caffe.V1LayerParameter"
    assert pb.DESCRIPTOR.package == "caffe"
    file_proto = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_PATH.read_bytes()).file[0]
    assert file_proto.syntax in ("", "proto2") and not file_proto.dependency


def test_no_duplicate_field_numbers():
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        numbers = [f.number for f in message.fields]
        assert len(numbers) == len(set(numbers)), message.name


def test_private_pool_does_not_touch_default_pool():
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("caffe.NetParameter")


def test_pb_submodule_import():
    from runtime.proto.pb import NetParameter

    assert NetParameter is pb.NetParameter


def _compile(out: Path) -> descriptor_pb2.FileDescriptorSet:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_PATH.parent),
         f"--descriptor_set_out={out}", PROTO_PATH.name],
        check=True, capture_output=True,
    )
    result = descriptor_pb2.FileDescriptorSet()
    result.ParseFromString(out.read_bytes())
    return result


def test_committed_descriptor_matches_proto(tmp_path):
    fresh = _compile(tmp_path / "fresh.bin")
    committed = descriptor_pb2.FileDescriptorSet()
    committed.ParseFromString(DESCRIPTOR_PATH.read_bytes())
    assert len(committed.file) == 1
    assert committed.file[0] == fresh.file[0], (
        "runtime/proto/caffe_descriptor.bin is stale; run tools/compile_proto.sh"
    )


def test_compile_script(tmp_path):
    pytest.importorskip("grpc_tools")
    out = tmp_path / "d.bin"
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", str(ROOT / "tools" / "compile_proto.sh"), str(out)],
                   check=True, capture_output=True, env=env)
    made = descriptor_pb2.FileDescriptorSet()
    made.ParseFromString(out.read_bytes())
    assert made.file[0].name == "caffe.proto"
    assert not list(tmp_path.glob("d.bin.*")), "temp file left behind"


# --------------------------------------------------------------------- prototxt

NET_TEXT = """\
name: "tiny"
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  param { lr_mult: 2 decay_mult: 0 }
  convolution_param {
    num_output: 4 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.05 }
    bias_filler { type: "constant" }
  }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 }
  include { phase: TEST }
}
layer { name: "drop" type: "Dropout" bottom: "pool1" top: "pool1" dropout_param { dropout_ratio: 0.2 } }
"""


def test_parse_net_fields():
    net = prototxt.parse_net(NET_TEXT)
    assert net.name == "tiny"
    assert [l.name for l in net.layer] == ["data", "conv1", "relu1", "pool1", "drop"]
    conv = net.layer[1]
    assert list(conv.convolution_param.kernel_size) == [3]
    assert conv.param[1].lr_mult == 2 and conv.param[1].decay_mult == 0
    assert conv.convolution_param.weight_filler.std == pytest.approx(0.05)
    assert net.layer[3].pooling_param.pool == pb.PoolingParameter.AVE
    assert net.layer[3].include[0].phase == pb.TEST
    assert net.layer[4].dropout_param.dropout_ratio == pytest.approx(0.2)


def test_text_round_trip():
    net = prototxt.parse_net(NET_TEXT)
    text = prototxt.to_text(net)
    again = prototxt.parse_net(text)
    assert again == net
    assert prototxt.to_text(again) == text


def test_solver_round_trip_and_upgrade(tmp_path):
    text = (
        'net: "train_val.prototxt"\ntest_iter: 100\ntest_interval: 1000\n'
        'base_lr: 0.25\nlr_policy: "multistep"\ngamma: 0.1\nstepvalue: 200\n'
        "stepvalue: 250\nmomentum: 0.9\nweight_decay: 0.001\nmax_iter: 350\n"
        'snapshot_prefix: "snap/x"\nsolver_mode: CPU\nrandom_seed: 7\n'
        "solver_type: NESTEROV\n"
    )
    solver = prototxt.parse_solver(text, "s.prototxt")
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    assert list(solver.stepvalue) == [200, 250]
    assert solver.solver_mode == pb.SolverParameter.CPU
    path = tmp_path / "solver.prototxt"
    prototxt.write_text(solver, path)
    assert prototxt.read_solver(path) == solver
    assert prototxt.read_solver(str(path)) == solver

    with pytest.raises(AllconvError, match="s.prototxt: .*solver_type.*type"):
        prototxt.parse_solver('type: "SGD"\nsolver_type: SGD\n', "s.prototxt")


def test_syntax_error_has_file_line_column():
    bad = 'name: "x"\nlayer {\n  name: "a"\n  nonsense: 3\n}\n'
    with pytest.raises(AllconvError) as info:
        prototxt.parse_net(bad, "nets/bad.prototxt")
    message = str(info.value)
    assert message.startswith("nets/bad.prototxt:4:11: ")     # C++'s: after the name it read
    assert "nonsense" in message
    assert "\n" not in message


def test_unknown_field_or_enum_value_lists_the_valid_ones():
    with pytest.raises(AllconvError, match=r'^n.prototxt:1:\d+: Message type "caffe.Pooling'
                                           r'Parameter" has no field named "kernel_sizes"\. '
                                           r"\(fields: pool, pad, .*kernel_size, .*\)$"):
        prototxt.parse_net('layer { pooling_param { kernel_sizes: 2 } }', "n.prototxt")
    # in C++'s words (the reference build: 'Unknown enumeration value of "MAXX" for field
    # "pool".', at 1:62 for the first file, 2:1 for the second)
    with pytest.raises(AllconvError, match=r'^n.prototxt:1:62: Unknown enumeration value of '
                                           r'"MAXX" for field "pool"\. '
                                           r"\(valid: MAX, AVE, STOCHASTIC\)$"):
        prototxt.parse_net('layer { name: "p" type: "Pooling" pooling_param { pool: MAXX } }\n',
                           "n.prototxt")
    with pytest.raises(AllconvError, match=r'^s.prototxt:2:1: Unknown enumeration value of "7" '
                                           r'for field "solver_mode"\. \(valid: CPU, GPU\)$'):
        prototxt.parse_solver('solver_mode: 7\n', "s.prototxt")


# Where protobuf's C++ tokenizer (Caffe's) and Python's part: positions as real Caffe gave them
@pytest.mark.parametrize("text,where,message", [
    ("layer { power_param { shift: +1.5 } }", "1:30", "Expected double, got: +"),
    ("layer { power_param { shift: +inf } }", "1:30", "Expected double, got: +"),
    ("layer { power_param { shift: 1_5 } }", "1:31", "Need space between number and identifier"),
    ("layer { pooling_param { kernel_size: 0b10 } }", "1:39",
     "Need space between number and identifier"),
    ("layer { pooling_param { kernel_size: 0o2 } }", "1:39",
     "Need space between number and identifier"),
    ('layer { name: "o\\zut" }', "1:18", "Invalid escape sequence in string literal"),
    ('# a\0b\nname: "x"', "1:4", "Invalid control characters encountered in text"),
    # hex and octal integers: a float field takes neither (Python's float() takes 010)
    ("layer { power_param { shift: 0x10 } }", "1:30", "Expect a decimal number, got: 0x10"),
    ("layer { power_param { shift: -010 } }", "1:31", "Expect a decimal number, got: 010"),
    # an unsigned field refuses the first sign; a float, the second
    ("layer { pooling_param { kernel_size: --3 } }", "1:38", "Expected integer, got: -"),
    ("layer { power_param { shift: --3 } }", "1:31", "Expected double, got: -"),
    # a column after a string with a \? escape is the text's own
    ('name: "a\\?b" bogus: 1', "1:19", 'Message type "caffe.NetParameter" has no field'),
])
def test_text_that_caffes_parser_refuses_is_refused_at_its_position(text, where, message):
    with pytest.raises(AllconvError, match=rf"^n.prototxt:{where}: {re.escape(message)}"):
        prototxt.parse_net(text, "n.prototxt")


def test_text_that_caffes_parser_takes_is_taken(tmp_path):
    """A sign apart from its number (two tokens in C++), escapes C++ knows, hex and octal where
    C++ takes them, and a comment in Latin-1; bytes that are not UTF-8 inside a string are
    refused with their position."""
    net = prototxt.parse_net('layer { name: "\\x6f\\165t\\?" power_param { shift: - 1.5 '
                             'scale: -\t2 } }', "n.prototxt")
    assert net.layer[0].name == "out?"
    assert (net.layer[0].power_param.shift, net.layer[0].power_param.scale) == (-1.5, -2)
    # a bool and an int as hex or octal (Python's parser takes these only for an int)
    for given, value in (("0x1", True), ("01", True), ("0x0", False)):
        net = prototxt.parse_net(f"force_backward: {given} layer {{ pooling_param {{ "
                                 "kernel_size: 010 stride: 0x3 } }", "n.prototxt")
        assert net.force_backward is value
        assert (net.layer[0].pooling_param.kernel_size, net.layer[0].pooling_param.stride) == (8, 3)
    path = tmp_path / "latin1.prototxt"
    path.write_bytes(b'# Gr\xf6\xdfe\nname: "x"\n')
    assert prototxt.read_net(path).name == "x"
    path.write_bytes(b'name: "sy\xffn"\n')
    with pytest.raises(AllconvError, match=rf"^{path}:1:10: a byte of this string is not UTF-8 text"):
        prototxt.read_net(path)
    path.write_bytes(b"\x08\x01\xff\xfe")
    with pytest.raises(AllconvError, match=rf"^{path}:1:1: Invalid control characters "
                                           r"encountered in text \(not a text prototxt\?\)"):
        prototxt.read_net(path)
    path.write_bytes(b"name \xff\xfe")
    with pytest.raises(AllconvError, match=rf"^{path}:1:6: Interpreting non ascii codepoint 255 "
                                           r"\(not UTF-8: not a text prototxt\?\)"):
        prototxt.read_net(path)
    # escapes that make UTF-8 text together are that text, as pycaffe reads the name
    assert prototxt.parse_net('name: "caf\\303\\251"').name == "café"
    with pytest.raises(AllconvError, match=r"1:11: the escape \\303 is not UTF-8 text"):
        prototxt.parse_net('name: "caf\\303x"')
    # a surrogate pair of \u escapes is one code point in C++; the column after it holds
    assert prototxt.parse_net('name: "\\ud83d\\ude00"').name == "\U0001F600"
    # a raw byte that is not UTF-8 stays refused, beside escapes too
    with pytest.raises(AllconvError, match="1:12: a byte of this string that is not UTF-8 on "
                                           "its own, written raw beside escaped bytes"):
        prototxt.parse_net(b'name: "\\303\xa9x"'.decode("utf-8", "surrogateescape"))
    with pytest.raises(AllconvError, match=r"^n.prototxt:1:23: .*has no field named \"x\""):
        prototxt.parse_net('name: "\\ud83d\\ude00" x: 1', "n.prototxt")


def test_a_cut_short_caffemodel_as_a_prototxt_is_named_binary(tmp_path):
    """The first bytes of a .caffemodel given as -model got the text parser's "has no field
    named ..." (a whole one is named a .caffemodel)."""
    path = tmp_path / "w.caffemodel"
    caffemodel.write_weights(path, [("fc", "InnerProduct", [np.ones((50, 40))])], "net")
    cut = tmp_path / "cut.prototxt"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(AllconvError, match=re.escape(f"{cut}: a binary file, perhaps a "
                                                     ".caffemodel or .solverstate cut short, "
                                                     "not a text NetParameter prototxt")):
        prototxt.read_net(cut)


def test_string_escapes_and_bytes_read_as_caffes_parser_reads_them():
    """Held-out mutations against real Caffe: a raw NUL ends the string there (it was taken);
    an octal escape past \\377 wraps to a byte (Python's codec message before)."""
    with pytest.raises(AllconvError, match=r"^n.prototxt:1:9: Unexpected end of string\.$"):
        prototxt.parse_net('name: "a\0b"', "n.prototxt")
    assert prototxt.parse_net('name: "\\400" force_backward: true').name == "\0"
    with pytest.raises(AllconvError, match="the escape \\\\U00110000 is past U\\+10FFFF"):
        prototxt.parse_net('name: "\\U00110000"')
    with pytest.raises(AllconvError, match="written raw beside escaped bytes"):
        prototxt.parse_net(b'name: "\\303\xa9"'.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("blank, column, byte", [("\u00a0", 1, 194), ("\u3000", 8, 227),
                                                 ("\u2028", 1, 226)])
def test_a_blank_outside_ascii_is_refused_as_caffe_refuses_it(blank, column, byte):
    """C++'s tokenizer reads ASCII only: a no-break or ideographic space between tokens is
    "Interpreting non ascii codepoint" (Python's parser took it for a blank)."""
    text = 'name: "r"\n' + ("layer {" + blank if column > 1 else blank + "layer {") + " }"
    with pytest.raises(AllconvError, match=rf"^n.prototxt:2:{column}: Interpreting non ascii "
                                           rf"codepoint {byte}\.$"):
        prototxt.parse_net(text, "n.prototxt")


TEXT_CASES = json.loads((Path(__file__).parent / "fixtures" / "text_format_cases.json")
                        .read_text())
# Real Caffe takes a string that is not UTF-8 (a raw byte, or an escape making one); the names
# it makes cannot be read by pycaffe, and allconv refuses them with their position; and a \U
# escape past U+10FFFF, which Caffe keeps as its characters, allconv refuses too.
NOT_UTF8 = {"string15", "string19", "string23", "string25", "around12"}
PAST_UNICODE = {"string20"}


@pytest.mark.parametrize("case", TEXT_CASES, ids=[c["name"] for c in TEXT_CASES])
def test_text_is_read_as_real_caffe_read_it(tmp_path, case):
    """tools/caffe_reference/make_text_cases.py: each net real Caffe read, with one token
    changed: refused at Caffe's line and column in Caffe's words, parsed but refused by the
    net, or taken with the same layer parameters."""
    path = tmp_path / "n.prototxt"
    path.write_bytes(case["text"].encode("latin-1"))
    caffe = case["caffe"]
    if "error" in caffe or case["name"] in NOT_UTF8 | PAST_UNICODE:
        line, column, words = caffe.get("error", (None, None, None))
        # Caffe's words; allconv's may end in a hint in brackets for the full stop
        refusal = "not UTF-8" if case["name"] in NOT_UTF8 else r"past U\+10FFFF"
        where = (rf"{line}:{column}: {re.escape(words.removesuffix('.'))}" if line else
                 rf"\d+:\d+: .*{refusal}")
        with pytest.raises(AllconvError, match=rf"^{re.escape(str(path))}:{where}"):
            prototxt.read_net(path)
        return
    if "refused" in caffe:
        prototxt.read_net(path)
        with pytest.raises(AllconvError), warnings.catch_warnings():
            warnings.simplefilter("ignore", NoFillerWarning)
            Net(str(path), pb.TEST)
        return
    layers = {layer.name: layer for layer in prototxt.read_net(path).layer}
    for saved in caffe["layers"]:
        expected = pb.LayerParameter.FromString(base64.b64decode(saved))
        ours = layers[expected.name]
        assert ours.SerializeToString(deterministic=True) == \
            expected.SerializeToString(deterministic=True), f"{ours} != {expected}"


HEAD = 'name: "n"\nlayer { name: "a" '


@pytest.mark.parametrize("text, error", [      # real Caffe's, by a new user's check
    ('name: "n"\nlayer { name: "a"\n', '3:1: Expected identifier, got: '),
    ('name: "n" }', '1:11: Expected identifier, got: }'),
    ('name "n"', '1:6: Expected ":", found ""n"".'),
    # the reference build's, by the mutation round (helper mutants38): a number's lexical
    # error where a field name belongs, which C++'s tokenizer meets first
    (HEAD + "08 }\n", "2:20: Numbers starting with leading zero must be in octal."),
    (HEAD + "0x }\n", '2:21: "0x" must be followed by hex digits.'),
    # a string after a value, where a name belongs; DEL; a ']' given to a bool, at the ']'
    (HEAD + 'type: "Power" power_param { shift: 1 "s" } }\n',
     '2:56: Expected identifier, got: "s"'),
    (HEAD + "\x7f }\n", "2:19: Expected identifier, got: \x7f"),
    (HEAD + 'type: "Convolution" convolution_param { num_output: 1 bias_term: ] } }\n',
     "2:84: Expected identifier, got: ]"),
    (HEAD + 'type: "Input" top: "x" input_param { shape { dim: [+1] } } }\n',
     "2:70: Expected integer, got: +"),
])
def test_syntax_errors_in_caffes_words(text, error):
    with pytest.raises(AllconvError, match=rf"^n.prototxt:{re.escape(error)}$"):
        prototxt.parse_net(text, "n.prototxt")


def test_an_error_python_places_on_trailing_blanks_is_at_the_end_as_in_cpp():
    from runtime.text_tokens import caffe_position
    assert caffe_position('a: 1\n  ', 2, 1, 'Expected "}".') == (2, 3)
    assert caffe_position("a: 1 }", 1, 6, "Expected identifier or number, got }.") == (1, 6)


def test_syntax_error_unclosed_brace(tmp_path):
    path = tmp_path / "open.prototxt"
    path.write_text('layer {\n  name: "a"\n')
    with pytest.raises(AllconvError, match=rf"^{path}:\d+:\d+: "):
        prototxt.read_net(path)


def test_upper_case_type_in_v2_layer_gets_v1_hint():
    with pytest.raises(AllconvError) as info:
        prototxt.parse_net('layer {\n  name: "c"\n  type: CONVOLUTION\n}\n', "old.prototxt")
    message = str(info.value)
    assert message.startswith("old.prototxt:3:")
    assert "V1" in message and "upgrade_net_proto_text" in message


def test_v0_net_is_refused_with_hint():
    with pytest.raises(AllconvError, match="V0.*upgrade_net_proto_text"):
        prototxt.parse_net('layers { layer { name: "conv1" type: "conv" } }')


V1_TEXT = """\
name: "CaffeNetish"
input: "data"
input_dim: 10
input_dim: 3
input_dim: 227
input_dim: 227
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  weight_decay: 1
  weight_decay: 0
  convolution_param { num_output: 96 kernel_size: 11 stride: 4 }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers {
  name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 }
}
layers {
  name: "norm1" type: LRN bottom: "pool1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }
}
layers {
  name: "fc8" type: INNER_PRODUCT bottom: "norm1" top: "fc8"
  param: "shared_w"
  blobs_lr: 1 blobs_lr: 2
  inner_product_param { num_output: 1000 }
}
layers { name: "drop" type: DROPOUT bottom: "fc8" top: "fc8" dropout_param { dropout_ratio: 0.5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc8" top: "prob" }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc8" bottom: "label" top: "loss"
         include { phase: TRAIN } }
layers { name: "acc" type: ACCURACY bottom: "prob" bottom: "label" top: "acc" }
"""


def test_v1_net_is_upgraded():
    net = prototxt.parse_net(V1_TEXT, "deploy.prototxt")
    assert len(net.layers) == 0 and len(net.input) == 0 and len(net.input_dim) == 0
    assert [l.type for l in net.layer] == [
        "Input", "Convolution", "ReLU", "Pooling", "LRN", "InnerProduct",
        "Dropout", "Softmax", "SoftmaxWithLoss", "Accuracy",
    ]
    first = net.layer[0]
    assert first.name == "input" and list(first.top) == ["data"]
    assert list(first.input_param.shape[0].dim) == [10, 3, 227, 227]
    conv = net.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert conv.convolution_param.num_output == 96
    assert list(conv.convolution_param.kernel_size) == [11]
    fc = net.layer[5]
    assert fc.param[0].name == "shared_w" and fc.param[0].lr_mult == 1
    assert fc.param[1].lr_mult == 2 and not fc.param[1].HasField("decay_mult")
    assert net.layer[3].pooling_param.kernel_size == 3
    assert net.layer[4].lrn_param.alpha == pytest.approx(1e-4)
    assert net.layer[8].include[0].phase == pb.TRAIN
    # The upgraded net prints as V2 text and reads back unchanged.
    assert prototxt.parse_net(prototxt.to_text(net)) == net


def test_v1_data_layer_preprocessing_moves_to_transform_param():
    net = prototxt.parse_net(
        'layers { name: "d" type: DATA top: "data" top: "label"\n'
        '  data_param { source: "db" batch_size: 8 scale: 0.5 mirror: true crop_size: 28 } }\n'
    )
    layer = net.layer[0]
    assert layer.type == "Data"
    assert layer.transform_param.scale == pytest.approx(0.5)
    assert layer.transform_param.mirror and layer.transform_param.crop_size == 28
    assert not layer.data_param.HasField("scale")
    assert layer.data_param.source == "db" and layer.data_param.batch_size == 8


def test_v1_without_upgrade_keeps_layers():
    net = prototxt.parse_net(V1_TEXT, upgrade=False)
    assert len(net.layers) == 9 and len(net.layer) == 0
    assert net.layers[0].type == pb.V1LayerParameter.CONVOLUTION


def test_mixed_layer_and_layers_refused():
    with pytest.raises(AllconvError, match="mixes"):
        prototxt.parse_net('layer { name: "a" }\nlayers { name: "b" }\n', "m.prototxt")


def test_input_shape_becomes_input_layer():
    net = prototxt.parse_net(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
        'input: "label"\ninput_shape { dim: 1 }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" }\n'
    )
    assert [l.name for l in net.layer] == ["input", "ip"]
    assert list(net.layer[0].top) == ["data", "label"]
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[1, 3, 32, 32], [1]]


@pytest.mark.parametrize(
    "text,pattern",
    [
        ('input: "data"\ninput_dim: 1\ninput_dim: 3\n', "need 4 input_dim"),
        ('input: "a"\ninput: "b"\ninput_shape { dim: 1 }\n', "2 net input"),
    ],
)
def test_bad_inputs(text, pattern):
    with pytest.raises(AllconvError, match=pattern):
        prototxt.parse_net(text, "in.prototxt")


def test_input_names_without_a_shape_are_dropped_as_caffe_drops_them():
    """UpgradeNetInput takes `input` alone for a legacy caffemodel's field and clears it
    (tools/caffe_reference/module_edges/upgrade_checks.py: the net below builds in pycaffe
    with layers ['d'] and no inputs); a layer reading it then has an unknown bottom."""
    text = ('input: "data"\nlayer { name: "d" type: "DummyData" top: "data" '
            'dummy_data_param { shape { dim: 1 dim: 2 } } }\n')
    net = prototxt.parse_net(text)
    assert not net.input and [l.name for l in net.layer] == ["d"]
    with pytest.raises(AllconvError, match="layer 'r' \\(ReLU\\): unknown bottom blob 'data'"):
        Net('input: "data"\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n', pb.TEST)


def test_batchnorm_param_specs_are_dropped():
    net = prototxt.parse_net(
        'layer { name: "bn" type: "BatchNorm" param { lr_mult: 0 } '
        "param { lr_mult: 0 } param { lr_mult: 0 } }\n"
    )
    assert len(net.layer[0].param) == 0


def test_read_net_sources(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET_TEXT)
    from_path = prototxt.read_net(path)
    assert prototxt.read_net(str(path)) == from_path
    assert prototxt.read_net(NET_TEXT) == from_path
    v1 = prototxt.parse_net(V1_TEXT, upgrade=False)
    upgraded = prototxt.read_net(v1)
    assert len(v1.layers) == 9, "caller's message must not be changed"
    assert upgraded.layer[1].type == "Convolution"
    with pytest.raises(AllconvError, match="expected a NetParameter"):
        prototxt.read_net(pb.SolverParameter())


def test_read_net_missing_file(tmp_path):
    missing = tmp_path / "nope.prototxt"
    with pytest.raises(AllconvError, match=f"{missing}: no such file"):
        prototxt.read_net(missing)
    with pytest.raises(AllconvError, match="no such file"):
        prototxt.read_solver(str(missing))


def test_write_text_atomic_and_errors(tmp_path):
    net = prototxt.parse_net(NET_TEXT)
    path = tmp_path / "out.prototxt"
    prototxt.write_text(net, path)
    assert prototxt.read_net(path) == net
    assert [p.name for p in tmp_path.iterdir()] == ["out.prototxt"]
    assert stat.S_IMODE(path.stat().st_mode) & 0o044, "file should not be private"
    prototxt.write_text("name: \"raw\"\n", path)
    assert path.read_text() == 'name: "raw"\n'

    bad = tmp_path / "no_such_dir" / "x.prototxt"
    with pytest.raises(AllconvError, match=f"{bad}"):
        prototxt.write_text(net, bad)
    with pytest.raises(AllconvError, match=f"{tmp_path}"):
        prototxt.write_text(net, tmp_path)


# --------------------------------------------------------------------- caffemodel


def test_blob_round_trip_shapes():
    rng = np.random.default_rng(0)
    for shape in [(4, 3, 3, 3), (10,), (2, 5), (), (0, 3)]:
        array = rng.standard_normal(shape).astype(np.float32)
        blob = caffemodel.array_to_blob(array)
        assert blob.HasField("shape") == bool(shape) and list(blob.shape.dim) == list(shape)
        back = caffemodel.blob_to_array(blob)
        assert back.dtype == np.float32 and back.shape == shape
        np.testing.assert_array_equal(back, array)


def test_array_to_blob_matches_elementwise_encoding():
    array = np.arange(7, dtype=np.float64) / 3
    fast = caffemodel.array_to_blob(array)
    slow = pb.BlobProto()
    slow.shape.dim.append(7)
    slow.data.extend(array.astype(np.float32).tolist())
    assert fast.SerializeToString() == slow.SerializeToString()


def test_blob_legacy_dims_and_double_data():
    blob = pb.BlobProto(num=1, channels=1, height=2, width=3)
    blob.double_data.extend([0.5, 1, 2, 3, 4, 5])
    array = caffemodel.blob_to_array(blob)
    assert array.dtype == np.float32 and array.shape == (1, 1, 2, 3)
    assert array[0, 0, 0, 0] == 0.5

    single = pb.BlobProto()
    single.data.append(3.0)
    assert caffemodel.blob_to_array(single).shape == ()

    wrong = pb.BlobProto()
    wrong.shape.dim.extend([2, 2])
    wrong.data.extend([1, 2, 3])
    with pytest.raises(AllconvError, match=r"needs 4 values but it holds 3"):
        caffemodel.blob_to_array(wrong)

    shapeless = pb.BlobProto()      # Caffe: count 1, "Check failed: count_ == proto.data_size()"
    shapeless.data.extend([1, 2, 3])
    with pytest.raises(AllconvError, match=r"a blob without a shape is one value \(Caffe's "
                                           r"reading\), but it holds 3"):
        caffemodel.blob_to_array(shapeless)


def test_a_bad_blob_of_a_layer_the_net_lacks_is_ignored_as_caffe_ignores_it(tmp_path):
    """CopyTrainedLayersFrom reads the blobs of the layers it copies only: a file layer the
    net lacks, its blob 5 long but holding 3 values, made the whole file refused."""
    from runtime import Net, TEST
    path = tmp_path / "w.caffemodel"
    caffemodel.write_weights(path, [("ip", "InnerProduct", [np.ones((2, 3)), np.ones(2)])])
    net_param = caffemodel.read_binary(path, pb.NetParameter)
    extra = net_param.layer.add(name="extra", type="InnerProduct")
    extra.blobs.add().shape.dim.append(5)
    extra.blobs[0].data.extend([1, 2, 3])
    path.write_bytes(net_param.SerializeToString())
    net = Net("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 1 "
              "dim: 3 } } }\nlayer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y' "
              "inner_product_param { num_output: 2 } }", TEST, weights=str(path))
    assert net.params["ip"][0].data.eq(1).all()
    with pytest.raises(AllconvError, match=rf"^{re.escape(str(path))}: layer extra: blob shape "
                                           r"\(5,\) needs 5 values but it holds 3$"):
        caffemodel.read_weights(path)["extra"][0]


@pytest.mark.parametrize("dims, message", [
    ([2**32, 2**32], r"shape .* has 18,446,744,073,709,551,616 elements, more than Caffe's limit"),
    ([2**63 - 1, 0], r"dim 0 is 9223372036854775807 in shape .* more than Caffe's int holds"),
    ([-1, 2], r"dim 0 is -1"),
])
def test_a_blob_shape_caffe_refuses_is_one_line(dims, message):
    """Caffe's Blob::Reshape checks, not an int64 product that wraps to 0 (2**32 x 2**32) or a
    0 dim that hides a huge one, which then failed numpy's reshape with a traceback."""
    blob = pb.BlobProto()
    blob.shape.dim.extend(dims)
    with pytest.raises(AllconvError, match="blob: " + message):
        caffemodel.blob_to_array(blob)


def test_weights_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    layers = [
        ("conv1", "Convolution", [rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
                                  rng.standard_normal(8).astype(np.float32)]),
        ("relu1", "ReLU", []),
        ("fc", "InnerProduct", [rng.standard_normal((10, 32)), np.zeros(10)]),
    ]
    path = tmp_path / "w.caffemodel"
    caffemodel.write_weights(path, layers, net_name="tiny")
    weights = caffemodel.read_weights(path)
    assert list(weights) == ["conv1", "fc"]
    for name, _, blobs in layers:
        for got, want in zip(weights.get(name, []), blobs):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, np.asarray(want, np.float32))
    net = caffemodel.read_binary(path, pb.NetParameter)
    assert net.name == "tiny" and [l.type for l in net.layer][:2] == ["Convolution", "ReLU"]


def test_v1_caffemodel_is_read(tmp_path):
    # The layout of old model-zoo files such as bvlc_reference_caffenet:
    # V1 `layers`, legacy 4-d blob dims, no `shape`.
    net = pb.NetParameter(name="CaffeNet")
    conv = net.layers.add(name="conv1", type=pb.V1LayerParameter.CONVOLUTION)
    conv.blobs_lr.extend([1, 2])
    w = conv.blobs.add(num=2, channels=3, height=2, width=2)
    w.data.extend(np.arange(24, dtype=np.float32).tolist())
    b = conv.blobs.add(num=1, channels=1, height=1, width=2)
    b.data.extend([0.5, -0.5])
    net.layers.add(name="relu1", type=pb.V1LayerParameter.RELU)
    fc = net.layers.add(name="fc8", type=pb.V1LayerParameter.INNER_PRODUCT)
    fw = fc.blobs.add(num=1, channels=1, height=3, width=4)
    fw.data.extend([1.0] * 12)
    path = tmp_path / "old.caffemodel"
    path.write_bytes(net.SerializeToString())

    weights = caffemodel.read_weights(path)
    assert sorted(weights) == ["conv1", "fc8"]
    assert weights["conv1"][0].shape == (2, 3, 2, 2)
    assert weights["conv1"][0][1, 2, 1, 1] == 23
    assert weights["conv1"][1].shape == (1, 1, 1, 2)
    assert weights["fc8"][0].shape == (1, 1, 3, 4)


def test_unknown_fields_are_tolerated(tmp_path):
    # A field number we do not declare (e.g. V1's V0 `layer` = 1, or a fork's
    # extra LayerParameter field) must not break loading.
    layer = pb.LayerParameter(name="conv1", type="Convolution")
    layer.blobs.append(caffemodel.array_to_blob(np.ones((2, 2), np.float32)))
    extra = b"\xca\x3e\x00"  # field 999, length-delimited, empty
    blob_bytes = layer.SerializeToString() + extra
    net_bytes = b"\xa2\x06" + bytes([len(blob_bytes)]) + blob_bytes  # field 100
    path = tmp_path / "fork.caffemodel"
    path.write_bytes(net_bytes)
    assert caffemodel.read_weights(path)["conv1"][0].shape == (2, 2)


def test_truncated_caffemodel_names_path(tmp_path):
    path = tmp_path / "cut.caffemodel"
    caffemodel.write_weights(path, [("fc", "InnerProduct", [np.ones((50, 40))])])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AllconvError) as info:
        caffemodel.read_weights(path)
    message = str(info.value)
    assert str(path) in message
    assert "is not a binary NetParameter (truncated or corrupt)" in message
    assert "\n" not in message


@pytest.mark.parametrize("content, kind", [
    (b'name: "net"\nlayer {\n  name: "data"\n  type: "Input"\n}\n',
     "is a text file (a prototxt? a net goes to -model or --prototxt, a solver to -solver), "
     "not a binary NetParameter"),
    # a PNG's bytes that protobuf's wire format happens to take: a message with no blob
    (b"\x89PNG\r\n\x1a\nxxxxxxxx", "is a PNG image, not a .caffemodel"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01", "is a PNG image, not a binary "
     "NetParameter"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", "is a numpy .npy array, not a binary"),
    # "its suffix is .h5" read as if the file's own were (fuzzer): the fix is the name
    (b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00", "is an HDF5 file (an HDF5 snapshot? rename it "
     "to end in .h5: Caffe tells the formats apart by the name)"),
])
def test_a_file_of_another_kind_given_as_weights_is_named(tmp_path, content, kind):
    """A text prototxt or a PNG given as weights was "truncated or corrupt" (or "contains no
    layer weights"): found by a new user's -weights all_c.prototxt."""
    path = tmp_path / "w.caffemodel"
    path.write_bytes(content)
    with pytest.raises(AllconvError, match=re.escape(f"{path} {kind}")):
        caffemodel.read_weights(path)


def test_missing_and_empty_caffemodel(tmp_path):
    missing = tmp_path / "none.caffemodel"
    with pytest.raises(AllconvError, match=f"{missing}: no such file"):
        caffemodel.read_weights(missing)
    empty = tmp_path / "empty.caffemodel"
    caffemodel.write_binary(empty, prototxt.parse_net(NET_TEXT))
    with pytest.raises(AllconvError, match=f"{empty}: contains no layer weights"):
        caffemodel.read_weights(empty)
    with pytest.raises(AllconvError, match="is a directory"):
        caffemodel.read_weights(tmp_path)


def test_solverstate_round_trip(tmp_path):
    state = pb.SolverState(iter=350, learned_net="snap_iter_350.caffemodel", current_step=2)
    state.history.append(caffemodel.array_to_blob(np.full((3, 2), 0.25, np.float32)))
    path = tmp_path / "snap_iter_350.solverstate"
    caffemodel.write_binary(path, state)
    back = caffemodel.read_binary(path, pb.SolverState)
    assert back == state
    np.testing.assert_array_equal(caffemodel.blob_to_array(back.history[0]),
                                  np.full((3, 2), 0.25, np.float32))
    with pytest.raises(AllconvError, match="cannot write"):
        caffemodel.write_binary(tmp_path / "missing_dir" / "s.solverstate", state)


def test_text_format_matches_caffe_conventions():
    # Caffe's own files write enums by name and repeated scalars one per line.
    layer = pb.LayerParameter(name="p", type="Pooling")
    layer.pooling_param.pool = pb.PoolingParameter.AVE
    text = text_format.MessageToString(layer)
    assert prototxt.to_text(layer) == text
    assert "pool: AVE" in text


# prototxt.py:286 dropping `new.bottom.extend(old.bottom)` survived: no V1 upgrade test
# looks at bottoms or tops, so an upgraded V1 net could lose its wiring.
def test_v1_layers_keep_their_bottoms_and_tops():
    net = prototxt.parse_net(
        'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n'
        'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"\n'
        '  convolution_param { num_output: 2 kernel_size: 1 } }\n'
        'layers { name: "relu" type: RELU bottom: "conv" top: "conv" }\n'
        'layers { name: "loss" type: SOFTMAX_LOSS bottom: "conv" bottom: "label" top: "loss" }\n')
    assert [(l.name, list(l.bottom), list(l.top)) for l in net.layer] == [
        ("input", [], ["data"]), ("conv", ["data"], ["conv"]), ("relu", ["conv"], ["conv"]),
        ("loss", ["conv", "label"], ["loss"])]


# prototxt.py:292 dropping `new.blobs.extend(old.blobs)` survived: Caffe's V1 upgrade
# carries the layer's blobs over, so an old model-zoo NetParameter (V1 `layers` with weights)
# given to read_net keeps its weights.
def test_v1_layer_blobs_survive_the_upgrade():
    old = pb.NetParameter()
    ip = old.layers.add(name="ip", type=pb.V1LayerParameter.INNER_PRODUCT)
    ip.blobs.add(num=1, channels=1, height=1, width=2).data.extend([1.5, -2.0])
    net = prototxt.read_net(old)
    assert len(net.layer[0].blobs) == 1
    assert caffemodel.blob_to_array(net.layer[0].blobs[0]).ravel().tolist() == [1.5, -2.0]


# prototxt.py:269 `layer.type == "BatchNorm" and len(layer.param) == 3` -> `or` survived:
# Caffe drops the three ParamSpecs of BatchNorm only; another layer with three learnable
# blobs (LSTM: W_xc, b_c, W_hc) keeps its lr_mult/decay_mult settings.
def test_three_param_specs_of_a_non_batchnorm_layer_are_kept():
    net = prototxt.parse_net(
        'layer { name: "lstm" type: "LSTM" param { lr_mult: 0 } param { lr_mult: 2 } '
        "param { lr_mult: 0 } recurrent_param { num_output: 4 } }\n")
    assert [p.lr_mult for p in net.layer[0].param] == [0, 2, 0]


# prototxt.py:349 `4 * len(names)` -> `4 / len(names)` and :361 `4 * i + 4` -> `4 * i + 5`
# survived: no test gives input_dim for more than one net input (Caffe takes four
# input_dim values per input, in order).
@pytest.mark.parametrize("extra", [(), (5,)])
def test_input_dim_of_two_inputs_gives_two_shapes(extra):
    """A value past the four per input is ignored, as Caffe's UpgradeNetInput reads none."""
    net = prototxt.parse_net(
        'input: "data"\ninput: "label"\n'
        + "".join(f"input_dim: {d}\n" for d in (2, 3, 8, 8, 2, 1, 1, 1, *extra)))
    assert list(net.layer[0].top) == ["data", "label"]
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[2, 3, 8, 8], [2, 1, 1, 1]]


@pytest.mark.parametrize("field", ["net_param", "train_net_param", "test_net_param"])
@pytest.mark.parametrize("old", ['layers { name: "r" type: RELU bottom: "x" top: "x" }',
                                 'input: "x" input_shape { dim: 1 }'])
def test_a_solvers_inline_net_of_an_old_form_is_refused(field, old):
    """Caffe's solver builds an inline net as it stands (Net(NetParameter) upgrades nothing):
    V1 layers are ignored, a net with no layers then aborts at its first step, and the input
    fields are unknown (pycaffe, fuzz of old formats). One line instead."""
    with pytest.raises(AllconvError, match=rf"inline {field}.* holds .*, which Caffe does not "
                                           "upgrade in a solver"):
        prototxt.parse_solver(f"base_lr: 0.1\n{field} {{ {old} }}\n", "s.prototxt")


# caffemodel.py:79 `len(blob.data) or not len(blob.double_data)` -> `and` survived. The
# two differ only for a blob holding both `data` and `double_data`, and there the mutant was
# Caffe's reading: Blob::FromProto copies double_data whenever it is non-empty, else data.
def test_blob_with_data_and_double_data_reads_double_data_like_caffe():
    blob = pb.BlobProto()
    blob.shape.dim.append(2)
    blob.data.extend([1.0, 2.0])
    blob.double_data.extend([3.0, 4.0])
    assert caffemodel.blob_to_array(blob).tolist() == [3.0, 4.0]


_DATA = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 '
         'dim: 8 dim: 8 } } }\n')
_RELU = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" '


@pytest.mark.parametrize("text, check", [
    # a comment between a field name and its ':' or '{' (a value's field before it a float)
    (_DATA + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
     '  convolution_param { num_output: 2 kernel_size: 3\n'
     '    weight_filler { type: "gaussian" std: 0.1 mean # a comment\n: 0.5 } } }\n',
     lambda net: net.layer[1].convolution_param.weight_filler.mean == 0.5),
    (_DATA + 'layer { name: "d" type: "Dropout" bottom: "data" top: "data" dropout_param { '
     'dropout_ratio: 0.2 } }\nlayer  # first ReLU\n{ name: "r" type: "ReLU" bottom: "data" '
     'top: "r" }\n', lambda net: net.layer[2].type == "ReLU"),
    (_DATA + _RELU + 'relu_param { negative_slope: - # a comment\n 0.5 } }\n',
     lambda net: net.layer[1].relu_param.negative_slope == -0.5),
    ('force_backward # c\n: 0x1\n' + _DATA, lambda net: net.force_backward),
    # a list of messages without a ':', after a float field
    (_DATA + 'layer { name: "d" type: "Dropout" bottom: "data" top: "data" dropout_param { '
     'dropout_ratio: 0.2 } }\nlayer [ { name: "r1" type: "ReLU" bottom: "data" top: "r1" },\n'
     '  { name: "r2" type: "ReLU" bottom: "r1" top: "r2" } ]\n',
     lambda net: [layer.name for layer in net.layer] == ["data", "d", "r1", "r2"]),
])
def test_text_that_caffe_reads_with_comments_and_lists_between_tokens(text, check):
    """C++ reads a scalar value as one token, so the next identifier names a field, whatever
    blanks, comments or brackets come between (mutation fuzzer; each loads in the reference
    build). Before: a name not followed by ':' or '{' was read as the value before it
    ("Expected double, got: layer")."""
    assert check(prototxt.parse_net(text))


@pytest.mark.parametrize("text, where", [
    # C++ counts a line's bytes, and a tab moves it to the next multiple of 8
    (_DATA + 'layer {\n\tname: "relu"\n\ttype: "ReLU"\n\tbottom: "data"\n\ttop: "r"\n'
     '\trelu_param {\tnegative_slop: 0.1 }\n}\n',
     '7:38: Message type "caffe.ReLUParameter" has no field named "negative_slop".'),
    (_DATA + 'layer { name: "r\u00e9\u03bbu" type: "ReLU" bottom: "data" top: "r" relu_param { '
     'negative_slop: 0.1 } }\n',
     '2:87: Message type "caffe.ReLUParameter" has no field named "negative_slop".'),
    # a number where a field name belongs; a missing ':' after a float's value
    (_DATA + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
     '{ num_output: 2 3 kernel_size: 1 } }\n', "2:97: Expected identifier, got: 3"),
    (_DATA + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { lr_mult: 1 '
     'decay_mult 0 } convolution_param { num_output: 2 kernel_size: 1 } }\n',
     '2:93: Expected ":", found "0".'),
    # a quoted value of a bool, an enum, a number
    ('name: "r7"\nforce_backward: "true"\n' + _DATA, '2:17: Expected identifier, got: "true"'),
    (_DATA + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: '
     '"MAX" kernel_size: 2 } }\n', '2:81: Expected integer or identifier, got: "MAX"'),
    (_DATA + _RELU + 'relu_param { negative_slope: "0.5" } }\n',
     '2:85: Expected double, got: "0.5"'),
    # the tokenizer's error in the token after a field name comes before the name's
    (_DATA + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_\u00a0param { '
     'pool: MAX kernel_size: 2 } }\n', "2:67: Interpreting non ascii codepoint 194."),
    # punctuation as a value; an extension
    (_DATA + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: ; '
     'kernel_size: 2 } }\n', "2:81: Expected integer or identifier, got: ;"),
    ("force_backward: }\n" + _DATA, "1:17: Expected identifier, got: }"),
    (_DATA + 'layer { [caffe.foo] { } name: "r" type: "ReLU" bottom: "data" top: "r" }\n',
     '2:21: Extension "caffe.foo" is not defined or is not an extension of '
     '"caffe.LayerParameter".'),
])
def test_syntax_errors_are_where_and_as_caffes_cpp_parser_says(text, where):
    """Positions and words of the reference build's errors for these files (mutation fuzzer:
    tabs and non-ASCII bytes moved the column; the others had other words or places)."""
    with pytest.raises(AllconvError) as info:
        prototxt.parse_net(text, "n.prototxt")
    assert str(info.value).split(" (")[0] == f"n.prototxt:{where}"


@pytest.mark.parametrize("last, where", [
    ("type: SGD", "3:7: Expected string, got: SGD"),
    ("max_iter: NaN", "3:11: Expected integer, got: NaN"),
    ("max_iter: -inf", "3:12: Expected integer, got: inf"),
    ("max_iter: 9223372036854775808", "3:11: Integer out of range (9223372036854775808)"),
])
def test_a_solvers_last_token_error_is_at_it_and_gives_no_layer_hint(last, where):
    """As the reference build says them. Before: "4:1", past the end, in Python's words, and
    a hint about V1 layer types in a solver."""
    with pytest.raises(AllconvError) as info:
        prototxt.parse_solver(f'base_lr: 0.1\nnet: "x.prototxt"\n{last}\n', "s.prototxt")
    assert str(info.value) == f"s.prototxt:{where}"


@pytest.mark.parametrize("repeat", [1, 40])
def test_a_utf16_prototxt_is_named_as_such_at_its_first_byte(tmp_path, repeat):
    """C++ stops at 1:1 (the byte-order mark); a file of 512 bytes or more was called "a
    binary file, perhaps a .caffemodel cut short" (mutation fuzzer)."""
    path = tmp_path / "n.prototxt"
    path.write_bytes(('name: "n"\n' + _DATA * repeat).encode("utf-16"))
    with pytest.raises(AllconvError, match=rf"^{re.escape(str(path))}:1:1: .*a UTF-16 text "
                                           r"file, by its byte-order mark: save it as UTF-8\)$"):
        prototxt.read_net(str(path))


def test_a_control_character_in_a_type_or_blob_name_keeps_the_error_one_line():
    """A "\\n" escape in a layer type or an earlier blob's name put a raw newline into the
    exception (the CLIs escaped it; the Python API's message had two lines)."""
    from runtime import TEST, Net
    for text in (_DATA + 'layer { name: "r" type: "ReLU\\n" bottom: "data" top: "r" }\n',
                 _DATA + 'layer { name: "r" type: "ReLU" bottom: "data" top: "x\\n" }\n'
                 'layer { name: "s" type: "ReLU" bottom: "nope" top: "s" }\n'):
        with pytest.raises(AllconvError) as info:
            Net(text, TEST)
        assert "\n" not in str(info.value) and "\\n" in str(info.value)


_IN = ('name: "t"\nlayer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 '
       'dim: 4 dim: 4 } } }\n')


@pytest.mark.parametrize("last, where", [
    # a '-' where a field name belongs (after a value): C++ names the '-'
    ('layer { name: "p" type: "Power" bottom: "x" top: "y" power_param { scale: 2 -1 } }',
     "3:77: Expected identifier, got: -"),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { kernel_size: 2 -1 '
     '} }', "3:87: Expected identifier, got: -"),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX -1 '
     'kernel_size: 2 } }', "3:82: Expected identifier, got: -"),
    # lists: only of a repeated field, their commas, C++'s "found"
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" loss_weight: [1 -2] }',
     'Expected ",", found "-".'),
    ('layer { name: "r" type: "ReLU" bottom: ["x"; "z"] top: "y" }',
     '3:44: Expected ",", found ";".'),
    ('layer { name: "p" type: "Power" bottom: "x" top: "y" power_param { scale: 2.5 [a, b] } }',
     '3:81: Expected "]", found ",".'),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" include: TEST }',
     '3:62: Expected "{", found "TEST".'),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: -1 '
     'kernel_size: 2 } }', '3:81: Unknown enumeration value of "-1" for field "pool".'),
])
def test_misplaced_signs_lists_and_values_are_reported_as_caffe(last, where):
    """The reference build's error for each (review of the tokenizer: a '-' after a value was
    reported at the number after it, and a '[' after a non-repeated field read as a list)."""
    with pytest.raises(AllconvError) as info:
        prototxt.parse_net(_IN + last + "\n", "n.prototxt")
    message = str(info.value).split(" (valid")[0]
    assert message.endswith(where) and message.startswith("n.prototxt:3:")


def test_a_list_given_to_a_single_value_is_refused_at_its_bracket():
    with pytest.raises(AllconvError, match=r"^n.prototxt:2:17: Expected identifier, got: \[$"):
        prototxt.parse_net('name: "t"\nforce_backward: [true]\n' + _IN, "n.prototxt")


@pytest.mark.parametrize("last, where", [
    # comments where C++ skips them: before an enum's ':', inside an extension's brackets
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool # a\n : MAXX '
     'kernel_size: 2 } }', '4:9: Unknown enumeration value of "MAXX" for field "pool".'),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: # c\n MAXX '
     'kernel_size: 2 } }', '4:7: Unknown enumeration value of "MAXX" for field "pool".'),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" [foo # c\n .bar]: 1 }',
     '4:7: Extension "foo.bar" is not defined or is not an extension of "caffe.LayerParameter".'),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" [ # c\n foo.bar]: 1 }',
     '4:10: Extension "foo.bar" is not defined or is not an extension of '
     '"caffe.LayerParameter".'),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" [foo # c\n bar]: 1 }',
     '4:2: Expected "]", found "bar".'),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" []: 1 }',
     "3:54: Expected identifier, got: ]"),
    # a list left open at a '}'; an unknown enum value inside a list
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" loss_weight: [1, 2 }',
     '3:72: Expected ",", found "}".'),
])
def test_comments_and_lists_in_errors_as_caffe(last, where):
    """The reference build's error for each (review33: a comment before ':' named it as the
    field; comments in an extension's brackets; 'found ""' at the end of the text)."""
    with pytest.raises(AllconvError) as info:
        prototxt.parse_net(_IN + last + "\n", "n.prototxt")
    assert str(info.value).split(" (valid")[0] == f"n.prototxt:{where}"


def test_an_unknown_enum_value_in_a_list_names_its_field():
    text = ('name: "t"\ninput: "x"\ninput_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n'
            'layers { name: "r" type: RELU bottom: "x" top: "y" blob_share_mode: [STRICT, BADX] '
            '}\n')
    with pytest.raises(AllconvError, match='^n.prototxt:4:82: Unknown enumeration value of '
                                           '"BADX" for field "blob_share_mode"'):
        prototxt.parse_net(text, "n.prototxt")


def test_array_to_blob_writes_the_diff_in_its_own_field_and_no_shape_for_a_scalar():
    from runtime.caffemodel import array_to_blob
    blob = array_to_blob(np.ones(2, np.float32), diff=np.array([3, 4], np.float32))
    assert list(blob.data) == [1, 1] and list(blob.diff) == [3, 4]     # Blob::ToProto(write_diff)
    # Blob::ToProto calls mutable_shape() once per axis: none for a blob of no axes. Real
    # pycaffe's save of a channel_shared PReLU writes its 0.25 as these bytes, data alone.
    assert array_to_blob(np.float32(0.25)).SerializeToString() == b"*\x04\x00\x00\x80>"
    assert array_to_blob(np.zeros(0, np.float32)).HasField("shape")   # one axis, of 0


def test_a_blob_of_no_shape_and_no_value_is_refused():
    from runtime.caffemodel import blob_to_array
    # Caffe's FromProto: no legacy field, no shape: a scalar, which needs one value
    with pytest.raises(AllconvError, match="holds 0"):
        blob_to_array(pb.BlobProto())


def test_a_blob_with_some_legacy_fields_takes_the_legacy_shape():
    from runtime.caffemodel import blob_to_array
    # Caffe: any of num/channels/height/width set -> (num, channels, height, width), unset 0
    assert blob_to_array(pb.BlobProto(num=2, channels=3)).shape == (2, 3, 0, 0)


def _binary_files(folder):
    from runtime.caffemodel import array_to_blob
    net = pb.NetParameter()
    layer = net.layer.add(name="c")
    layer.blobs.append(array_to_blob(np.ones((2, 3), np.float32)))
    state = pb.SolverState(iter=3, learned_net="x.caffemodel")
    state.history.append(array_to_blob(np.ones(4, np.float32)))
    files = {"w.caffemodel": (net, pb.NetParameter, "a .caffemodel"),
             "s.solverstate": (state, pb.SolverState, "a .solverstate"),
             "m.binaryproto": (array_to_blob(np.ones((1, 3, 2, 2))), pb.BlobProto,
                               "a .binaryproto")}
    for name, (message, _, _) in files.items():
        (folder / name).write_bytes(message.SerializeToString())
    return files


def test_each_binary_kind_read_as_another_is_named(tmp_path):
    from runtime.caffemodel import read_binary
    files = _binary_files(tmp_path)
    for name, (_, cls, words) in files.items():
        assert read_binary(tmp_path / name, cls) is not None
        for other in (pb.NetParameter, pb.SolverState, pb.BlobProto):
            if other is not cls:
                with pytest.raises(AllconvError, match=f"is {words} .*, not a binary "
                                                       f"{other.DESCRIPTOR.name}$"):
                    read_binary(tmp_path / name, other)


def test_corrupt_bytes_with_a_letter_are_not_called_text(tmp_path):
    from runtime.caffemodel import read_binary
    (tmp_path / "g.bin").write_bytes(b"\x0fa\x00")
    with pytest.raises(AllconvError, match=r"is not a binary BlobProto \(truncated or corrupt\)"):
        read_binary(tmp_path / "g.bin", pb.BlobProto)


def test_read_blob_names_the_file_of_a_blob_whose_count_is_wrong(tmp_path):
    from runtime.caffemodel import read_blob
    blob = pb.BlobProto(data=[1, 2, 3])
    blob.shape.dim.extend([2])
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    with pytest.raises(AllconvError, match=r"mean\.binaryproto: blob shape \(2,\) needs 2 values"):
        read_blob(tmp_path / "mean.binaryproto")


def test_stored_blobs_take_a_slice(tmp_path):
    from runtime.caffemodel import read_layers, write_weights
    blobs = [np.full((2,), i, np.float32) for i in range(3)]
    write_weights(tmp_path / "w.caffemodel", [("ip", "InnerProduct", blobs)])
    (name, stored), = read_layers(tmp_path / "w.caffemodel")
    assert [b.tolist() for b in stored[1:]] == [[1, 1], [2, 2]]
    assert [b.tolist() for b in stored[::2]] == [[0, 0], [2, 2]]


def test_written_weights_name_the_net_even_when_empty_as_caffes_to_proto(tmp_path):
    from runtime.caffemodel import read_binary, write_weights
    write_weights(tmp_path / "w.caffemodel", [("ip", "InnerProduct", [np.ones(2, np.float32)])])
    assert read_binary(tmp_path / "w.caffemodel", pb.NetParameter).HasField("name")


def test_write_weights_writes_a_definitions_blobs_once(tmp_path):
    from runtime.caffemodel import array_to_blob, read_layers, write_weights
    definition = pb.LayerParameter(name="ip", type="InnerProduct")
    definition.blobs.append(array_to_blob(np.zeros(2, np.float32)))    # a prototxt's blobs
    write_weights(tmp_path / "w.caffemodel", [(definition, [np.ones(2, np.float32)])])
    (name, stored), = read_layers(tmp_path / "w.caffemodel")
    assert [b.tolist() for b in stored] == [[1, 1]]




# Caffe's UpgradeV1LayerType (upgrade_proto.cpp), every V1 enum value but NONE
CAFFE_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def test_every_v1_layer_type_becomes_caffes_v2_type():
    from runtime.upgrade_proto import upgrade_net
    enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    names = [v.name for v in enum.values if v.name != "NONE"]
    assert sorted(names) == sorted(CAFFE_V1_TYPES)
    net = pb.NetParameter()
    for name in names:
        net.layers.add(name=name.lower(), type=enum.values_by_name[name].number)
    upgrade_net(net)
    assert {l.name.upper(): l.type for l in net.layer} == CAFFE_V1_TYPES


def test_a_v1_layer_keeps_loss_weight_exclude_and_share_mode():
    from runtime import prototxt
    net = prototxt.parse_net(
        'layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" loss_weight: 2\n'
        '  exclude { phase: TEST } param: "w" blob_share_mode: PERMISSIVE\n'
        '  inner_product_param { num_output: 1 } }\n')
    layer = net.layer[0]
    assert list(layer.loss_weight) == [2] and layer.exclude[0].phase == pb.TEST
    assert layer.param[0].name == "w" and layer.param[0].share_mode == pb.ParamSpec.PERMISSIVE


def test_v1_image_data_preprocessing_moves_to_transform_param():
    from runtime import prototxt
    net = prototxt.parse_net(
        'layers { name: "d" type: IMAGE_DATA top: "data" top: "label"\n'
        '  image_data_param { source: "list.txt" batch_size: 2 scale: 0.5 mean_file: "m" } }\n')
    layer = net.layer[0]
    assert layer.transform_param.scale == pytest.approx(0.5)
    assert layer.transform_param.mean_file == "m"
    assert not layer.image_data_param.HasField("scale")
    assert not layer.image_data_param.HasField("mean_file")


def test_two_batchnorm_layers_share_their_statistics_by_two_param_names():
    # UpgradeNetBatchNorm clears the param of a BatchNorm with three, not two: these share
    from runtime import TRAIN
    specs = 'param { name: "m" lr_mult: 0 } param { name: "v" lr_mult: 0 }'
    text = ('layer { name: "in" type: "Input" top: "x" top: "z" input_param { '
            'shape { dim: 2 dim: 2 } shape { dim: 2 dim: 2 } } }\n'
            f'layer {{ name: "bn1" type: "BatchNorm" bottom: "x" top: "y1" {specs} }}\n'
            f'layer {{ name: "bn2" type: "BatchNorm" bottom: "z" top: "y2" {specs} }}\n')
    net = Net(text, TRAIN)
    net.forward(x=torch.arange(4.).reshape(2, 2), z=torch.tensor([[10., 0], [30, 4]]))
    # the reference build's values: both layers' updates land in one pair of blobs
    for name in ("bn1", "bn2"):
        np.testing.assert_allclose(net.params[name][0].data.numpy(), [20.999, 3.998], rtol=1e-5)
        np.testing.assert_allclose(net.params[name][1].data.numpy(), [201.998, 9.998], rtol=1e-5)


def test_a_net_level_input_shape_without_input_is_ignored_as_caffe():
    # UpgradeNetInput runs only where the net has `input` names; the reference build builds
    # this net and its Input layer gives y = [[1, 1]]
    from runtime import TEST
    text = ('input_shape { dim: 1 dim: 2 }\n'
            'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    with pytest.warns(UserWarning, match="without any `input` name: ignored"):
        net = Net(text, TEST)
    assert net.forward(x=torch.ones(1, 2))["y"].tolist() == [[1, 1]]


def test_v1_data_param_preprocessing_overwrites_transform_param_as_caffe():
    # upgrade_proto.cpp's CONVERT_LAYER_TRANSFORM_PARAM: set_scale(data_param.scale), no check
    net = prototxt.parse_net(
        'layers { name: "d" type: DATA top: "data" top: "label"\n'
        '  data_param { source: "db" batch_size: 8 scale: 0.5 }\n'
        '  transform_param { scale: 0.25 } }\n')
    assert net.layer[0].transform_param.scale == pytest.approx(0.5)


def test_a_caffemodel_mixing_v1_layers_and_v2_layer_is_refused_as_caffe(tmp_path):
    # upgrade_proto.cpp in the reference build: LOG(FATAL) "Refusing to upgrade inconsistent
    # NetParameter input; the definition includes both 'layer' and 'layers'"
    from runtime.caffemodel import array_to_blob, read_layers
    net = pb.NetParameter()
    net.layer.add(name="ip", type="InnerProduct").blobs.append(array_to_blob(np.ones(2)))
    net.layers.add(name="ip", type=pb.V1LayerParameter.INNER_PRODUCT).blobs.append(
        array_to_blob(np.full(2, 2.0)))
    (tmp_path / "w.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(AllconvError, match=r"w.caffemodel: holds both V2 `layer` and V1 "
                                           r"`layers` entries"):
        read_layers(tmp_path / "w.caffemodel")
