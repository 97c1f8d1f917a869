"""Concat (concat_layer.cpp) along ``axis`` (or the legacy ``concat_dim``)."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


@register("Concat")
class Concat(Layer):
    backward_ignores_input = True
    num_bottoms = (1, None)

    def setup(self, bottom_shapes, generator):
        concat = self.param.concat_param
        if concat.HasField("axis") and concat.HasField("concat_dim"):
            raise AllconvError("Either axis or concat_dim should be specified; not both.")
        if len(self.bottoms) == 1:
            self.share_bottom_memory()

    def reshape(self, bottom_shapes):
        concat = self.param.concat_param
        first = bottom_shapes[0]
        axis = concat.concat_dim if concat.HasField("concat_dim") else concat.axis
        self.axis = canonical_axis(axis, len(first))
        for shape in bottom_shapes[1:]:
            if len(shape) != len(first) or any(
                    a != b for i, (a, b) in enumerate(zip(shape, first)) if i != self.axis):
                raise AllconvError(f"bottom shapes {first} and {shape} differ off the concat "
                                   f"axis {self.axis}")
        total = sum(shape[self.axis] for shape in bottom_shapes)
        return [first[:self.axis] + (total,) + first[self.axis + 1:]]

    def forward(self, *bottoms):
        return (torch.cat(bottoms, self.axis),)
