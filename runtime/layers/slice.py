"""Slice (slice_layer.cpp): cut the bottom along ``axis`` (or the legacy ``slice_dim``) at
``slice_point``s, or into equal parts, one per top."""
from __future__ import annotations

from runtime.blob_shape import check_int_field
from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


@register("Slice")
class Slice(Layer):
    backward_ignores_input = True
    num_tops = (1, None)
    empty_top_aborts = True     # a slice_point at the axis size leaves the last top empty

    def setup(self, bottom_shapes, generator):
        slice_param = self.param.slice_param
        if slice_param.HasField("axis") and slice_param.HasField("slice_dim"):
            raise AllconvError("slice_param: give axis or slice_dim, not both")
        self.points = check_int_field("slice_param.slice_point", slice_param.slice_point)
        if len(self.tops) == 1:
            self.share_bottom_memory()

    def reshape(self, bottom_shapes):
        shape, slice_param = bottom_shapes[0], self.param.slice_param
        if slice_param.HasField("slice_dim"):
            if slice_param.slice_dim >= len(shape):
                raise AllconvError(f"slice_param.slice_dim {slice_param.slice_dim} is out of "
                                   f"range for a {len(shape)}-axis bottom")
            self.axis = slice_param.slice_dim
        else:
            self.axis = canonical_axis(slice_param.axis, len(shape))
        size, tops = shape[self.axis], len(self.tops)
        if self.points:
            if len(self.points) != tops - 1:
                raise AllconvError(f"slice_param.slice_point: {len(self.points)} point(s) for "
                                   f"{tops} tops; give one fewer than the tops")
            if tops > size:
                raise AllconvError(f"slice_param.slice_point: {tops} tops cannot slice axis "
                                   f"{self.axis} of size {size}")
            edges = (0, *self.points)
            if any(b <= a for a, b in zip(edges, edges[1:])) or edges[-1] > size:
                raise AllconvError(f"slice_param.slice_point {list(self.points)} must increase "
                                   f"strictly from above 0 to at most the axis size {size}")
            self.sizes = [b - a for a, b in zip(edges, (*self.points, size))]
        else:
            if size % tops:
                raise AllconvError(f"slice_param: {tops} tops do not divide axis {self.axis} "
                                   f"of size {size} evenly; give slice_point")
            self.sizes = [size // tops] * tops
        return [shape[:self.axis] + (n,) + shape[self.axis + 1:] for n in self.sizes]

    def forward(self, x):
        return tuple(x.split(self.sizes, self.axis))
