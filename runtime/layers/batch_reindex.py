"""BatchReindex (batch_reindex_layer.cpp): top[i] = bottom 0's item number bottom1[i] (a
float truncated to int; each must lie in [0, N)). The gradient sums into the items picked;
bottom 1 gets none."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, describe, register


@register("BatchReindex")
class BatchReindex(Layer):
    num_bottoms = (2, 2)
    no_backward_to = {1: "the index"}
    batch_index_bottom = 1      # its values index the batch of bottom 0

    def reshape(self, bottom_shapes):
        data, index = bottom_shapes
        if len(index) != 1:
            raise AllconvError(f"the index bottom must be 1-d, got shape {index}")
        return [index + data[1:]]

    def forward(self, x, index):
        index = index.detach().long()
        if not torch.compiler.is_compiling() and len(index) and not (
                0 <= int(index.min()) and int(index.max()) < len(x)):
            raise AllconvError(f"{describe(self.param)}: an index is outside [0, {len(x)}) "
                               f"(min {int(index.min())}, max {int(index.max())})")
        return (x.index_select(0, index),)
