"""BNLL -> Relu(x) + Softplus(−|x|): Caffe's formula, x + log(1 + e^−x) for x > 0 and
log(1 + eˣ) otherwise, whose exponent never overflows (onnxruntime's float16 Softplus of x is
infinite from x ≈ 88.7)."""
from __future__ import annotations

from runtime.export.registry import converter


@converter("BNLL")
def bnll(graph, layer, bottoms, tops, shapes):
    x, name = bottoms[0], layer.name
    magnitude = graph.node("Abs", [x], name=f"{name}/abs")
    tail = graph.node("Softplus", [graph.node("Neg", [magnitude], name=f"{name}/neg")],
                      name=f"{name}/softplus")
    graph.node("Add", [graph.node("Relu", [x], name=f"{name}/relu"), tail], tops, name=name)
