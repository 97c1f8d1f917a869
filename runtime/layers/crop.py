"""Crop (crop_layer.cpp): bottom 0 cut to the shape of bottom 1 on the axes from ``axis`` on
(default 2), starting at ``offset``: none (0), one for every cropped axis, or one per cropped
axis. Bottom 1 gives only its shape and gets no gradient."""
from __future__ import annotations

from runtime.blob_shape import check_int_field
from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


@register("Crop")
class Crop(Layer):
    backward_ignores_input = True
    num_bottoms = (2, 2)

    def reshape(self, bottom_shapes):
        data, reference = bottom_shapes
        crop = self.param.crop_param
        self.axis = canonical_axis(crop.axis, len(data))
        cropped = len(data) - self.axis
        offsets = check_int_field("crop_param.offset", crop.offset)
        if len(offsets) > 1 and len(offsets) != cropped:
            raise AllconvError(f"crop_param.offset: {len(offsets)} values for the {cropped} "
                               f"cropped axes {self.axis}..{len(data) - 1}; give 1 or {cropped}")
        if len(reference) < len(data):
            raise AllconvError(f"the reference bottom shape {reference} has fewer axes than "
                               f"the bottom to crop {data}")
        self.offsets = (0,) * self.axis + (offsets * cropped if len(offsets) == 1
                                          else offsets or (0,) * cropped)
        top = data[:self.axis] + tuple(reference[self.axis:len(data)])
        for i in range(self.axis, len(data)):
            if self.offsets[i] + top[i] > data[i]:
                raise AllconvError(f"crop_param.offset {self.offsets[i]} on axis {i}: a crop of "
                                   f"{top[i]} runs past the bottom's size {data[i]}")
        return [top]

    def forward(self, x, reference):
        for axis in range(self.axis, x.dim()):
            x = x.narrow(axis, self.offsets[axis], reference.shape[axis])
        return (x,)
