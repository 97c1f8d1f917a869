"""ImageData (image_data_layer.cpp): images named in a list file, with their labels, through
``transform_param`` (see `runtime.data.image_list`, `runtime.data.transform`)."""
from __future__ import annotations

from runtime.blob_shape import check_blob_shape, check_int_field
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.data import BaseData, seeded_generator


@register("ImageData")
class ImageData(BaseData):
    """Tops ``data`` (batch_size, C, H, W) and ``label`` (batch_size,); C is 3 (BGR) with
    ``is_color``, else 1; H, W are the crop's, else each batch's first image's (after
    ``new_height``/``new_width``), as Caffe reshapes its top per batch."""

    num_tops = (2, 2)
    param_field = "image_data_param"

    def open_feed(self, generator):
        from runtime.data.image_list import ImageList

        p = self.param.image_data_param
        if (p.new_height > 0) != (p.new_width > 0):
            raise AllconvError("image_data_param: new_height and new_width must be set "
                               "together")
        size = None
        if p.new_height > 0:
            field = "image_data_param.new_height/new_width"
            size = check_int_field(field, (p.new_height, p.new_width))
            check_blob_shape((p.batch_size, 3 if p.is_color else 1) + size, field)
        images = ImageList(p.source, p.root_folder, size, p.is_color, p.shuffle, p.rand_skip,
                           seeded_generator(generator),
                           cropped=bool(self.param.transform_param.crop_size))
        return self.transformed(images, generator)
