"""HDF5Data (hdf5_data_layer.cpp): one top per dataset of the .h5 files a list names (see
`runtime.data.hdf5`); Caffe applies no transformation here and refuses ``transform_param``."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.data import BaseData, seeded_generator


@register("HDF5Data")
class HDF5Data(BaseData):
    """Top ``t`` is (batch_size, *shape[1:]) of the dataset named ``t`` in each file."""

    num_tops = (1, None)
    param_field = "hdf5_data_param"

    def open_feed(self, generator):
        from runtime.data.hdf5 import HDF5Feed

        if self.param.HasField("transform_param"):
            raise AllconvError("HDF5Data does not transform data: remove transform_param")
        p = self.param.hdf5_data_param
        return HDF5Feed(p.source, self.tops, p.shuffle, seeded_generator(generator))
