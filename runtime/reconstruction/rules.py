"""One backward rule for every ReLU of a net, for the length of a ``with`` block."""
from __future__ import annotations

import contextlib

from runtime.errors import AllconvError
from runtime.layers.relu import RULES, ReLU

METHODS = RULES


@contextlib.contextmanager
def relu_rule(net, method: str):
    """Give every ReLU layer of ``net`` (in-place, leaky, the class conv's) the backward rule
    ``method``; the previous rules come back on exit. Other layers backpropagate as usual."""
    if method not in METHODS:
        raise AllconvError(f"unknown method {method!r} (valid: {', '.join(METHODS)})")
    relus = [layer for layer in net.layers if isinstance(layer, ReLU)]
    before = [layer.rule for layer in relus]
    for layer in relus:
        layer.rule = method
    try:
        yield
    finally:
        for layer, rule in zip(relus, before):
            layer.rule = rule
