"""One rule for the type registries (layers, fillers, ONNX converters): a name is registered
once, as Caffe's LayerRegistry::AddCreator checks; a second registration is an error naming it."""
from __future__ import annotations

from runtime.errors import AllconvError


def add_once(table: dict, name: str, entry, what: str):
    """``table[name] = entry``, refusing a ``name`` already in ``table``; returns ``entry``."""
    if name in table:
        old = table[name]
        raise AllconvError(f"{what} {name!r} is already registered (by "
                           f"{getattr(old, '__module__', '?')}."
                           f"{getattr(old, '__qualname__', old)})")
    table[name] = entry
    return entry
