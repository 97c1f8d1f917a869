"""mutants50: what the reference pycaffe (built without WITH_PYTHON_LAYER, so no Python layer)
can say about the Blob semantics the Python-layer tests rely on.
Run: PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference python3 python_layer_ref.py"""
import os, tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()

print("constants TRAIN TEST", caffe.TRAIN, caffe.TEST)
f = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False)
f.write('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }\n')
f.close()
n = caffe.Net(f.name, caffe.TEST)
b = n.blobs["data"]
b.data[...] = np.arange(6).reshape(2, 3)
b.diff[...] = -1
print("data and diff separate:", b.data.tolist(), b.diff.tolist())
b.reshape(1, 3)
b.reshape(2, 3)
print("after reshape (1,3) then (2,3):", b.data.tolist())
b.reshape(3, 3)
print("after reshape past capacity (3,3):", b.data.tolist())
os.unlink(f.name)
