"""Real Caffe (pycaffe, C++ text parser) for mutants55's survivors:
 I02: Im2col of a 2x2 input, kernel 3, stride 2 (the window overhangs the input);
 V04: DummyData with a constant filler of value 3;
 K23: \\f and \\v between tokens of a prototxt;
 K27: a name of a surrogate pair with a DBxx high half (\\udb80\\udc00 = U+F0000);
 K21: a comment holding a Latin-1 byte (not UTF-8).
Each net is built in a child process (a failed CHECK aborts it)."""
import subprocess, sys, tempfile

CHILD = r"""
import sys
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()
net = caffe.Net(sys.argv[1], caffe.TEST)
print("BUILT", list(net.blobs), [n for n in net._layer_names])
for name, blob in net.blobs.items():
    if name == "data":
        blob.data[...] = np.arange(1, blob.count + 1).reshape(blob.shape)
out = net.forward()
for name in out:
    print("OUT", name, out[name].shape, out[name].ravel().tolist())
"""
IN = b'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 2 dim: 2 } } }\n'
NETS = {
    "I02_im2col_overhang": IN + b'layer { name: "c" type: "Im2col" bottom: "data" top: "cols" '
                           b'convolution_param { kernel_size: 3 stride: 2 } }\n',
    "V04_dummy_constant_3": b'layer { name: "d" type: "DummyData" top: "t" dummy_data_param { '
                            b'shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 3 } } }\n',
    "K23_formfeed_vtab": b'layer {\f name: "d"\v type: "DummyData" top: "t" dummy_data_param { '
                         b'shape { dim: 1 } } }\n',
    "K27_surrogate_dbxx": b'layer { name: "\\udb80\\udc00" type: "DummyData" top: "t" '
                          b'dummy_data_param { shape { dim: 1 } } }\n',
    "K21_latin1_comment": b'# caf\xe9 au lait\nlayer { name: "d" type: "DummyData" top: "t" '
                          b'dummy_data_param { shape { dim: 1 } } }\n',
}
for name, text in NETS.items():
    with tempfile.NamedTemporaryFile("wb", suffix=".prototxt", delete=False) as f:
        f.write(text)
    r = subprocess.run([sys.executable, "-c", CHILD, f.name], capture_output=True, text=True,
                       errors="replace")
    lines = [l for l in (r.stdout + r.stderr).splitlines()
             if l.startswith(("BUILT", "OUT")) or "Check failed" in l or "Error" in l or "error" in l]
    print(name, "rc", r.returncode)
    for l in lines[-4:]:
        print("   ", l[:300])
