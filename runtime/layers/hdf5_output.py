"""HDF5Output (hdf5_output_layer.cpp): writes its two bottoms to ``file_name`` as datasets
``data`` and ``label`` (see `runtime.data.hdf5`); no tops, no backward."""
from __future__ import annotations

import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import Layer, register


@register("HDF5Output")
class HDF5Output(Layer):
    repeatable_forward = False      # each forward writes a file
    """The file is created (emptied) when the net is built, as Caffe's setup does; a forward
    writes the batch. Caffe's HDF5Output writes one batch per file: a second forward fails
    there, and here it is an error naming the file."""

    num_bottoms = (2, 2)
    num_tops = (0, 0)

    def setup(self, bottom_shapes, generator):
        from runtime.data import hdf5

        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            raise AllconvError("hdf5_output_param.file_name is required")
        for name, shape in zip(self.bottoms, bottom_shapes):
            legacy_shape(shape, f"bottom {name!r}")
        hdf5.create(self.file_name)     # (the batch sizes are checked at each forward, as Caffe)

    def reshape(self, bottom_shapes):
        return []

    def forward(self, data, label):
        from runtime.data import hdf5

        with torch.no_grad():
            hdf5.write(self.file_name, data.float().cpu().numpy(), label.float().cpu().numpy())
        return ()
