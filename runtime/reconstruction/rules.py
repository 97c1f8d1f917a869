"""One backward rule for every ReLU of a net, for the length of a ``with`` block."""
from __future__ import annotations

import contextlib

from runtime.errors import AllconvError
from runtime.layers.relu import READS_INPUT as GATED_BY_INPUT   # what a non-positive input blocks
from runtime.layers.relu import RULES as METHODS
from runtime.layers.relu import ReLU

__all__ = ["GATED_BY_INPUT", "METHODS", "backward_ignores_input", "relu_rule"]


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


def backward_ignores_input(layer) -> bool:
    """Whether the deconvnet signal passes ``layer`` the same way for every input, so that it
    needs no image: a source (Input, Data: where the signal ends) or a layer that says so
    (`Layer.backward_ignores_input`: the linear layers and ReLU)."""
    return not layer.bottoms or layer.backward_ignores_input
