"""Parameter (parameter_layer.hpp): no bottoms; the top is the layer's one learnable blob of
``parameter_param.shape`` (zeros until trained or loaded), so its diff is the blob's. Sharing
the top's diff, the blob's diff holds the last backward's gradient: with ``iter_size`` 2 the
solver steps by half of what it would with the passes summed, as Caffe's does."""
from __future__ import annotations

from runtime.blob_shape import check_blob_shape
from runtime.layers import Layer, register
from runtime.proto import pb


@register("Parameter")
class Parameter(Layer):
    num_bottoms = (0, 0)
    overwritten_diffs = (0,)       # its diff is its top's

    def setup(self, bottom_shapes, generator):
        shape = check_blob_shape(self.param.parameter_param.shape.dim, "parameter_param.shape")
        self.add_blob(shape, pb.FillerParameter(), generator)

    def reshape(self, bottom_shapes):
        return [tuple(self.blobs[0].shape)]

    def forward(self):
        return (self.blobs[0],)
