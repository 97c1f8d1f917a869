"""pycaffe's Net with phase True/False/2 (allconv: True gives a raw protobuf TypeError)."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 1 } } }\n')
for phase in (True, False, 2, caffe.TEST):
    try:
        caffe.Net(f.name, phase)
        print(repr(phase), "-> built")
    except Exception as e:
        print(repr(phase), "->", type(e).__name__, str(e).splitlines()[0])
