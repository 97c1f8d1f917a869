"""Embed (embed_layer.cpp): each input value, an index in [0, input_dim), picks a row of the
weights (input_dim × num_output, InnerProduct's transposed) plus the bias; the top is the
bottom's shape + (num_output,). A value that is not whole is truncated toward zero, as Caffe's
release build does (static_cast<int>; its whole-number check is a debug-only DCHECK): 4.99 reads
row 4, −0.5 row 0. Gradients go to the weights and bias, never to the input."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.layers import Layer, describe, register


@register("Embed")
class Embed(Layer):
    no_backward_to = {0: "the EmbedLayer input"}
    def setup(self, bottom_shapes, generator):
        embed = self.param.embed_param
        if embed.num_output <= 0:
            raise AllconvError("embed_param.num_output must be positive")
        if embed.input_dim <= 0:
            raise AllconvError("embed_param.input_dim must be positive")
        self.add_weights((embed.input_dim, embed.num_output), embed, generator)
        self.index_range = embed.input_dim      # the valid input values 0 … input_dim − 1

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0] + (self.blobs[0].shape[1],)]

    def forward(self, x):
        index = x.detach().trunc()
        rows = self.index_range
        bad = ~((index >= 0) & (index < rows))          # NaN too
        if bool(bad.any()):
            value = float(x.detach()[bad][0])
            raise AllconvError(f"{describe(self.param)}: input value {value:g} is not an index "
                               f"in [0, {rows}) (embed_param.input_dim {rows})")
        y = F.embedding(index.long(), self.blobs[0])
        return (y + self.blobs[1] if len(self.blobs) > 1 else y,)
