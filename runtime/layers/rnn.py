"""RNN (rnn_layer.cpp): Caffe's unrolled simple RNN (see ``runtime.layers.recurrent``). Blobs,
in Caffe's order: W_xh (H × K), b_h (H), W_xh_static (H × K_s, with a static input), W_hh
(H × H), W_ho (H × H), b_o (H). Each step t:
h_t = tanh(W_hh·(cont_t·h_{t−1}) + W_xh·x_t + b_h [+ W_xh_static·x_static]) and
o_t = tanh(W_ho·h_t + b_o); the output is o_1 … o_T. State: h."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.layers import register
from runtime.layers.recurrent import Recurrent


@register("RNN")
class RNN(Recurrent):
    states = ("h",)

    def add_blobs(self, input_size, static_size, recurrent, generator):
        size = self.hidden
        self.add_blob((size, input_size), recurrent.weight_filler, generator)
        self.add_blob((size,), recurrent.bias_filler, generator)
        if self.has_static:
            self.add_blob((size, static_size), recurrent.weight_filler, generator)
        self.add_blob((size, size), recurrent.weight_filler, generator)
        self.add_blob((size, size), recurrent.weight_filler, generator)
        self.add_blob((size,), recurrent.bias_filler, generator)

    def unroll(self, x, cont, static, states):
        w_hh, w_ho, b_o = self.blobs[-3:]
        x_in = F.linear(x, self.blobs[0], self.blobs[1])
        static_in = F.linear(static, self.blobs[2]) if static is not None else None
        (h,) = states
        outputs = []
        for t in range(x.shape[0]):
            pre = F.linear(h * cont[t].unsqueeze(-1), w_hh) + x_in[t]
            if static_in is not None:
                pre = pre + static_in
            h = torch.tanh(pre)
            outputs.append(torch.tanh(F.linear(h, w_ho, b_o)))
        return torch.stack(outputs), (h,)
