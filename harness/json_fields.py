"""The fields a reader takes from a JSON file the harness wrote (run.json, result.json,
metrics.jsonl, a row's result), each with the `Kind` of value it holds; `checked_fields`
names the file and the field of one that is missing or of another kind."""
from __future__ import annotations

import json
import math

from runtime.errors import AllconvError


class Kind:
    """What a field holds: ``name`` (and ``plural``) for the error,
    ``holds(value)``."""

    def __init__(self, name: str, plural: str, holds, optional: bool = False):
        self.name, self.plural, self.holds, self.optional = name, plural, holds, optional

    def list(self) -> "Kind":
        return Kind(f"a list of {self.plural}", f"lists of {self.plural}",
                    lambda v: isinstance(v, list) and all(self.holds(x) for x in v))

    def in_object(self) -> "Kind":
        return Kind(f"an object of {self.plural}", f"objects of {self.plural}",
                    lambda v: isinstance(v, dict) and all(self.holds(x) for x in v.values()))

    def or_none(self) -> "Kind":
        return Kind(f"{self.name} or null", f"{self.plural} or nulls",
                    lambda v: v is None or self.holds(v))

    def or_absent(self) -> "Kind":
        return Kind(self.name, self.plural, self.holds, optional=True)


def _plain(*types):
    return lambda v: isinstance(v, types) and not isinstance(v, bool)


def _finite(v) -> bool:
    return _plain(int, float)(v) and math.isfinite(v)


NUMBER = Kind("a number", "numbers", _finite)
INTEGER = Kind("an integer", "integers", _plain(int))
TEXT = Kind("a string", "strings", _plain(str))
NAME = Kind("a name (one line)", "names (one line each)",
            lambda v: TEXT.holds(v) and v.strip() != "" and v.splitlines() == [v])
PERCENT = Kind("a percentage", "percentages", lambda v: NUMBER.holds(v) and 0 <= v <= 100)
SHARE = Kind("a share", "shares", lambda v: NUMBER.holds(v) and 0 <= v <= 1)
OBJECT = Kind("an object", "objects", lambda v: isinstance(v, dict))
FLAG = Kind("true or false", "trues or falses", lambda v: isinstance(v, bool))
COUNT = Kind("a positive integer", "positive integers", lambda v: INTEGER.holds(v) and v > 0)
POSITIVE = Kind("a positive number", "positive numbers", lambda v: NUMBER.holds(v) and v > 0)
AMOUNT = Kind("a number of at least 0", "numbers of at least 0",
              lambda v: NUMBER.holds(v) and v >= 0)
SECONDS = Kind("a number of seconds", "numbers of seconds", AMOUNT.holds)


def one_of(*values: str) -> Kind:
    """A string among ``values``."""
    return Kind(f"one of {', '.join(values)}", f"strings among {', '.join(values)}",
                lambda v: v in values)


def checked_fields(path, data: dict, fields: dict, where: str = "",
                   writer: str = "the run") -> dict:
    """``data`` read from ``path``, each of ``fields`` holding its `Kind` (present unless the
    kind is optional), or one line naming the file, the field and its ``writer``."""
    for key, kind in fields.items():
        if key not in data:
            if kind.optional:
                continue
            raise AllconvError(f"{path}{where}: no {key!r} field; was it edited? ({writer} "
                               "writes it)")
        if not kind.holds(data[key]):
            shown = json.dumps(data[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise AllconvError(f"{path}{where}: its {key!r} field is {shown}, not "
                               f"{kind.name}; was it edited? ({writer} writes it)")
    return data
