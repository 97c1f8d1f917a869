"""caffe.io's BlobProto conversion with some legacy fields set: expected shapes from
tools/caffe_reference/module_edges/blobproto_legacy.py, real pycaffe's caffe.io."""
from runtime import io
from runtime.proto import pb


def test_any_legacy_field_makes_the_shape_num_channels_height_width():
    blob = pb.BlobProto(num=2, channels=3)
    blob.shape.dim.extend([7])
    assert io.blobproto_to_array(blob).shape == (2, 3, 0, 0)
    blob = pb.BlobProto(width=0)
    blob.shape.dim.extend([4])
    assert io.blobproto_to_array(blob).shape == (0, 0, 0, 0)
