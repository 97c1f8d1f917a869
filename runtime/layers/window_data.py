"""WindowData (window_data_layer.cpp): R-CNN's windows of the images a window file lists,
foreground and background in a fixed share, warped to ``transform_param.crop_size`` (see
`runtime.data.windows`)."""
from __future__ import annotations

from runtime.blob_shape import check_blob_shape
from runtime.layers import register
from runtime.layers.data import BaseData, seeded_generator


@register("WindowData")
class WindowData(BaseData):
    """Tops ``data`` (batch_size, 3, crop_size, crop_size), BGR, and ``label``
    (batch_size,): the background windows' 0s first, then the foreground windows' labels.
    Of ``transform_param`` it reads ``crop_size``, ``mirror`` (in either phase, as Caffe),
    ``mean_file`` and ``mean_value``; its scale is ``window_data_param.scale``."""

    num_tops = (2, 2)
    param_field = "window_data_param"

    def open_feed(self, generator):
        from runtime.data.windows import WindowSampler

        crop = self.param.transform_param.crop_size
        check_blob_shape((self.param.window_data_param.batch_size, 3, crop, crop),
                         "window_data_param.batch_size and transform_param.crop_size")
        return WindowSampler(self.param.window_data_param, self.param.transform_param,
                             seeded_generator(generator))
