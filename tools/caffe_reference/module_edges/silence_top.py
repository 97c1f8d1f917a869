"""Real Caffe: a Silence layer with a top, and an Input layer with a bottom. Each net is built
in a child process (a failed CHECK aborts it); prints how each ends."""
import os, subprocess, sys, tempfile
NETS = {
    "silence_with_top": 'layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }\n'
                        'layer { name: "s" type: "Silence" bottom: "a" top: "t" }\n',
    "silence_no_top": 'layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }\n'
                      'layer { name: "s" type: "Silence" bottom: "a" }\n',
    "silence_no_bottom": 'layer { name: "s" type: "Silence" }\n',
}
CHILD = """
import sys
from pycaffe_import import import_caffe
caffe = import_caffe()
net = caffe.Net(sys.argv[1], caffe.TEST)
print("BUILT", list(net.blobs))
"""
for name, text in NETS.items():
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    r = subprocess.run([sys.executable, "-c", CHILD, f.name], capture_output=True, text=True)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "BUILT" in l or "Check failed" in l
             or "takes" in l or "produces" in l or "blob" in l.lower() and "F" == l[:1]]
    print(name, "rc", r.returncode, lines[-2:])
    os.remove(f.name)
