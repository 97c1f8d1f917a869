"""Reshape (reshape_layer.cpp): replace the axes ``axis`` .. ``axis + num_axes`` (−1: to the
end) by ``shape``, where 0 copies the bottom's dim at the same position (from ``axis``) and
one −1 is inferred from the count. The top shares the bottom's data; not in place."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import count


@register("Reshape")
class Reshape(Layer):
    tops_view_bottom = True
    backward_ignores_input = True
    top_diff_is_bottom_diff = True
    diffs_whenever_run = (0,)     # shared: propagate_down cannot stop it

    def setup(self, bottom_shapes, generator):
        if self.bottoms[0] == self.tops[0]:
            raise AllconvError("Reshape cannot run in place (top == bottom)")
        self.dims = tuple(self.param.reshape_param.shape.dim)
        if self.dims.count(-1) > 1:
            raise AllconvError(f"reshape_param.shape {list(self.dims)} has more than one -1 "
                               "(at most one dim can be inferred)")
        bad = [d for d in self.dims if d < -1]
        if bad:
            raise AllconvError(f"reshape_param.shape dim {bad[0]}: give a size, 0 (copy) or "
                               "-1 (infer)")

    def span(self, shape) -> tuple[int, int]:
        """The axes [start, end) of a bottom of ``shape`` that ``shape.dim`` replaces."""
        reshape = self.param.reshape_param
        start = reshape.axis if reshape.axis >= 0 else len(shape) + reshape.axis + 1
        if not 0 <= start <= len(shape):
            raise AllconvError(f"reshape_param.axis {reshape.axis} is out of range for a "
                               f"{len(shape)}-axis bottom")
        if reshape.num_axes < -1:
            raise AllconvError(f"reshape_param.num_axes {reshape.num_axes} must be >= 0, or "
                               "-1 for all")
        end = len(shape) if reshape.num_axes == -1 else start + reshape.num_axes
        if end > len(shape):
            raise AllconvError(f"reshape_param: axis {start} + num_axes {reshape.num_axes} "
                               f"runs past the {len(shape)}-axis bottom")
        return start, end

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        start, end = self.span(shape)
        new = []
        for i, dim in enumerate(self.dims):
            if dim == 0:
                if start + i >= len(shape):
                    raise AllconvError(f"reshape_param.shape dim {i} is 0 but the bottom has "
                                       f"no axis {start + i} to copy")
                dim = shape[start + i]
            new.append(dim)
        if -1 in new:
            known = count(shape[:start]) * count(shape[end:]) * -count(new)
            if known == 0 or count(shape) % known:
                raise AllconvError(f"reshape_param.shape {list(self.dims)}: the bottom's count "
                                   f"{count(shape)} is not divisible by the given dims' "
                                   f"product {known}")
            new[new.index(-1)] = count(shape) // known
        top = shape[:start] + tuple(new) + shape[end:]
        if count(top) != count(shape):
            raise AllconvError(f"reshape_param.shape {list(self.dims)} gives top shape {top} "
                               f"of {count(top)} elements; the bottom {shape} has "
                               f"{count(shape)}")
        return [top]

    def forward(self, x):
        return (x.reshape(self.reshape([tuple(x.shape)])[0]),)
