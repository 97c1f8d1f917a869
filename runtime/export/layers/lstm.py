"""LSTM -> Caffe's unrolled LSTM (``recurrent.unrolled``): each step
gates = W_hc·(cont_t·h) + W_xc·x_t + b_c [+ W_xc_static·x_static], then the LSTMUnit step.
Exact with cont resets, which ONNX's LSTM op cannot express."""
from __future__ import annotations

from runtime.export.layers.lstm_unit import unit
from runtime.export.layers.recurrent import recurrent_term, unrolled
from runtime.export.registry import converter


@converter("LSTM")
def lstm(graph, layer, bottoms, tops, shapes):
    def step(graph, name, states, inputs_t, cont_t):
        h, c = states
        gates = graph.node("Add", [recurrent_term(graph, name, h, cont_t, layer.blobs[-1]),
                                   inputs_t], name=f"{name}/gates")
        c, h = unit(graph, name, c, gates, cont_t, layer.hidden)
        return h, (h, c)

    unrolled(graph, layer, bottoms, tops, step)
