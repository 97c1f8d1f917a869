"""Flatten (flatten_layer.cpp): merge axes ``axis`` .. ``end_axis`` into one. As Caffe's
``count(axis, end_axis + 1)``, ``end_axis`` may be ``axis - 1``: a new axis of size 1."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, count


@register("Flatten")
class Flatten(Layer):
    tops_view_bottom = True
    backward_ignores_input = True
    top_diff_is_bottom_diff = diff_shared_by_backward = True   # Backward: ShareDiff
    diffs_whenever_run = (0,)     # shared: propagate_down cannot stop it

    def setup(self, bottom_shapes, generator):
        if self.bottoms[0] == self.tops[0]:
            raise AllconvError("Flatten cannot run in place (top == bottom)")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        flatten = self.param.flatten_param
        self.start = canonical_axis(flatten.axis, len(shape))
        self.end = canonical_axis(flatten.end_axis, len(shape))
        if self.end + 1 < self.start:
            raise AllconvError(f"flatten_param.end_axis {flatten.end_axis} (axis {self.end}) "
                               f"comes before flatten_param.axis {flatten.axis} (axis "
                               f"{self.start}) minus 1")
        return [self._merged(shape)]

    def _merged(self, shape) -> tuple[int, ...]:
        return (tuple(shape[:self.start]) + (count(shape, self.start, self.end + 1),)
                + tuple(shape[self.end + 1:]))

    def forward(self, x):
        return (x.reshape(self._merged(tuple(x.shape))),)
