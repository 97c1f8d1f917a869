"""One rule for the registries (layers, fillers, ONNX converters, solver types, datasets): a
name is registered once, as Caffe's LayerRegistry::AddCreator checks; a second registration is
an error naming it."""
from __future__ import annotations

from runtime.errors import AllconvError


def add_once(table: dict, name: str, entry, what: str):
    """``table[name] = entry``, refusing a ``name`` already in ``table``; returns ``entry``."""
    if name in table:
        old = table[name]
        by = getattr(old, "__qualname__", None)      # a class or function: where it is from
        raise AllconvError(f"{what} {name!r} is already registered"
                           + (f" (by {old.__module__}.{by})" if by else ""))
    table[name] = entry
    return entry
