"""``affine``: the ``scale·x + shift`` that Power and Log start with, leaving out a scale of 1
and a shift of 0 as Caffe does (shared by their converters)."""
from __future__ import annotations


def affine(graph, name: str, x: str, scale: float, shift: float) -> str:
    if scale != 1:
        x = graph.node("Mul", [x, graph.constant(f"{name}/scale", scale)], name=f"{name}/scale")
    if shift != 0:
        x = graph.node("Add", [x, graph.constant(f"{name}/shift", shift)], name=f"{name}/shift")
    return x
