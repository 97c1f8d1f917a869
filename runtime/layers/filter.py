"""Filter (filter_layer.cpp): the items (axis 0) of bottoms 0..k−1 whose selector (the last
bottom, N×1×...×1) is nonzero, in order; k tops. The top's batch size depends on the data, as
in Caffe, where the first Reshape gives N. Filtered-out items get a zero gradient; the
selector gets none."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register


@register("Filter")
class Filter(Layer):
    num_bottoms = (2, None)
    no_backward_to = {-1: "filter index inputs"}
    num_tops = (1, None)
    tops_sized_by_data = True

    def reshape(self, bottom_shapes):
        *data, selector = bottom_shapes
        if len(self.tops) != len(data):
            raise AllconvError(f"needs one top per filtered bottom ({len(data)}), got "
                               f"{len(self.tops)}")
        if any(d != 1 for d in selector[1:]):
            raise AllconvError(f"the selector bottom shape {selector} must be 1 on every axis "
                               "but the first")
        for shape in data:
            if not shape or shape[0] != selector[0]:
                raise AllconvError(f"bottom shape {shape} and the selector {selector} differ "
                                   "on axis 0")
        return list(data)

    def forward(self, *bottoms):
        *data, selector = bottoms
        keep = selector.detach().reshape(len(selector)).nonzero().reshape(-1)
        return tuple(x.index_select(0, keep) for x in data)
