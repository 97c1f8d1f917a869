"""Real pycaffe: a layer reading an Input blob of shape (2, 0) (empty on a non-batch axis)."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 0 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "a" top: "b" }\n')
net = caffe.Net(f.name, caffe.TEST)
print("built", net.blobs["b"].data.shape)
