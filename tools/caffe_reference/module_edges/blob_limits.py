"""Real Caffe's Blob::Reshape limits, each net in a child process (a CHECK aborts it): 32 and
33 axes, INT_MAX and INT_MAX + 1 elements (Reshape allocates lazily: nothing is touched)."""
import os, subprocess, sys

CHILD = r'''
import sys, tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write('input: "x" input_shape { %s }\n' % sys.argv[1])
net = caffe.Net(f.name, caffe.TEST)
print("built")
'''
CASES = {
    "32_axes": "dim: 1 " * 32,
    "33_axes": "dim: 1 " * 33,
    "INT_MAX_elements": "dim: 2147483647",
    "INT_MAX+1_elements": "dim: 2147483648",
    "0_then_2^31": "dim: 0 dim: 2147483648",
}
for name, dims in CASES.items():
    p = subprocess.run([sys.executable, "-c", CHILD, dims], capture_output=True, text=True,
                       env={"GLOG_minloglevel": "0", "PATH": "/usr/bin",
                            "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    line = [l for l in p.stderr.splitlines() if "Check failed" in l or l[:1] == "F"]
    print(name, "->", p.stdout.strip() or f"aborted (rc {p.returncode})", "|",
          line[0][line[0].find("]") + 1:] if line else p.stderr.strip()[-150:])
