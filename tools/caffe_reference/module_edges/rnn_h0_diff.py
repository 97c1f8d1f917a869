"""Real Caffe: an RNN with expose_hidden under force_backward; the diff of the initial state
h0 and of cont after a backward (U04: the initial states get no gradient)."""
import sys, tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
NET = """force_backward: true
layer { name: "in" type: "Input" top: "x" top: "cont" top: "h0" top: "hh"
  input_param { shape { dim: 3 dim: 2 dim: 3 } shape { dim: 3 dim: 2 } shape { dim: 1 dim: 2 dim: 4 }
                shape { dim: 3 dim: 2 dim: 4 } } }
layer { name: "rec" type: "RNN" bottom: "x" bottom: "cont" bottom: "h0" top: "h" top: "hT"
  recurrent_param { num_output: 4 expose_hidden: true weight_filler { type: "gaussian" std: 0.5 }
                    bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "hh" top: "loss" }
layer { name: "sil" type: "Silence" bottom: "hT" }
"""
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(NET)
net = caffe.Net(f.name, caffe.TRAIN)
rng = np.random.RandomState(2)
net.blobs["x"].data[...] = rng.randn(3, 2, 3)
net.blobs["h0"].data[...] = rng.randn(1, 2, 4)
net.blobs["cont"].data[...] = [[0, 1], [1, 1], [1, 0]]
net.blobs["hh"].data[...] = 0
net.forward()
net.backward()
print("x diff nonzero", bool(np.abs(net.blobs["x"].diff).sum() > 0))
print("h0 diff", float(np.abs(net.blobs["h0"].diff).sum()))
print("cont diff", float(np.abs(net.blobs["cont"].diff).sum()))
