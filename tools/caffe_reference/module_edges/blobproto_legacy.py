"""Real pycaffe's caffe.io.blobproto_to_array on a blob with some legacy fields set only."""
from pycaffe_import import import_caffe
caffe = import_caffe()
import caffe.io
from caffe.proto import caffe_pb2
blob = caffe_pb2.BlobProto(num=2, channels=3)
blob.shape.dim.extend([7])
print("num=2 channels=3 (+ shape.dim [7], no data):", caffe.io.blobproto_to_array(blob).shape)
blob = caffe_pb2.BlobProto(width=0)
blob.shape.dim.extend([4])
print("width=0 (+ shape.dim [4], no data):", caffe.io.blobproto_to_array(blob).shape)
