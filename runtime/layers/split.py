"""Split (split_layer.cpp): the bottom, once per top (autograd sums the tops' gradients)."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register


@register("Split")
class Split(Layer):
    tops_view_bottom = True
    backward_ignores_input = True
    num_tops = (1, None)

    def setup(self, bottom_shapes, generator):
        if self.bottoms[0] in self.tops:       # split_layer.cpp's check
            raise AllconvError("Split cannot run in place (a top == the bottom)")

    def forward(self, x):
        # One view per top (no copy): each top is its own autograd node, so each top blob has
        # its own diff after backward, as in Caffe, while the bottom's diff is their sum.
        return tuple(x.view_as(x) for _ in self.tops)
