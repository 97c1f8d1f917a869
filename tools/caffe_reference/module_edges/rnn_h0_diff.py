"""Real Caffe: an RNN with expose_hidden under force_backward; the diff of the initial state
h0 and of cont after a backward (U04: the initial states get no gradient)."""
import sys, tempfile
from pathlib import Path
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
NET = Path(__file__).with_suffix(".prototxt").read_text()    # the test reads it too
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
