"""Sigmoid -> 1 / (1 + e^−x), Caffe's formula: onnxruntime's own Sigmoid is far off below
x ≈ −16 (5.96e-8 at −16, where Caffe gives 1.125e-7; 0 from −18), which a Log or an ArgMax
above it shows."""
from __future__ import annotations

from runtime.export.registry import converter


def logistic(graph, x: str, name: str, outputs=None) -> str:
    """Append σ(x) as Caffe computes it; returns its value's name (``outputs`` where given)."""
    exp = graph.node("Exp", [graph.node("Neg", [x], name=f"{name}/neg")], name=f"{name}/exp")
    plus_one = graph.node("Add", [exp, graph.constant(f"{name}/one", 1.0)], name=f"{name}/add")
    return graph.node("Reciprocal", [plus_one], outputs, name=name)


@converter("Sigmoid")
def sigmoid(graph, layer, bottoms, tops, shapes):
    logistic(graph, bottoms[0], layer.name, tops)
