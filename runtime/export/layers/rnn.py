"""RNN -> Caffe's unrolled RNN (``recurrent.unrolled``): each step
h = tanh(W_hh·(cont_t·h) + W_xh·x_t + b_h [+ W_xh_static·x_static]), o = tanh(W_ho·h + b_o)."""
from __future__ import annotations

from runtime.export.layers.recurrent import linear, recurrent_term, unrolled
from runtime.export.registry import converter


@converter("RNN")
def rnn(graph, layer, bottoms, tops, shapes):
    w_hh, w_ho, b_o = layer.blobs[-3:]

    def step(graph, name, states, inputs_t, cont_t):
        pre = graph.node("Add", [recurrent_term(graph, name, states[0], cont_t, w_hh),
                                 inputs_t], name=f"{name}/h_in")
        h = graph.node("Tanh", [pre], name=f"{name}/h")
        o = graph.node("Tanh", [linear(graph, f"{name}/output", h, w_ho, b_o)],
                       name=f"{name}/o")
        return o, (h,)

    unrolled(graph, layer, bottoms, tops, step)
