"""LSTM (lstm_layer.cpp): Caffe's unrolled LSTM (see ``runtime.layers.recurrent``). Blobs, in
Caffe's order: W_xc (4H × K), b_c (4H), W_xc_static (4H × K_s, with a static input), W_hc
(4H × H). Each step t: gates = W_hc·(cont_t·h_{t−1}) + W_xc·x_t + b_c [+ W_xc_static·x_static],
then (c_t, h_t) = LSTMUnit(c_{t−1}, gates, cont_t); the output is h_1 … h_T. States: h, c."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.layers import register
from runtime.layers.lstm_unit import lstm_unit
from runtime.layers.recurrent import Recurrent


@register("LSTM")
class LSTM(Recurrent):
    states = ("h", "c")

    def add_blobs(self, input_size, static_size, recurrent, generator):
        gates = 4 * self.hidden
        self.add_blob((gates, input_size), recurrent.weight_filler, generator)
        self.add_blob((gates,), recurrent.bias_filler, generator)
        if self.has_static:
            self.add_blob((gates, static_size), recurrent.weight_filler, generator)
        self.add_blob((gates, self.hidden), recurrent.weight_filler, generator)

    def unroll(self, x, cont, static, states):
        x_gates = F.linear(x, self.blobs[0], self.blobs[1])
        static_gates = F.linear(static, self.blobs[2]) if static is not None else None
        h, c = states
        outputs = []
        for t in range(x.shape[0]):
            cont_t = cont[t].unsqueeze(-1)
            gates = F.linear(h * cont_t, self.blobs[-1]) + x_gates[t]
            if static_gates is not None:
                gates = gates + static_gates
            c, h = lstm_unit(c, gates, cont_t)
            outputs.append(h)
        return torch.stack(outputs), (h, c)
