"""One rule for every registry (layers, fillers, ONNX converters, solver types and classes, lr
policies, datasets, variants, pipelines): a name is registered once, as Caffe's
LayerRegistry::AddCreator checks; a second registration is an error naming it. An unknown name
is answered with the nearest ones (``did_you_mean``)."""
from __future__ import annotations

import difflib

from runtime.errors import AllconvError, printable


def add_once(table: dict, name: str, entry, what: str):
    """``table[name] = entry``, refusing a ``name`` already in ``table``; returns ``entry``."""
    if name in table:
        old = table[name]
        by = getattr(old, "__qualname__", None)      # a class or function: where it is from
        raise AllconvError(f"{what} {name!r} is already registered"
                           + (f" (by {old.__module__}.{by})" if by else ""))
    table[name] = entry
    return entry


def did_you_mean(name: str, names) -> str:
    """" (did you mean A, B?)" for the registered ``names`` nearest to an unknown ``name``
    (up to three, by difflib's ratio, 0.6 or more; control characters escaped), else ""."""
    near = difflib.get_close_matches(name.lower(), [n.lower() for n in names], 3, 0.6)
    spelled = {n.lower(): n for n in names}
    return f" (did you mean {', '.join(printable(spelled[n]) for n in near)}?)" if near else ""
