"""Where protobuf's C++ tokenizer, which Caffe's ReadProtoFromTextFile uses, reads text format
otherwise than Python's, which parses here: a pass over the text before Python's parser.

Refused, as C++ refuses them: ``+`` outside strings and comments (``+1.5``, ``+inf``), a
number run into letters or ``_`` (``1_0``, ``0b10``, ``0o7``; Python reads ``1_0`` as 10),
an unknown escape in a string (``"\\z"``), a control character (a NUL in a comment too: C++
ends the comment at it, then refuses it), a character outside ASCII but in strings and
comments (a no-break space: "Interpreting non ascii codepoint 194."), a message closed by the
other bracket, a field named twice where it is not repeated (at its name, as C++ refuses it), a
``+`` or ``-`` run into a field's name (Python reads it as part of the name).
Taken, as C++ takes them: ``- 1.5`` (the sign and the number are two tokens there), a hex or
octal integer for a bool (``force_backward: 0x1``; Python takes those only for integers: they
are given in decimal, and refused for a float, as C++ refuses them), the ``\\?`` escape (``?``),
and bytes that are not UTF-8 inside a comment (a Latin-1 comment): they read as ``?``. Such
bytes in a string, or escapes that make them, are refused with their position (C++ takes
them; pycaffe cannot read the names they make); escapes that make UTF-8 text
(``"caf\\303\\251"``) are read as it, and a surrogate pair of ``\\u`` escapes as the one
code point C++ joins it into.
"""
from __future__ import annotations

import re

from google.protobuf.descriptor import FieldDescriptor

from runtime.errors import AllconvError

_ESCAPE = re.compile(r"\\(?:[abfnrtv\\?'\"]|[0-7]{1,3}|x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{4}"
                     r"|U[0-9A-Fa-f]{8})")
_HEX_ESCAPE = {"x": (1, "Expected hex digits for escape sequence."),
               "u": (4, "Expected four hex digits for \\u escape sequence."),
               "U": (8, "Expected eight hex digits up to 10ffff for \\U escape sequence")}
_NOT_UTF8 = "{} is not UTF-8 text (C++ keeps the bytes; pycaffe cannot read them either)"
_IDENTIFIER = re.compile(r"[A-Za-z_][0-9A-Za-z_]*")
_HEX = re.compile(r"0[xX][0-9A-Fa-f]*")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"(?:\.[0-9]*|[0-9]+(?:\.[0-9]*)?)([eE][+-]?)?")
_DIGITS = re.compile(r"[0-9]*")
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
# what C++ expects where a quoted string stands for a field's value of another kind
_NOT_STRING = {**{t: "integer" for t in (FieldDescriptor.CPPTYPE_INT32,
                                          FieldDescriptor.CPPTYPE_INT64,
                                          FieldDescriptor.CPPTYPE_UINT32,
                                          FieldDescriptor.CPPTYPE_UINT64)},
               **{t: "double" for t in _FLOATS}, FieldDescriptor.CPPTYPE_BOOL: "identifier",
               FieldDescriptor.CPPTYPE_ENUM: "integer or identifier"}
_VALUE_KINDS = {**_NOT_STRING, FieldDescriptor.CPPTYPE_STRING: "string"}
# what C++ expects where a '-' stands before a value that takes no sign
_NO_SIGN = {FieldDescriptor.CPPTYPE_UINT32: "integer", FieldDescriptor.CPPTYPE_UINT64: "integer",
            FieldDescriptor.CPPTYPE_BOOL: "identifier", FieldDescriptor.CPPTYPE_STRING: "string"}
# Python's "Expected ":"." and the like: C++ says what it found instead, where it found it
EXPECTED_MARK = re.compile(r'Expected "[:{,\]]"\.')
# Python's errors about a value that C++ reports at the value, the text's last token too
_AT_TOKEN = (", got", "but found", "Couldn't parse", "out of range")
# Python reports these where the token they name starts, C++ at the token after it
AFTER_TOKEN = ("has no field named", "has no value named", "has no value with number",
               'Expected "true" or "false"')
_TOKEN = re.compile(r"-?[ \t]*(?:[A-Za-z_]\w*|[\w.]+)|\"(?:[^\"\\\n]|\\.)*\"?|"
                    r"'(?:[^'\\\n]|\\.)*'?|\S")
GAPS = r"(?:\s|#[^\n]*)*"          # blanks and comments between tokens
_GAP = re.compile(GAPS)
_BLANK = " \t\r\n\v\f"
# the errors of C++'s tokenizer (the rest are its parser's)
_LEXICAL = ("Interpreting non ascii", "Invalid control characters", "Need space between",
            '"0x" must be', "Numbers starting with", '"e" must be', "Already saw decimal",
            "Unexpected end of string", "String literals cannot", "Hex and octal numbers")
_NAME_BEFORE = re.compile(rf"([A-Za-z_]\w*){GAPS}$")


class TextSyntaxError(AllconvError):
    """A text-format error at ``line``:``column`` (1-based), as protobuf reports them."""

    def __init__(self, text: str, index: int, message: str, token: int | None = None):
        self.line, self.column = line_column(text, index)
        self.detail = message
        self.token = index if token is None else token     # where the token C++ reads starts
        # C++'s tokenizer finds it in reading the token (else its parser, in taking it)
        self.lexical = message.startswith(_LEXICAL) or "escape" in message or \
            "UTF-8" in message
        super().__init__(f"{self.line}:{self.column}: {message}")


def decode_prototxt(data: bytes) -> str:
    """The file's text; bytes that are not UTF-8 stay as surrogates for ``caffe_tokens``."""
    return data.decode("utf-8", errors="surrogateescape")


def _is_foreign(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def _is_digit(char: str) -> bool:
    return len(char) == 1 and char in "0123456789"


def caffe_tokens(text: str, message) -> str:
    """``text``, a ``message`` (a descriptor) in text format, as Python's parser should see it
    to read what C++ reads (the same lines and columns outside strings, so positions hold), or
    a TextSyntaxError where C++ refuses it."""
    out = list(text)
    try:
        _Pass(text, message, out).run()
    except TextSyntaxError as err:
        err.tokens = "".join(out)           # what Python may parse up to the error
        err.tokens_index = len("".join(out[:err.token]))    # where its token is in them
        raise
    return "".join(out)


class _Pass:
    """``caffe_tokens``' pass over ``text``, writing into ``out`` (the text's characters). The
    first character of each token picks its handler (a string, a sign, a number, an
    identifier, a mark), which checks the token as C++ reads it and returns where the next
    one starts."""

    def __init__(self, text: str, message, out: list[str]):
        self.text, self.out = text, out
        self.messages, self.field = [message], None   # the enclosing messages; the field last named
        self.given = [set()]      # the non-repeated fields each message has been given
        self.opened = []          # the brackets open: "{", "<", "[" (a list), "e"
        self.outer = []           # the field of each message open
        # a value comes next (after ':' or in a list); a name was read; it was, before this token
        self.value = self.named = self.was_named = False
        self.name_place = False   # a field's name belongs here

    def run(self) -> None:
        text, i = self.text, 0
        while i < len(text):
            char = text[i]
            if char == "#" or char in _BLANK:
                i = _comment_end(text, i, self.out) if char == "#" else i + 1
                continue
            self.was_named, self.named = self.named, False
            # not a value, nor a name's missing ':', nor in brackets
            self.name_place = not (self.value or self.was_named or
                                   (self.opened and self.opened[-1] in "[e"))
            i = self._handler(char, i)(i)

    def _handler(self, char: str, i: int):
        if char in "\"'":
            return self._string
        if char == "+":
            return self._plus
        if char == "-":
            return self._minus
        if _is_digit(char) or (char == "." and _is_digit(self.text[i + 1:i + 2])):
            return self._number
        return self._identifier if _IDENTIFIER.match(self.text, i) else self._mark

    def _string(self, i: int) -> int:
        text, field = self.text, self.field
        try:
            end = _string_end(text, i, self.out)
        except TextSyntaxError as err:
            err.token = i
            raise
        if self.value and field and field.cpp_type in _NOT_STRING:
            raise TextSyntaxError(text, i, f"Expected {_NOT_STRING[field.cpp_type]}, got: "
                                           f"{text[i:end]}")
        self.value = False
        return end

    def _plus(self, i: int) -> int:
        """No token of C++'s starts with it: always an error."""
        text, field, value = self.text, self.field, self.value
        if self.name_place:
            raise TextSyntaxError(text, i, "Expected identifier, got: +")
        self._after_list_value(i)
        if self.was_named or _is_message(field):
            raise _after_name(text, i, self.messages[-1], field)
        kind = _VALUE_KINDS.get(field.cpp_type, "a value") if value and field else \
            _expected(field, value)
        raise TextSyntaxError(text, i, f"Expected {kind}, got: +")

    def _minus(self, i: int) -> int:
        text, out, field = self.text, self.out, self.field
        n, j = len(text), i + 1
        while j < n and (text[j] in _BLANK or text[j] == "#"):   # C++: tokens apart
            j = _comment_end(text, j, out) if text[j] == "#" else j + 1
        if self.name_place:
            raise TextSyntaxError(text, i, "Expected identifier, got: -")
        self._after_list_value(i)
        if self.was_named or _is_message(field):     # C++ wants a ':' or '{' (or '<')
            raise _after_name(text, i, self.messages[-1], field)
        no_sign = _NO_SIGN.get(field.cpp_type) if field else None
        if no_sign:
            raise TextSyntaxError(text, i, f"Expected {no_sign}, got: -")
        if text[j:j + 1] in ("-", "[", "]", ""):    # the sign is a token: a number must follow
            raise TextSyntaxError(text, j, f"Expected {_expected(field, True)}, "   # ("": the
                                           f"got: {text[j:j + 1]}", token=i)        # text ends)
        if field and field.cpp_type == FieldDescriptor.CPPTYPE_ENUM and j < n and \
                not _is_digit(text[j]):     # C++ reads a signed integer after the sign
            raise TextSyntaxError(text, j, f"Expected integer, got: "
                                           f"{_TOKEN.match(text, j).group()}", token=i)
        if j > i + 1 and j < n and (_is_digit(text[j]) or text[j] == "." or
                                    _IDENTIFIER.match(text, j)):
            if text[j - 1] == "\n":    # keep the lines: the sign goes before the number
                out[i], out[j] = " ", "-" + out[j]
            else:                       # and the columns, in the blank before it
                out[i], out[j - 1] = " ", "-"
        return j

    def _after_list_value(self, i: int) -> None:
        """A sign after a list's value: C++ wants the ',' between values there."""
        if not self.value and self.opened and self.opened[-1] == "[":
            raise TextSyntaxError(self.text, i, f'Expected ",", found "{self.text[i]}".')

    def _number(self, i: int) -> int:
        text, field = self.text, self.field
        try:
            end, based = _number_end(text, i)
        except TextSyntaxError as err:
            if self.name_place and not err.lexical:    # C++'s parser meets the number first
                raise TextSyntaxError(text, i, "Expected identifier, got: "
                                               f"{text[i:err.token]}") from None
            err.token = i
            raise
        if self.name_place:
            raise TextSyntaxError(text, i, f"Expected identifier, got: {text[i:end]}")
        if based:
            _integer_for(field, text[i:end], text, i, self.out)
        elif field and field.cpp_type == FieldDescriptor.CPPTYPE_ENUM and \
                not _DIGITS.fullmatch(text[i:end]):
            raise TextSyntaxError(text, i, "Expected integer or identifier, got: "
                                           f"{text[i:end]}")
        self.value = False
        return end

    def _identifier(self, i: int) -> int:
        text, field, opened = self.text, self.field, self.opened
        end = _IDENTIFIER.match(text, i).end()
        if self.value and field and field.cpp_type in _FLOATS and \
                text[i:end].lower() not in ("inf", "infinity", "nan"):   # C++ reads no on
            raise TextSyntaxError(text, i, f"Expected double, got: {text[i:end].lower()}")
        if text[end:end + 1] == "." and _is_digit(text[end + 1:end + 2]):
            raise TextSyntaxError(text, end, "Need space between identifier and decimal "
                                             "point.")
        if self.was_named:     # C++ wants the name's ':' or '{' here
            raise _after_name(text, i, self.messages[-1], field)
        if not self.value:     # a scalar value is one token: a field name follows it, as in C++
            self.field = field = self.messages[-1] and \
                self.messages[-1].fields_by_name.get(text[i:end])
            self.named = not opened or opened[-1] != "e"
            if self.named and text[end:end + 1] in ("+", "-"):     # Python reads on past them
                raise _after_name(text, end, self.messages[-1], field, token=i)
            if self.named:
                _given_once(text, end, field, self.given[-1])
        elif field and text[end:end + 1] in ("+", "-"):     # Python reads on past them
            raise _glued_value(text, i, end, field)
        self.value = False
        return end

    def _mark(self, i: int) -> int:
        """Punctuation (brackets, ':', ',', ';'), or a character C++ refuses."""
        text, field, opened, value = self.text, self.field, self.opened, self.value
        char = text[i]
        if _is_foreign(char):
            raise TextSyntaxError(text, i, "Interpreting non ascii codepoint "
                                           f"{ord(char) - 0xdc00} (not UTF-8: not a "
                                           "text prototxt?)")
        if char > "\x7f":          # a letter or a blank: C++ reads ASCII only
            raise TextSyntaxError(text, i, "Interpreting non ascii codepoint "
                                           f"{char.encode('utf-8')[0]}.")
        if char < " " and char not in "\t\n\v\f\r":
            raise TextSyntaxError(text, i, "Invalid control characters encountered in text "
                                           "(not a text prototxt?)")
        repeated = field is not None and field.is_repeated
        listed = char == "[" and (value or self.was_named) and repeated     # C++ reads a list
        ended = char == "]" and bool(opened) and opened[-1] == "["
        if value and field and field.cpp_type in _VALUE_KINDS and not (listed or ended):
            raise TextSyntaxError(text, i, f"Expected {_VALUE_KINDS[field.cpp_type]}, "
                                           f"got: {char}")      # ':', ';', '}' as a value
        if char in "{<":
            self.messages.append(field.message_type if field else None)
            self.given.append(set())
            opened.append(char)
            self.outer.append(field)
        elif char in "}>" and len(self.messages) > 1:
            if opened and opened[-1] in "{<" and char != _CLOSING[opened[-1]] and \
                    not self.was_named:      # (a name's missing ':' comes first)
                raise TextSyntaxError(text, i, f'Expected "{_CLOSING[opened[-1]]}", '
                                               f'found "{char}".')
            self.messages.pop()
            self.given.pop()
            if opened:
                opened.pop()
            self.field = self.outer.pop()       # the message's own field (a list's, say)
        elif char == "[":         # a list, else an extension's name
            opened.append("[" if listed else "e")
        elif char == "]" and opened and opened[-1] in "[e":
            opened.pop()
        self.value = char == ":" or (char == "," and bool(opened) and opened[-1] == "[") or (
            char == "[" and opened[-1] == "[")
        return i + 1


_CLOSING = {"{": "}", "<": ">"}
_BOOL_WORDS = ("true", "True", "t", "false", "False", "f")


def _after_name(text: str, i: int, message, field, token: int | None = None) -> TextSyntaxError:
    """C++'s error at ``text[i]``, a mark where the ':' or '{' after a field's name belongs
    (``field`` of ``message``, None where the name is unknown; ``token``: the name's start,
    where the mark is run into it)."""
    if field is None and message is not None:
        name = _NAME_BEFORE.search(text, 0, i).group(1)
        return TextSyntaxError(text, i, f'Message type "{message.full_name}" has no field '
                                        f'named "{name}".', token)
    mark, word = "{" if _is_message(field) else ":", _IDENTIFIER.match(text, i)
    found = word.group() if word else text[i]
    return TextSyntaxError(text, i, f'Expected "{mark}", found "{found}".', token)


def _is_message(field) -> bool:
    return field is not None and field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE


def _glued_value(text: str, i: int, end: int, field) -> TextSyntaxError:
    """C++'s error for the identifier ``text[i:end]``, a value of ``field`` with a '+' or '-'
    run into it: the value's own, or, where it is one, the mark's (a field's name belongs
    there)."""
    word, kind = text[i:end], field.cpp_type
    if _is_message(field):
        return _after_name(text, i, None, field)
    if kind == FieldDescriptor.CPPTYPE_ENUM and word not in field.enum_type.values_by_name:
        message = unknown_enum_value(field.name, word, field.enum_type)
    elif kind == FieldDescriptor.CPPTYPE_BOOL and word not in _BOOL_WORDS:
        message = invalid_bool(field.name, word)
    elif kind in (FieldDescriptor.CPPTYPE_ENUM, FieldDescriptor.CPPTYPE_BOOL, *_FLOATS):
        return TextSyntaxError(text, end, f"Expected identifier, got: {text[end]}", token=i)
    else:
        return TextSyntaxError(text, i, f"Expected {_VALUE_KINDS[kind]}, got: {word}")
    return TextSyntaxError(text, end, message, token=i)


def unknown_enum_value(field: str, word: str, enum_type) -> str:
    """C++'s words for ``word``, no value of ``enum_type``, given to ``field``, with the valid
    names."""
    return (f'Unknown enumeration value of "{word}" for field "{field}". '
            f'(valid: {", ".join(enum_type.values_by_name)})')


def invalid_bool(field: str, word: str) -> str:
    """C++'s words for ``word``, an identifier that is no bool, given to ``field``."""
    return f'Invalid value for boolean field "{field}". Value: "{word}".'


def _given_once(text: str, end: int, field, given: set) -> None:
    """Note a non-repeated ``field`` named before ``end``; a second time, C++'s error at the
    token after its name."""
    if field is None or field.is_repeated:
        return
    if field.name in given:
        raise TextSyntaxError(text, next_token(text, end), f'Non-repeated field "{field.name}" '
                                                           "is specified multiple times.")
    given.add(field.name)


def _expected(field, value: bool) -> str:
    """What C++ expects here: ``field``'s kind of value (an enum's signed number, for a sign),
    or a field's name."""
    if not value:
        return "identifier"
    if field is None or field.cpp_type not in _VALUE_KINDS:
        return "a value"
    return "integer" if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM else \
        _VALUE_KINDS[field.cpp_type]


def _comment_end(text: str, i: int, out: list[str]) -> int:
    """The index of the end of the comment at ``i`` (its line's end); a NUL in it refused (C++
    ends the comment there, then refuses it), bytes that are not UTF-8 made ``?`` in ``out``."""
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    for j in range(i, end):
        if text[j] == "\0":
            raise TextSyntaxError(text, j, "Invalid control characters encountered in text.")
        if _is_foreign(text[j]):
            out[j] = "?"
    return end


def _number_end(text: str, i: int) -> tuple[int, bool]:
    """C++'s ConsumeNumber from ``i``: the index after the number, and whether it is a hex or
    octal integer; a TextSyntaxError at the character where C++ stops."""
    after = lambda j: text[j:j + 1]      # noqa: E731  ("" past the end)
    if text.startswith(("0x", "0X"), i):
        end, based, is_float = _HEX.match(text, i).end(), True, False
        if end == i + 2:
            raise TextSyntaxError(text, end, '"0x" must be followed by hex digits.')
    elif text[i] == "0" and _is_digit(after(i + 1)):
        end, based, is_float = _OCTAL.match(text, i).end(), True, False
        if _is_digit(after(end)):
            raise TextSyntaxError(text, end, "Numbers starting with leading zero must be in "
                                             "octal.")
    else:
        match = _DECIMAL.match(text, i)
        end, based, is_float = match.end(), False, "." in match.group() or bool(match.group(1))
        if match.group(1):
            if not _is_digit(after(end)):
                raise TextSyntaxError(text, end, '"e" must be followed by exponent.')
            end = _DIGITS.match(text, end).end()
        if after(end) in ("f", "F"):
            end, is_float = end + 1, True
    if _IDENTIFIER.match(text, end):
        raise TextSyntaxError(text, end, "Need space between number and identifier.")
    if after(end) in ("+", "-"):       # a token of its own in C++; Python's number takes it
        raise TextSyntaxError(text, end, f"Expected identifier, got: {after(end)}")
    if after(end) == ".":
        raise TextSyntaxError(text, end, "Already saw decimal point or exponent; can't have "
                                         "another one." if is_float else
                                         "Hex and octal numbers must be integers.")
    return end, based


def _integer_for(field, token: str, text: str, i: int, out: list[str]) -> None:
    """A hex or octal ``token`` at ``i``, the value of ``field``: refused for a float, and for
    a bool past 1, as C++ refuses them; a bool's written in decimal (Python takes that)."""
    if field is None:
        return
    if field.cpp_type in _FLOATS:
        raise TextSyntaxError(text, i, f"Expect a decimal number, got: {token}")
    value = int(token, 16 if token[1] in "xX" else 8)
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        if value > 1:
            raise TextSyntaxError(text, i, f"Integer out of range ({token})")
        out[i:i + len(token)] = str(value).ljust(len(token))


def _string_end(text: str, start: int, out: list[str]) -> int:
    """The index after the string literal at ``start``; its escapes checked, the bytes it
    stands for checked to be UTF-8 text (escaped bytes too: ``\\303\\251`` is "é"), and
    ``\\?`` made ``?`` in ``out`` (Python's unescaping keeps the backslash), a blank after the
    closing quote for each, so that what follows keeps its column."""
    quote, i, n, dropped = text[start], start + 1, len(text), 0
    value, places = bytearray(), []     # the string's bytes, and where each one is written
    escaped_high = False                # an escape wrote a byte past ASCII
    while i < n and text[i] not in (quote, "\n"):
        at = i
        if text[i] == "\0":        # the end of C++'s buffer
            raise TextSyntaxError(text, i, "Unexpected end of string.")
        if text[i] == "\\":
            match = _ESCAPE.match(text, i)
            if not match:
                _refuse_escape(text, i)
            if match.group() == "\\?":
                out[i], dropped = "", dropped + 1
            pair = _SURROGATE_PAIR.match(text, i)
            if pair:        # C++ joins them into one code point; Python takes it as \U
                code = (0x10000 + (int(pair.group(1), 16) - 0xD800 << 10)
                        + int(pair.group(2), 16) - 0xDC00)
                out[i:pair.end()] = [f"\\U{code:08x}"] + [""] * (pair.end() - i - 1)
                written, dropped, i = chr(code).encode("utf-8"), dropped + 2, pair.end()
            else:
                written = _escaped_bytes(match.group())
                if written is None:
                    raise TextSyntaxError(text, i, _NOT_UTF8.format(
                        f"the escape {match.group()}") if int(match.group()[2:], 16) < 0x110000
                        else f"the escape {match.group()} is past U+10FFFF (C++ keeps its "
                             "characters as they are written; this parser refuses it)")
                if match.group()[1].isdigit() and int(match.group()[1:], 8) > 0o377:
                    # C++ wraps it to a byte; Python refuses it: the same byte, 3 digits
                    out[i:match.end()] = list(f"\\{written[0]:03o}")
                i = match.end()
        elif _is_foreign(text[i]):
            raise TextSyntaxError(text, i, _NOT_UTF8.format("a byte of this string") if not
                                  escaped_high else "a byte of this string that is not UTF-8 "
                                  "on its own, written raw beside escaped bytes: this parser "
                                  "reads it alone; write the character as UTF-8 text or as "
                                  "escapes")
        else:
            written, i = text[i].encode("utf-8"), i + 1
        value += written
        places += [at] * len(written)
        escaped_high = escaped_high or (text[at] == "\\" and max(written, default=0) > 0x7F)
    if i == n:
        raise TextSyntaxError(text, i, "Unexpected end of string.")
    if text[i] == "\n":
        raise TextSyntaxError(text, i, "String literals cannot cross line boundaries.")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as err:       # escaped bytes that make no UTF-8 text
        at = places[err.start]
        raise TextSyntaxError(text, at, _NOT_UTF8.format(
            f"the escape {_ESCAPE.match(text, at).group()}")) from None
    out[i] = quote + " " * dropped
    return i + 1


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


def _escaped_bytes(escape: str) -> bytes | None:
    """The bytes a string escape writes (C++ writes an octal or hex byte as it is, \\u and
    \\U as UTF-8), or None for a surrogate or a code point past 0x10ffff, which are no text."""
    kind, digits = escape[1], escape[2:]
    if kind in "uU":
        value = int(digits, 16)
        return None if 0xD800 <= value < 0xE000 or value >= 0x110000 else \
            chr(value).encode("utf-8")
    if kind == "x":
        return bytes([int(digits, 16)])
    if kind.isdigit():
        return bytes([int(escape[1:], 8) & 0xFF])
    return bytes([_SIMPLE_ESCAPES.get(kind, ord(kind))])


def _refuse_escape(text: str, i: int) -> None:
    """The TextSyntaxError of the escape at ``i`` that C++ refuses, at the character where it
    stops: a hex escape without its digits, or an unknown one."""
    kind = text[i + 1:i + 2]
    if kind in _HEX_ESCAPE:
        digits, message = _HEX_ESCAPE[kind]
        j = i + 2
        while j < i + 2 + digits and text[j:j + 1] in tuple("0123456789abcdefABCDEF"):
            j += 1
        raise TextSyntaxError(text, j, message)
    raise TextSyntaxError(text, i + 1, "Invalid escape sequence in string literal.")


def caffe_position(tokens: str, line: int, column: int, detail: str) -> tuple[int, int]:
    """Where C++ reports the error that Python's parser reports at ``line``:``column`` of
    ``tokens``: past the field name or value it names (C++ has read it; not a bool's number,
    which C++ checks before it reads it), at the ':' before a repeated field's value, or at the
    end of the text where nothing but blanks is left (but at a last token a ':' is missing
    before)."""
    index = text_index(tokens, line, column)
    if "parse integer" in detail or "range" in detail:
        index = past_sign(tokens, index)
    if "should not have multiple" in detail:
        before = tokens[:index].rstrip()
        index = len(before) - 1 if before.endswith(":") else index
    else:
        token = _TOKEN.match(tokens, index)
        after = next_token(tokens, token.end() if token else index)
        unread = token and detail.startswith('Expected "true"') and \
            token.group()[:1] in tuple("0123456789.")    # a bool's number: C++ checks it first
        if (token and not unread and any(what in detail for what in AFTER_TOKEN)
                or not unread and after >= len(tokens) and not EXPECTED_MARK.fullmatch(detail)
                and not any(words in detail for words in _AT_TOKEN)):   # C++ names the token
            index = min(after, len(tokens))
    return line_column(tokens, index)


def next_token(text: str, index: int) -> int:
    """Where the token after blanks and comments from ``index`` starts."""
    return _GAP.match(text, index).end()


def line_column(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[index]``."""
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def cpp_column(text: str, line: int, column: int) -> int:
    """The column C++'s tokenizer reports for 1-based ``line``:``column`` of ``text`` (a
    column in characters): it counts a line's bytes and moves a tab on to the next multiple of
    8."""
    start, count = text_index(text, line, 1), 0
    for char in text[start:start + column - 1]:
        count += 8 - count % 8 if char == "\t" else len(char.encode("utf-8", "surrogateescape"))
    return count + 1


def text_column(text: str, tokens: str, line: int, column: int) -> int:
    """The column in ``text`` of ``line``:``column`` of ``caffe_tokens``' ``tokens``: one less
    past a sign that the pass moved onto its number's line (a number first on its line)."""
    first = text[text_index(text, line, 1):][:1]      # the number the sign went before
    moved = first not in _BLANK and tokens[text_index(tokens, line, 1):].startswith("-" + first)
    return column - 1 if moved and column > 1 else column


def text_index(text: str, line: int, column: int) -> int:
    """The index of the 1-based ``line``:``column`` of ``text``."""
    return sum(len(row) + 1 for row in text.split("\n")[:line - 1]) + column - 1


def past_sign(text: str, index: int) -> int:
    """``index``, or past the '-' there and the blanks and comments after it (a token of its
    own in C++)."""
    return next_token(text, index + 1) if text[index:index + 1] == "-" else index
