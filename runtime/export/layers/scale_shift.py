"""The constant factors around Power's, Exp's and Log's ONNX ops, each left out where Caffe's
value makes it the identity (a scale or factor of 1, a shift of 0)."""
from __future__ import annotations


def affine(graph, name: str, x: str, scale: float, shift: float) -> str:
    """``scale·x + shift``."""
    if scale != 1:
        x = graph.node("Mul", [x, graph.constant(f"{name}/scale", scale)], name=f"{name}/scale")
    if shift != 0:
        x = graph.node("Add", [x, graph.constant(f"{name}/shift", shift)], name=f"{name}/shift")
    return x


def op_times(graph, name: str, op: str, x: str, tops, factor: float) -> None:
    """``op(x)·factor`` into ``tops``."""
    if factor == 1:
        graph.node(op, [x], tops, name=name)
        return
    y = graph.node(op, [x], name=name)
    graph.node("Mul", [y, graph.constant(f"{name}/factor", factor)], tops, name=f"{name}/factor")
