"""Real Caffe's Accuracy (top 1 and top 5) on rows all NaN, labels 9 and 0 of 10 classes, and
on a row where every score ties (0), the same labels: prints each accuracy."""
import tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
TEXT = ('input: "s" input_shape { dim: 2 dim: 10 }\ninput: "l" input_shape { dim: 2 }\n'
        'layer { name: "a1" type: "Accuracy" bottom: "s" bottom: "l" top: "a1" }\n'
        'layer { name: "a5" type: "Accuracy" bottom: "s" bottom: "l" top: "a5" '
        'accuracy_param { top_k: 5 } }\n')
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(TEXT)
net = caffe.Net(f.name, caffe.TEST)
for name, value in (("all NaN", np.nan), ("all tied 0", 0.0)):
    net.blobs["s"].data[...] = value
    net.blobs["l"].data[...] = [9, 0]
    out = net.forward()
    print(name, "top1", float(out["a1"]), "top5", float(out["a5"]))
