"""Real Caffe's Blob::Reshape limits, each net in a child process (a CHECK aborts it): 32 and
33 axes, INT_MAX and INT_MAX + 1 elements (Reshape allocates lazily: nothing is touched)."""
from in_child import run_case

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
    run_case(name, CHILD, dims)
