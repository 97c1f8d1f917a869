"""mutants50: a parameter's diff written by hand after a backward is the memory the next
backward adds onto (pycaffe's net.params[...][i].diff is a view of the Blob's diff).
Run: PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference python3 param_diff_ref.py"""
import os, tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()

NET = ('layer { name: "in" type: "Input" top: "data" top: "target" input_param { '
       'shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }\n'
       'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { '
       'num_output: 2 weight_filler { type: "constant" value: 0.5 } bias_filler { type: "constant" value: 0.25 } } }\n'
       'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }\n')
f = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False); f.write(NET); f.close()
net = caffe.Net(f.name, caffe.TRAIN); os.unlink(f.name)
net.blobs["data"].data[...] = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
net.blobs["target"].data[...] = np.array([[1, -1], [0.5, 2]], np.float32)
net.forward(); net.backward()
g_w, g_b = net.params["ip"][0].diff.copy(), net.params["ip"][1].diff.copy()
print("first backward weight diff", g_w.tolist(), "bias diff", g_b.tolist())
net.params["ip"][0].diff[...] = 7
net.params["ip"][1].diff[...] = 0
print("after writing", net.params["ip"][0].diff.tolist(), net.params["ip"][1].diff.tolist())
net.forward(); net.backward()
print("second backward weight diff", net.params["ip"][0].diff.tolist(), "bias diff", net.params["ip"][1].diff.tolist())
