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

Upgrades (applied by the readers unless ``upgrade=False``): runtime/upgrade_proto.py.
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
from runtime.text_tokens import (AFTER_TOKEN, EXPECTED_MARK, GAPS, TextSyntaxError,
                                 caffe_position, caffe_tokens, cpp_column, decode_prototxt,
                                 invalid_bool, line_column, next_token, past_sign, text_column,
                                 text_index, unknown_enum_value)
from runtime.upgrade_proto import upgrade_net, upgrade_solver

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

_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")
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
            # a byte that is not UTF-8 (refused by the pass) as '?': upb's name lookups fail
            # on the surrogate that stands for it (a SystemError)
            text_format.Parse(_NOT_UTF8_BYTE.sub("?", tokens), message)
    except text_format.ParseError as err:
        where, detail = _parse_error(err, tokens)
        where = where and (where[0], text_column(text, tokens, *where))
        if syntax is None or _before(err, tokens, syntax):
            raise AllconvError(_format_parse_error(where, detail, text, filename,
                                                   message)) from None
    if syntax is not None:
        raise AllconvError(f"{filename}:{syntax.line}:"
                           f"{cpp_column(text, syntax.line, syntax.column)}: "
                           f"{_with_valid_names(syntax.detail)}")
    return message


_NOT_UTF8_BYTE = re.compile("[\udc80-\udcff]")      # decode_prototxt's surrogates
_QUOTED_LINE = re.compile(r"^'.*': (?=\S)")
_UNKNOWN_ENUM = re.compile(r"^(Enum type \"([\w.]+)\" has no value (?:named (\w+)|with number "
                           r"(-?\d+))\.?)$")
_FIELD_BEFORE = re.compile(rf"(\w+){GAPS}:{GAPS}(?:-{GAPS})?$")
_LIST_FIELD_BEFORE = re.compile(rf"(\w+){GAPS}:?{GAPS}\[[^\[\]]*$")      # in its list
_UNKNOWN_FIELD = re.compile(r'^Message type "([\w.]+)" has no field named "(\w+)"\.?$')
# a net read as a solver, or a solver as a net: the file's first field names what it is
_OTHER_FILE = {"caffe.SolverParameter": ("caffe.NetParameter", "a net, not a solver"),
               "caffe.NetParameter": ("caffe.SolverParameter", "a solver, not a net")}


def _with_valid_names(detail: str) -> str:
    """protobuf's unknown enum value or field, with the valid names (or, for a field of the
    other kind of file, what the file is)."""
    pool = pb.DESCRIPTOR.pool
    if match := _UNKNOWN_FIELD.match(detail):
        other, what = _OTHER_FILE.get(match.group(1), (None, None))
        if other and match.group(2) in pool.FindMessageTypeByName(other).fields_by_name:
            return f"{detail} (a field of {other.split('.')[1]}: this file is {what})"
        fields = pool.FindMessageTypeByName(match.group(1)).fields_by_name
        return f"{detail} (fields: {', '.join(fields)})"
    return detail


def _parse_error(err: text_format.ParseError, tokens: str):
    """Python's parse error as ((line, column) where C++ reports it, or None; the message
    without the source line Python may quote before it, in C++'s words)."""
    detail, line, column = _python_words(err), err.GetLine(), err.GetColumn()
    match = _ERROR_POSITION.match(str(err))
    if match and line is None:
        line, column = int(match.group(1)), int(match.group(2))
    if line is None:
        return None, detail
    index = text_index(tokens, line, column or 1)
    if match := _NO_EXTENSIONS.fullmatch(detail):
        return _extension_error(tokens, index, match.group(1))
    where = caffe_position(tokens, line, column or 1, detail)
    if match := _UNKNOWN_ENUM.match(detail):
        return where, _unknown_enum(match, tokens[:index])
    if detail == _NOT_BOOL or detail.startswith("Value out of range"):
        return where, _value_refused(detail, tokens, index)
    return where, _in_caffe_words(detail, tokens, where)


_NOT_BOOL = 'Expected "true" or "false".'
_INTEGER = re.compile(r"0[xX][0-9a-fA-F]+|\d+")


def _value_refused(detail: str, tokens: str, index: int) -> str:
    """C++'s words for a value Python refuses once read (an integer out of range, a bool's
    value that is none): C++ names the token as written, and a bool's field."""
    token = _TOKEN.match(tokens, past_sign(tokens, index)).group()
    if detail != _NOT_BOOL or _INTEGER.fullmatch(token):
        return f"Integer out of range ({token})"
    if not re.match(r"[A-Za-z_]", token):   # C++ reads a bool as an integer or an identifier
        return f"Expected identifier, got: {token}"
    return invalid_bool(_field_before(tokens[:index]) or "?", token)


def _python_words(err: text_format.ParseError) -> str:
    """Python's error message alone, without its position and the source line it may quote."""
    detail = str(err)
    match = _ERROR_POSITION.match(detail)
    return _QUOTED_LINE.sub("", (detail[match.end():] if match else detail).strip(), count=1)


def _unknown_enum(match: re.Match, before: str) -> str:
    """C++'s words for Python's unknown enum value (``before``: the text before the value, which
    names its field), with the valid names."""
    enum_type = pb.DESCRIPTOR.pool.FindEnumTypeByName(match.group(2))
    field = _field_before(before)
    if field is None:
        return f"{match.group(1)} (valid: {', '.join(enum_type.values_by_name)})"
    return unknown_enum_value(field, match.group(3) or match.group(4), enum_type)


def _field_before(before: str) -> str | None:
    """The name of the field whose value (or list of values) ``before`` ends in."""
    field = _FIELD_BEFORE.search(before) or _LIST_FIELD_BEFORE.search(before)
    return field.group(1) if field else None


_NO_EXTENSIONS = re.compile(r'Message type "([\w.]+)" does not have extensions\.')
_EXTENSION_NAME = re.compile(rf"{GAPS}\w+(?:{GAPS}\.(?![0-9]){GAPS}\w+)*")   # '.1': a number


def _extension_error(tokens: str, index: int, message: str):
    """C++'s error for the extension ``[name]`` around ``index`` (Python's: "does not have
    extensions", at its last part): the name is unknown, at the token after ']'."""
    start = tokens.rfind("[", 0, index + 1)
    name = _EXTENSION_NAME.match(tokens, start + 1) if start >= 0 else None
    if name is None:
        return line_column(tokens, index), f'Message type "{message}" does not have extensions.'
    end = next_token(tokens, name.end())
    if tokens[end:end + 1] != "]":          # C++ reads the name, then wants the ']'
        found = _TOKEN.match(tokens, end).group()
        return line_column(tokens, end), f'Expected "]", found "{found}".'
    name = re.sub(GAPS, "", name.group())
    return (line_column(tokens, next_token(tokens, end + 1)),
            f'Extension "{name}" is not defined or is not an extension of "{message}".')


# a token as C++ reads it, where Python's parser named it: a string, an identifier (Python's
# runs on over '+' and '-'), a number (text_tokens' own, for the text before parsing, takes a
# sign and an unterminated string too)
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[A-Za-z_]\w*|[\w.][\w.+-]*|\S|')


# Python's parser's words -> C++'s (Caffe's), for the same error at the same place
_CPP_WORDS = [
    (re.compile(r'Expected "[}>]"\.'), "Expected identifier, got: "),   # the text ends
    (re.compile(r"Expected identifier or number, got (.*)\."), r"Expected identifier, got: \1"),
    (re.compile(r"Couldn't parse float: (.*)"), r"Expected double, got: \1"),
    (re.compile(r"Couldn't parse integer: -?\s*(.*)"), r"Expected integer, got: \1"),
    (re.compile(r"Expected string but found: '(.*)'"), r"Expected string, got: \1"),
    (re.compile(r'Message type "[\w.]+" should not have multiple "(\w+)" fields\.'),
     r'Non-repeated field "\1" is specified multiple times.'),
]


def _in_caffe_words(detail: str, tokens: str, where: tuple[int, int]) -> str:
    """Python's parser's words where C++'s (Caffe's) differ for the same error at the same
    place (a missing ':': C++ names the token it found)."""
    for python, cpp in _CPP_WORDS:
        if python.fullmatch(detail):
            return python.sub(cpp, detail)
    if EXPECTED_MARK.fullmatch(detail) or detail == "Expected identifier.":
        found = _TOKEN.match(tokens, text_index(tokens, *where)).group()
        return (f"Expected identifier, got: {found}" if detail == "Expected identifier." else
                f'{detail[:-1]}, found "{found}".')          # C++ names the token it found
    return detail



def _before(err: text_format.ParseError, tokens: str, syntax: TextSyntaxError) -> bool:
    """Whether C++ meets Python's error before ``syntax``, the tokenizer pass's: C++ reads
    tokens one by one, each read when the one before it is taken, so an error it finds only
    once it has taken its token (an unknown field name) comes after the next token's own
    reading (a character outside ASCII), but before what the parser finds at it (a '+')."""
    line, column = err.GetLine(), err.GetColumn()
    if line is None:
        return False
    start = past_sign(tokens, text_index(tokens, line, column or 1))
    if _NO_EXTENSIONS.fullmatch(_python_words(err)):    # C++ meets it past the name it reads
        start = text_index(tokens, *_extension_error(tokens, start, "")[0])
        return start < syntax.tokens_index or (start == syntax.tokens_index and
                                               not syntax.lexical)
    if any(words in _python_words(err) for words in AFTER_TOKEN):
        token = _TOKEN.match(tokens, start)
        start = next_token(tokens, token.end() if token else start)
        if start == syntax.tokens_index and not syntax.lexical:
            return True
    return start < syntax.tokens_index


def _format_parse_error(where, detail: str, text: str, filename: str, message) -> str:
    where = (filename if where is None else
             f"{filename}:{where[0]}:{cpp_column(text, *where)}")
    detail = _with_valid_names(detail) or "syntax error"
    if 'V1LayerParameter" has no field named "layer"' in detail:
        detail += f" (this is a V0 net from 2013; {_UPGRADE_HINT})"
    elif ("Expected string" in detail and isinstance(message, pb.NetParameter)
          and _ENUM_TYPE_LINE.search(text)):
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
    data = read_bytes(path, ".prototxt")
    try:
        return parse(decode_prototxt(data), str(path))
    except AllconvError as err:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):     # C++ stops at its first byte
            raise AllconvError(f"{err} (a UTF-16 text file, by its byte-order mark: save it as "
                               "UTF-8)") from None
        from runtime.caffemodel import binary_kind      # torch's import, on this path only
        kind = binary_kind(data) if _CONTROL.search(data) else None  # text has no such bytes
        if kind is not None:
            what = kind[1]
        elif len(data) >= 512 and len(_CONTROL.findall(data[:4096])) > len(data[:4096]) // 20:
            what = "perhaps a .caffemodel or .solverstate cut short"
        else:
            raise
        raise AllconvError(f"{path}: a binary file, {what}, not a text "
                           f"{message_cls.DESCRIPTOR.name} prototxt") from None


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


def _upgraded(upgrade, message, label: str) -> None:
    """``upgrade(message)``, its error prefixed with ``label`` (the file it came from)."""
    try:
        upgrade(message)
    except AllconvError as err:
        raise AllconvError(f"{label}: {err}") from None


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



