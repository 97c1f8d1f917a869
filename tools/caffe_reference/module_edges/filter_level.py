"""Caffe's StateMeetsRule reads min_level/max_level only where the rule sets them: at a negative
level, a rule without min_level still matches (and a positive level, one without max_level)."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
NET = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "a" type: "ReLU" bottom: "x" top: "a" include { phase: TEST } }
layer { name: "b" type: "ReLU" bottom: "x" top: "b" include { phase: TEST max_level: 5 } }
layer { name: "c" type: "ReLU" bottom: "x" top: "c" include { min_level: -3 } }
layer { name: "d" type: "ReLU" bottom: "x" top: "d" exclude { stage: "nope" } }
"""
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(NET)
for level in (-2, -4, 0, 3):
    net = caffe.Net(f.name, caffe.TEST, level=level)
    print(level, list(net._layer_names))
