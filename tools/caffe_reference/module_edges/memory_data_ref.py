"""pycaffe: MemoryData order, reset on a new set_input_arrays, label shapes, array sharing."""
import os
import tempfile

import numpy as np
from pycaffe_import import import_caffe

caffe = import_caffe()
NET = ('layer { name: "m" type: "MemoryData" top: "data" top: "label" memory_data_param '
       '{ batch_size: 2 channels: 1 height: 1 width: 3 } }')
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(NET)
net = caffe.Net(f.name, caffe.TEST)
print("label shape at setup", net.blobs["label"].data.shape)
data = np.arange(18, dtype=np.float32).reshape(6, 1, 1, 3)
labels = np.arange(6, dtype=np.float32)
net.set_input_arrays(data, labels)
for i in range(4):
    out = net.forward()
    print("forward", i, out["label"].ravel().tolist(), out["data"][:, 0, 0, 0].tolist(),
          out["label"].shape)
# a new set_input_arrays starts from row 0 again
net.set_input_arrays(data[::-1].copy(), labels[::-1].copy())
print("after reset", net.forward()["label"].ravel().tolist())
# the caller's array changed after set_input_arrays
keep = np.zeros((2, 1, 1, 3), np.float32)
keep_labels = np.zeros((2, 1, 1, 1), np.float32)
net.set_input_arrays(keep, keep_labels)
keep[:] = 7
keep_labels[:] = 9
out = net.forward()
print("changed after set", out["data"].ravel().tolist(), out["label"].ravel().tolist())
for bad in ("float64", "noncontig", "badshape", "mismatch", "notmultiple", "labels2"):
    try:
        d, l = np.zeros((4, 1, 1, 3), np.float32), np.zeros(4, np.float32)
        if bad == "float64":
            d = d.astype(np.float64)
        if bad == "noncontig":
            d = np.zeros((4, 1, 1, 6), np.float32)[..., ::2]
        if bad == "badshape":
            d = np.zeros((4, 1, 3, 1), np.float32)
        if bad == "mismatch":
            l = np.zeros(2, np.float32)
        if bad == "notmultiple":
            d, l = np.zeros((3, 1, 1, 3), np.float32), np.zeros(3, np.float32)
        if bad == "labels2":
            l = np.zeros((4, 2, 1, 1), np.float32)
        net.set_input_arrays(d, l)
        print(bad, "accepted")
    except Exception as err:
        print(bad, "refused:", type(err).__name__, err)
os.unlink(f.name)
