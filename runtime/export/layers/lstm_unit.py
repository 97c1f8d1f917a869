"""LSTMUnit -> the step as ONNX ops (``unit``, shared with the LSTM converter): Split the gate
inputs into i, f, o, g; c = cont·σ(f)·c_prev + σ(i)·tanh(g); h = σ(o)·tanh(c)."""
from __future__ import annotations

from runtime.export.layers.sigmoid import logistic
from runtime.export.registry import converter


def unit(graph, name: str, c_prev: str, gates: str, cont: str, hidden: int, outputs=(None, None)):
    """Append one LSTM step (gates on the last axis, ``cont`` broadcasting against c_prev);
    returns the value names of (c, h), written to ``outputs`` where given."""
    split = graph.shape(f"{name}/split", [hidden] * 4)
    parts = [graph.fresh(f"{name}/{gate}_in") for gate in "ifog"]
    graph.node("Split", [gates, split], parts, name=f"{name}/split", axis=-1)
    i, f, o = (logistic(graph, p, f"{name}/sigmoid_{g}") for p, g in zip(parts[:3], "ifo"))
    g = graph.node("Tanh", [parts[3]], name=f"{name}/tanh_g")
    forget = graph.node("Mul", [cont, f], name=f"{name}/cont")
    kept = graph.node("Mul", [forget, c_prev], name=f"{name}/keep")
    written = graph.node("Mul", [i, g], name=f"{name}/write")
    c = graph.node("Add", [kept, written], None if outputs[0] is None else [outputs[0]],
                   name=f"{name}/c")
    tanh_c = graph.node("Tanh", [c], name=f"{name}/tanh_c")
    h = graph.node("Mul", [o, tanh_c], None if outputs[1] is None else [outputs[1]],
                   name=f"{name}/h")
    return c, h


@converter("LSTMUnit")
def lstm_unit(graph, layer, bottoms, tops, shapes):
    c_prev, gates, cont = bottoms
    cont = graph.node("Unsqueeze", [cont, graph.shape(f"{layer.name}/axis", [2])],
                      name=f"{layer.name}/cont_axis")
    unit(graph, layer.name, c_prev, gates, cont, shapes[0][2], tops)
