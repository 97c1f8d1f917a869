"""LSTMUnit (lstm_unit_layer.cpp): one LSTM step. Bottoms c_{t−1} (1 × N × H), the gate inputs
(1 × N × 4H, in the order i, f, o, g) and cont_t (1 × N); tops c_t and h_t (1 × N × H):

    i = σ(i'), f = cont·σ(f') (0 where cont is 0), o = σ(o'), g = tanh(g')
    c_t = f·c_{t−1} + i·g,  h_t = o·tanh(c_t)      (no clipping)

The backward is Caffe's, which takes f·(1 − f) as f's derivative (exact for cont in {0, 1});
nothing goes to cont.
"""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register


class _Unit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c_prev, gates, cont):
        i, f, o, g = gates.chunk(4, -1)
        i, o, g = torch.sigmoid(i), torch.sigmoid(o), torch.tanh(g)
        f = torch.where(cont == 0, 0, cont * torch.sigmoid(f))
        c = f * c_prev + i * g
        tanh_c = torch.tanh(c)
        ctx.save_for_backward(c_prev, i, f, o, g, tanh_c)
        return c, o * tanh_c

    @staticmethod
    def backward(ctx, c_diff, h_diff):
        c_prev, i, f, o, g, tanh_c = ctx.saved_tensors
        c_term = c_diff + h_diff * o * (1 - tanh_c * tanh_c)
        gates_diff = torch.cat([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                                h_diff * tanh_c * o * (1 - o), c_term * i * (1 - g * g)], -1)
        return c_term * f, gates_diff, None


def lstm_unit(c_prev, gates, cont):
    """(c_t, h_t) from c_{t−1} (… × H), gates (… × 4H) and cont (broadcasting as … × 1)."""
    return _Unit.apply(c_prev, gates, cont.detach())


@register("LSTMUnit")
class LSTMUnit(Layer):
    num_bottoms = (3, 3)
    kept_from_force_backward, no_backward_to = (2,), {2: "sequence indicators"}
    num_tops = (2, 2)
    batch_axes = ([1, 1, 1], [1, 1])   # the streams N, for ONNX export

    def reshape(self, bottom_shapes):
        c, gates, cont = bottom_shapes
        for index, (shape, axes) in enumerate(zip(bottom_shapes, (3, 3, 2))):
            if len(shape) != axes or shape[0] != 1 or shape[1] != c[1]:
                raise AllconvError(f"bottom {index} has shape {shape}; c_prev, gates and cont "
                                   f"must be 1 × N × H, 1 × N × 4H and 1 × N")
        if gates[2] != 4 * c[2]:
            raise AllconvError(f"the gates (shape {gates}) must have 4 × {c[2]} values per stream")
        return [c, c]

    def forward(self, c_prev, gates, cont):
        return lstm_unit(c_prev, gates, cont.unsqueeze(-1))
