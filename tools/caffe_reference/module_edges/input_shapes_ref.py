"""pycaffe: Input layer with no shape, one shape for two tops, too many shapes."""
import tempfile

from pycaffe_import import import_caffe

caffe = import_caffe()
CASES = {
    "no_shape": 'layer { name: "in" type: "Input" top: "a" }',
    "one_for_two": 'layer { name: "in" type: "Input" top: "a" top: "b" '
                   'input_param { shape { dim: 2 dim: 3 } } }',
    "two_for_two": 'layer { name: "in" type: "Input" top: "a" top: "b" '
                   'input_param { shape { dim: 2 dim: 3 } shape { dim: 4 } } }',
}
for name, text in CASES.items():
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    net = caffe.Net(f.name, caffe.TEST)
    print(name, {k: tuple(v.shape) for k, v in net.blobs.items()})
    if name == "no_shape":
        net.blobs["a"].reshape(2, 5)
        net.forward()
        print(name, "after reshape", net.blobs["a"].data.shape)
