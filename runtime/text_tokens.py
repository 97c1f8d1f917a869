"""Where protobuf's C++ tokenizer, which Caffe's ReadProtoFromTextFile uses, reads text format
otherwise than Python's, which parses here: a pass over the text before Python's parser.

Refused, as C++ refuses them: ``+`` outside strings and comments (``+1.5``, ``+inf``), a
number run into letters or ``_`` (``1_0``, ``0b10``, ``0o7``; Python reads ``1_0`` as 10),
an unknown escape in a string (``"\\z"``), a NUL (C++ ends a comment at it, then refuses it).
Taken, as C++ takes them: ``- 1.5`` (the sign and the number are two tokens there), a hex or
octal integer for a bool (``force_backward: 0x1``; Python takes those only for integers: they
are given in decimal, and refused for a float, as C++ refuses them), the ``\?`` escape (``?``),
and bytes that are not UTF-8 inside a comment (a Latin-1 comment): they read as ``?``. Such
bytes in a string are refused, with their position.
"""
from __future__ import annotations

import re

from google.protobuf.descriptor import FieldDescriptor

from runtime.errors import AllconvError

_ESCAPE = re.compile(r"\\(?:[abfnrtv\\?'\"]|[0-7]{1,3}|x[0-9A-Fa-f]+|u[0-9A-Fa-f]{4}"
                     r"|U[0-9A-Fa-f]{8})")
_NUMBER_TAIL = re.compile(r"[0-9A-Za-z_.]*(?:(?<=[eE])[+-][0-9A-Za-z_.]*)?")
_IDENTIFIER = re.compile(r"[A-Za-z_][0-9A-Za-z_]*")
_HEX_OR_OCTAL = re.compile(r"0[xX][0-9A-Fa-f]+|0[0-7]+")
_FIELD_NAME_END = re.compile(r"\s*[:{<]")
_BLANK = " \t"


class TextSyntaxError(AllconvError):
    """A text-format error at ``line``:``column`` (1-based), as protobuf reports them."""

    def __init__(self, text: str, index: int, message: str):
        self.line = text.count("\n", 0, index) + 1
        self.column = index - text.rfind("\n", 0, index)
        self.detail = message
        super().__init__(f"{self.line}:{self.column}: {message}")


def decode_prototxt(data: bytes) -> str:
    """The file's text; bytes that are not UTF-8 stay as surrogates for ``caffe_tokens``."""
    return data.decode("utf-8", errors="surrogateescape")


def _is_foreign(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def caffe_tokens(text: str, message) -> str:
    """``text``, a ``message`` (a descriptor) in text format, as Python's parser should see it
    to read what C++ reads (the same lines and columns outside strings, so positions hold), or
    a TextSyntaxError where C++ refuses it."""
    out, i, n = list(text), 0, len(text)
    messages, field = [message], None     # the enclosing messages; the field last named
    while i < n:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            for j in range(i, end):
                if text[j] == "\0":
                    raise TextSyntaxError(text, j, "Invalid control characters encountered "
                                                   "in text.")
                if _is_foreign(text[j]):
                    out[j] = "?"
            i = end
        elif char in "\"'":
            i = _string_end(text, i, out)
        elif char == "+":
            raise TextSyntaxError(text, i, "'+' is not text-format syntax (a number takes "
                                           "only '-')")
        elif char == "-":
            j = i + 1
            while j < n and text[j] in _BLANK:
                j += 1
            if j > i + 1 and j < n and (text[j].isdigit() or text[j] == "." or
                                        _IDENTIFIER.match(text, j)):
                out[i], out[j - 1] = " ", "-"
            i = j
        elif char.isdigit() or (char == "." and text[i + 1:i + 2].isdigit()):
            end = _NUMBER_TAIL.match(text, i).end()
            token = text[i:end]
            prefixed = token[:2].lower() in ("0b", "0o")
            if prefixed or "_" in token:     # C++ points at the letter that ends the number
                raise TextSyntaxError(text, i + (1 if prefixed else token.index("_")),
                                      f"Need space between number and identifier ({token!r} "
                                      "is not a number here)")
            if _HEX_OR_OCTAL.fullmatch(token):
                _integer_for(field, token, text, i, out)
            i = end
        elif _IDENTIFIER.match(text, i):
            end = _IDENTIFIER.match(text, i).end()
            if _FIELD_NAME_END.match(text, end):     # not a value (an enum's, true)
                field = messages[-1] and messages[-1].fields_by_name.get(text[i:end])
            i = end
        else:
            if _is_foreign(char):
                raise TextSyntaxError(text, i, "not a text prototxt (invalid UTF-8)")
            if char in "{<":
                messages.append(field.message_type if field else None)
            elif char in "}>" and len(messages) > 1:
                messages.pop()
            i += 1
    return "".join(out)


def _integer_for(field, token: str, text: str, i: int, out: list[str]) -> None:
    """A hex or octal ``token`` at ``i``, the value of ``field``: refused for a float as C++
    refuses it; for a bool, written in decimal where it fits (Python takes it as an int)."""
    if field is None:
        return
    if field.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        raise TextSyntaxError(text, i, f"Expect a decimal number, got: {token}")
    decimal = str(int(token, 16 if token[1] in "xX" else 8))
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL and len(decimal) <= len(token):
        out[i:i + len(token)] = decimal.ljust(len(token))


def _string_end(text: str, start: int, out: list[str]) -> int:
    """The index after the string literal at ``start``; its escapes and bytes checked, and
    ``\?`` made ``?`` in ``out`` (Python's unescaping keeps the backslash), a blank after the
    closing quote for each, so that what follows keeps its column."""
    quote, i, n, dropped = text[start], start + 1, len(text), 0
    while i < n and text[i] not in (quote, "\n"):
        if text[i] == "\\":
            match = _ESCAPE.match(text, i)
            if not match:
                raise TextSyntaxError(text, i + 1, "Invalid escape sequence in string literal.")
            if match.group() == "\\?":
                out[i], dropped = "", dropped + 1
            i = match.end()
            continue
        if _is_foreign(text[i]):
            raise TextSyntaxError(text, i, "invalid UTF-8 in a string")
        i += 1
    if i < n and text[i] == quote:
        out[i] = quote + " " * dropped
    return i + 1
