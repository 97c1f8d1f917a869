"""One backward rule for every ReLU of a net, for the length of a ``with`` block."""
from __future__ import annotations

import contextlib

from runtime.errors import AllconvError
from runtime.layers.relu import READS_INPUT, RULES, ReLU
from runtime.proto import pb

METHODS = RULES
GATED_BY_INPUT = READS_INPUT     # the methods a ReLU whose input is not positive blocks

# Layer types whose backward is one linear map for every input (ReLU: its deconvnet rule reads
# only the signal from above).
_INPUT_FREE = {"Convolution", "Deconvolution", "InnerProduct", "ReLU", "Dropout",
               "Split", "Concat", "Slice", "Flatten", "Reshape", "Crop", "Tile", "Im2col"}


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
    needs no image: the sources (Input, Data: where the signal ends), the linear layers (AVE
    pooling, Eltwise SUM, a learned Scale or Bias, Power of power 1, BatchNorm on its global
    statistics) and ReLU."""
    if not layer.bottoms:
        return True
    kind = layer.param.type
    if kind == "Pooling":
        return layer.method == pb.PoolingParameter.AVE
    if kind == "Eltwise":
        return layer.param.eltwise_param.operation == pb.EltwiseParameter.SUM
    if kind in ("Scale", "Bias"):
        return len(layer.bottoms) == 1
    if kind == "Power":
        return layer.param.power_param.power == 1
    if kind == "BatchNorm":
        return layer.use_global_stats
    return kind in _INPUT_FREE
