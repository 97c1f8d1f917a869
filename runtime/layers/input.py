"""Input: tops are persistent buffers that the caller fills (net.blobs[name].data[...] = x)."""
from __future__ import annotations

import torch

from runtime.blob_shape import check_blob_shape, reshaped
from runtime.errors import AllconvError
from runtime.layers import Layer, describe, register


@register("Input")
class Input(Layer):
    """Shapes from ``input_param.shape``: one for all tops, or one per top."""

    num_bottoms = (0, 0)
    num_tops = (1, None)

    def setup(self, bottom_shapes, generator):
        shapes = [check_blob_shape(s.dim, f"input_param.shape[{i}]")
                  for i, s in enumerate(self.param.input_param.shape)]
        tops = len(self.tops)
        if len(shapes) not in (1, tops):
            raise AllconvError(f"input_param needs one shape, or one per top ({tops}); "
                               f"got {len(shapes)}")
        for i, shape in enumerate(shapes * tops if len(shapes) == 1 else shapes):
            self.register_buffer(f"top{i}", torch.zeros(shape), persistent=False)

    def reshape(self, bottom_shapes):
        return [tuple(t.shape) for t in self.buffers_in_order()]

    def buffers_in_order(self) -> list[torch.Tensor]:
        return [getattr(self, f"top{i}") for i in range(len(self.tops))]

    def set_shape(self, index: int, shape) -> None:
        """Give top ``index`` the ``shape`` (pycaffe's blob.reshape) as Caffe's Blob::Reshape
        does (``blob_shape.reshaped``: the values stay up to the memory's capacity; a move
        to another device or dtype keeps only the current shape's)."""
        old = getattr(self, f"top{index}")
        shape = check_blob_shape(shape, f"{describe(self.param)}: reshape of top "
                                        f"{self.tops[index]!r}")
        setattr(self, f"top{index}", reshaped(old, shape))

    def forward(self):
        return tuple(self.buffers_in_order())
