"""MemoryData (memory_data_layer.cpp): batches from arrays handed over from Python, as
pycaffe's ``net.set_input_arrays(data, labels)`` (Net.set_input_arrays here)."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.layers import describe, register
from runtime.layers.data import BaseData


@register("MemoryData")
class MemoryData(BaseData):
    """Tops ``data`` (batch_size, channels, height, width) and ``label``: (batch_size,) at
    set-up, then (batch_size, 1, 1, 1) from the first forward on, as Caffe's Forward reshapes
    it (the layers above it follow). The arrays are served in order, ``batch_size`` rows per
    forward, wrapping around; as Caffe's Reset, they are not transformed (a
    ``transform_param`` only draws a warning)."""

    num_tops = (2, 2)
    param_field = "memory_data_param"

    def setup(self, bottom_shapes, generator, feed=None, sample_shape=None):
        p = self.param.memory_data_param
        if min(p.batch_size, p.channels, p.height, p.width) <= 0:
            raise AllconvError("batch_size, channels, height, and width must be specified and "
                               "positive in memory_data_param")
        super().setup(bottom_shapes, generator, feed,
                      sample_shape or (p.channels, p.height, p.width))
        self.tops_sized_by_data = True

    def open_feed(self, generator):
        return None

    def feed_shapes(self, feed, sample_shape=None):
        if feed is None:
            return [tuple(sample_shape), ()]
        return super().feed_shapes(feed, sample_shape)

    def no_feed_message(self) -> str:
        return "MemoryData has no arrays: call net.set_input_arrays(data, labels) first"

    def set_input_arrays(self, data, labels) -> None:
        """pycaffe's checks: float32 C-contiguous arrays, data (N, C, H, W) of this layer's
        C, H, W, labels (N,) or (N, 1, 1, 1), N a multiple of batch_size. They are shared, as
        Caffe keeps pointers into them: what they hold when a forward reads a batch is what
        it reads (1-d labels excepted: pycaffe's wrapper reshapes them into a copy)."""
        from runtime.data.source import Source

        data, labels = np.asarray(data), np.asarray(labels)
        if labels.ndim == 1:       # pycaffe's wrapper makes these contiguous itself
            labels = np.ascontiguousarray(labels[:, None, None, None])
        for name, array, tail in (("data", data, self.sample_shape), ("labels", labels,
                                                                        (1, 1, 1))):
            if array.dtype != np.float32 or not array.flags.c_contiguous:
                raise AllconvError(f"{describe(self.param)}: {name} array must be float32 and "
                                   f"C contiguous (got {array.dtype}"
                                   f"{'' if array.flags.c_contiguous else ', not contiguous'})")
            if array.ndim != 4 or array.shape[1:] != tuple(tail):
                raise AllconvError(f"{describe(self.param)}: {name} array must be "
                                   f"(N, {', '.join(map(str, tail))}), got {array.shape}")
        if len(data) != len(labels):
            raise AllconvError(f"{describe(self.param)}: data and labels must have the same "
                               f"first dimension ({len(data)} vs {len(labels)})")
        if len(data) == 0 or len(data) % self.batch_size:
            raise AllconvError(f"{describe(self.param)}: first dimensions of input arrays must "
                               f"be a positive multiple of batch size {self.batch_size} "
                               f"(got {len(data)})")
        if self.param.HasField("transform_param"):
            warnings.warn(f"{describe(self.param)}: MemoryData does not transform array data",
                          stacklevel=2)
        self.feed = Source(torch.from_numpy(data), torch.from_numpy(labels))
