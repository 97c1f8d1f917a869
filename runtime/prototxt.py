"""Reading and writing Caffe text protos (.prototxt nets and solvers).

Public functions::

    parse_net(text, filename="<string>", upgrade=True) -> NetParameter
    read_net(source, upgrade=True) -> NetParameter      # path, text or message
    parse_solver(text, filename="<string>", upgrade=True) -> SolverParameter
    read_solver(source, upgrade=True) -> SolverParameter
    upgrade_net(net) -> NetParameter                    # in place, returned
    upgrade_solver(solver) -> SolverParameter           # in place, returned
    to_text(message) -> str
    write_text(message_or_text, path) -> None           # atomic

Every failure is an ``AllconvError`` with a one-line message; syntax errors
read ``file:line:column: message``.

Upgrades (applied by the readers unless ``upgrade=False``), mirroring what
Caffe's own readers do before building a net:

* V1 nets (``layers { type: CONVOLUTION ... }``, pre-2015) become V2 ``layer``
  entries: the enum type becomes its string name, ``blobs_lr`` /
  ``weight_decay`` / ``param`` / ``blob_share_mode`` become ``ParamSpec``
  ``lr_mult`` / ``decay_mult`` / ``name`` / ``share_mode``, every ``*_param``
  is carried over, and the old per-layer preprocessing fields of data layers
  (``scale``, ``mean_file``, ``crop_size``, ``mirror``) move to
  ``transform_param``.
* Net-level ``input`` + ``input_shape`` / ``input_dim`` become an ``Input``
  layer named ``"input"`` placed first.
* BatchNorm layers with three ``param`` entries lose them (Caffe's BatchNorm
  sets its own multipliers).
* Solvers: the old ``solver_type`` enum becomes the ``type`` string; inline
  nets (``net_param`` etc.) get the net upgrades.

V0 nets (``layers { layer { ... } }``, 2013) are refused with a pointer to
Caffe's ``upgrade_net_proto_text`` tool.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Union

from google.protobuf import text_format
from google.protobuf.message import Message

from runtime.errors import AllconvError
from runtime.files import atomic_write_bytes, read_bytes
from runtime.proto import pb
from runtime.text_tokens import (TextSyntaxError, caffe_position, caffe_tokens, decode_prototxt,
                                 past_sign, text_index)

__all__ = [
    "parse_net",
    "read_net",
    "parse_solver",
    "read_solver",
    "upgrade_net",
    "upgrade_solver",
    "to_text",
    "write_text",
]

Source = Union[str, os.PathLike, Message]

_UPGRADE_HINT = (
    "upgrade it with Caffe's tool: upgrade_net_proto_text OLD.prototxt NEW.prototxt"
)

# V1LayerParameter.LayerType value name -> V2 type string.
_V1_TYPE_NAMES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Old solver_type enum name -> type string.
_SOLVER_TYPE_NAMES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# Data layers whose own *_param once carried the preprocessing settings.
_DATA_PARAM_FIELDS = {
    "DATA": "data_param",
    "IMAGE_DATA": "image_data_param",
    "WINDOW_DATA": "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

_ERROR_POSITION = re.compile(r"^\s*(\d+):(\d+)\s*:\s*")
_ENUM_TYPE_LINE = re.compile(r"^\s*type\s*:\s*[A-Z][A-Z0-9_]*\s*(#.*)?$", re.MULTILINE)


# ---------------------------------------------------------------- parsing


def _parse_text(text: str, message: Message, filename: str) -> Message:
    """``text`` into ``message``, or the first error C++ would meet, at its position: one the
    tokenizer pass finds, or, before it, one Python's parser finds."""
    try:
        tokens, syntax = caffe_tokens(text, message.DESCRIPTOR), None
    except TextSyntaxError as err:
        tokens, syntax = err.tokens, err
    try:
        with warnings.catch_warnings():     # an escape left past the error: Python warns
            warnings.simplefilter("ignore", DeprecationWarning)
            text_format.Parse(tokens, message)
    except text_format.ParseError as err:
        where, detail = _parse_error(err, tokens)
        if syntax is None or _before(err, tokens, syntax.token):
            raise AllconvError(_format_parse_error(where, detail, text, filename)) from None
    if syntax is not None:
        raise AllconvError(f"{filename}:{syntax.line}:{syntax.column}: {syntax.detail}")
    return message


_QUOTED_LINE = re.compile(r"^'.*': (?=\S)")
_UNKNOWN_ENUM = re.compile(r"^(Enum type \"([\w.]+)\" has no value (?:named \w+|with number "
                           r"-?\d+)\.?)$")
_UNKNOWN_FIELD = re.compile(r'^Message type "([\w.]+)" has no field named "(\w+)"\.?$')
# a net read as a solver, or a solver as a net: the file's first field names what it is
_OTHER_FILE = {"caffe.SolverParameter": ("caffe.NetParameter", "a net, not a solver"),
               "caffe.NetParameter": ("caffe.SolverParameter", "a solver, not a net")}


def _with_valid_names(detail: str) -> str:
    """protobuf's unknown enum value or field, with the valid names (or, for a field of the
    other kind of file, what the file is)."""
    pool = pb.DESCRIPTOR.pool
    if match := _UNKNOWN_ENUM.match(detail):
        names = pool.FindEnumTypeByName(match.group(2)).values_by_name
        return f"{match.group(1)} (valid: {', '.join(names)})"
    if match := _UNKNOWN_FIELD.match(detail):
        other, what = _OTHER_FILE.get(match.group(1), (None, None))
        if other and match.group(2) in pool.FindMessageTypeByName(other).fields_by_name:
            return f"{detail} (a field of {other.split('.')[1]}: this file is {what})"
        fields = pool.FindMessageTypeByName(match.group(1)).fields_by_name
        return f"{detail} (fields: {', '.join(fields)})"
    return detail


def _parse_error(err: text_format.ParseError, tokens: str):
    """Python's parse error as ((line, column) where C++ reports it, or None; the message
    without the source line Python may quote before it)."""
    detail = str(err)
    line, column = err.GetLine(), err.GetColumn()
    match = _ERROR_POSITION.match(detail)
    if match:
        detail = detail[match.end():]
        if line is None:
            line, column = int(match.group(1)), int(match.group(2))
    detail = _QUOTED_LINE.sub("", detail.strip(), count=1)
    if line is None:
        return None, detail
    return caffe_position(tokens, line, column or 1, detail), detail


def _before(err: text_format.ParseError, tokens: str, index: int) -> bool:
    """Whether Python's error is about a token that starts before ``index`` (C++ reads
    tokens one by one, so a token's own error comes first)."""
    line, column = err.GetLine(), err.GetColumn()
    return line is not None and past_sign(tokens, text_index(tokens, line, column or 1)) < index


def _format_parse_error(where, detail: str, text: str, filename: str) -> str:
    where = filename if where is None else f"{filename}:{where[0]}:{where[1]}"
    detail = _with_valid_names(detail) or "syntax error"
    if 'V1LayerParameter" has no field named "layer"' in detail:
        detail += f" (this is a V0 net from 2013; {_UPGRADE_HINT})"
    elif "Expected string" in detail and _ENUM_TYPE_LINE.search(text):
        detail += (
            " (unquoted upper-case layer types are V1 (pre-2015) syntax, valid "
            'only inside `layers { }`; in `layer { }` write e.g. type: "Convolution"; '
            f"or {_UPGRADE_HINT})"
        )
    return f"{where}: {detail}"


def parse_net(text: str, filename: str = "<string>", upgrade: bool = True):
    """Parse NetParameter text; ``filename`` only labels error messages."""
    net = _parse_text(text, pb.NetParameter(), filename)
    if upgrade:
        _upgraded(upgrade_net, net, filename)
    return net



def parse_solver(text: str, filename: str = "<string>", upgrade: bool = True):
    """Parse SolverParameter text; ``filename`` only labels error messages."""
    solver = _parse_text(text, pb.SolverParameter(), filename)
    if upgrade:
        _upgraded(upgrade_solver, solver, filename)
    return solver


def _load_source(source: Source, message_cls, parse, upgrade_fn) -> Message:
    """Parse a path or text with ``parse``; copy (and upgrade) a message."""
    if isinstance(source, Message):
        if not isinstance(source, message_cls):
            raise AllconvError(
                f"expected a {message_cls.DESCRIPTOR.name}, got a "
                f"{source.DESCRIPTOR.name}"
            )
        copy = message_cls()
        copy.CopyFrom(source)
        if upgrade_fn is not None:
            _upgraded(upgrade_fn, copy, "<message>")
        return copy
    if isinstance(source, str) and not os.path.exists(source) and _looks_like_text(source):
        return parse(source, "<string>")
    path = Path(source)
    return parse(decode_prototxt(read_bytes(path, ".prototxt")), str(path))


def _looks_like_text(value: str) -> bool:
    return "\n" in value or "{" in value or ": " in value or value.strip() == ""


def read_net(source: Source, upgrade: bool = True):
    """NetParameter from a file path, prototxt text, or a NetParameter.

    A message argument is copied (the caller's object is not changed) and
    upgraded like a parsed file.
    """
    return _load_source(
        source, pb.NetParameter,
        lambda text, name: parse_net(text, name, upgrade),
        upgrade_net if upgrade else None,
    )


def read_solver(source: Source, upgrade: bool = True):
    """SolverParameter from a file path, prototxt text, or a SolverParameter."""
    return _load_source(
        source, pb.SolverParameter,
        lambda text, name: parse_solver(text, name, upgrade),
        upgrade_solver if upgrade else None,
    )


# ---------------------------------------------------------------- upgrades


def _upgraded(upgrade, message, label: str) -> None:
    """``upgrade(message)``, its error prefixed with ``label`` (the file it came from)."""
    try:
        upgrade(message)
    except AllconvError as err:
        raise AllconvError(f"{label}: {err}") from None


def upgrade_net(net):
    """Bring a NetParameter to the current form in place; returns it."""
    if len(net.layers):
        if len(net.layer):
            raise AllconvError(
                "net mixes V2 `layer` and V1 `layers` entries; use one form only"
            )
        _upgrade_v1_layers(net)
    _upgrade_inputs(net)
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            del layer.param[:]
    return net


def _upgrade_v1_layers(net) -> None:
    v1_enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    upgraded = []
    for index, old in enumerate(net.layers):
        label = old.name or f"#{index}"
        if old.HasField("type"):
            enum_name = v1_enum.values_by_number[old.type].name
        else:
            enum_name = "NONE"
        new = pb.LayerParameter()
        if old.HasField("name"):
            new.name = old.name
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        if enum_name != "NONE":
            new.type = _V1_TYPE_NAMES[enum_name]
        new.blobs.extend(old.blobs)
        new.loss_weight.extend(old.loss_weight)

        specs = (
            ("name", list(old.param)),
            ("share_mode", list(old.blob_share_mode)),
            ("lr_mult", list(old.blobs_lr)),
            ("decay_mult", list(old.weight_decay)),
        )
        count = max(len(values) for _, values in specs)
        for _ in range(count):
            new.param.add()
        for field, values in specs:
            for spec, value in zip(new.param, values):
                setattr(spec, field, value)

        for field, value in old.ListFields():
            if field.name.endswith("_param") and hasattr(new, field.name):
                getattr(new, field.name).CopyFrom(value)

        data_field = _DATA_PARAM_FIELDS.get(enum_name)
        if data_field and new.HasField(data_field):
            _move_transform_fields(getattr(new, data_field), new.transform_param, label)
        upgraded.append(new)
    del net.layers[:]
    net.layer.extend(upgraded)


def _move_transform_fields(source, transform, label: str) -> None:
    for name in _TRANSFORM_FIELDS:
        if not source.HasField(name):
            continue
        if transform.HasField(name):
            raise AllconvError(
                f"layer {label}: {name} is set both in its data parameters and "
                "in transform_param"
            )
        setattr(transform, name, getattr(source, name))
        source.ClearField(name)


def _upgrade_inputs(net) -> None:
    names = list(net.input)
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if not names:
        if has_shape or has_dim:
            raise AllconvError("input_shape / input_dim given without any `input` name")
        return
    if has_shape and len(net.input_shape) != len(names):
        raise AllconvError(
            f"{len(names)} net input(s) but {len(net.input_shape)} input_shape entries"
        )
    if not has_shape:
        if not has_dim:
            raise AllconvError(
                f"net input {names[0]!r} has no input_shape or input_dim"
            )
        if len(net.input_dim) != 4 * len(names):
            raise AllconvError(
                f"{len(names)} net input(s) need {4 * len(names)} input_dim values, "
                f"got {len(net.input_dim)}"
            )
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(names)
    for i in range(len(names)):
        shape = layer.input_param.shape.add()
        if has_shape:
            shape.CopyFrom(net.input_shape[i])
        else:
            shape.dim.extend(net.input_dim[4 * i: 4 * i + 4])
    rest = list(net.layer)
    del net.layer[:]
    net.layer.extend([layer] + rest)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def upgrade_solver(solver):
    """Bring a SolverParameter to the current form in place; returns it."""
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise AllconvError(
                "solver sets both the old `solver_type` enum and the `type` string; "
                "keep only `type`"
            )
        enum_desc = pb.SolverParameter.DESCRIPTOR.enum_types_by_name["SolverType"]
        solver.type = _SOLVER_TYPE_NAMES[enum_desc.values_by_number[solver.solver_type].name]
        solver.ClearField("solver_type")
    for field in ("net_param", "train_net_param"):
        if solver.HasField(field):
            upgrade_net(getattr(solver, field))
    for net in solver.test_net_param:
        upgrade_net(net)
    return solver


# ---------------------------------------------------------------- writing


def to_text(message: Message) -> str:
    """The protobuf text format of ``message`` (what Caffe reads)."""
    return text_format.MessageToString(message)


def write_text(message: Union[Message, str], path: Union[str, os.PathLike]) -> None:
    """Write ``to_text(message)`` to ``path`` atomically (temp file + rename).

    A ``str`` is taken as ready-made prototxt text and written unchanged.
    """
    text = message if isinstance(message, str) else to_text(message)
    atomic_write_bytes(path, text.encode("utf-8"))



