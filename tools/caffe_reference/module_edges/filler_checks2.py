"""Real Caffe: bilinear on a non-square kernel, and fillers on an empty blob (num_output: 0),
each in a child process (a CHECK aborts it)."""
from in_child import run_case

CHILD = r'''
import sys, tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(sys.argv[1])
net = caffe.Net(f.name, caffe.TEST)
print("built", {k: [list(b.data.shape) for b in v] for k, v in net.params.items()})
'''
CASES = {
    "bilinear_2x4": 'input: "x" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
        'layer { name: "up" type: "Deconvolution" bottom: "x" top: "y" convolution_param { '
        'num_output: 1 kernel_h: 2 kernel_w: 4 bias_term: false weight_filler { type: "bilinear" } } }',
    "gaussian_empty": 'input: "x" input_shape { dim: 2 dim: 3 }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { '
        'num_output: 0 weight_filler { type: "gaussian" } } }',
    "constant_empty": 'input: "x" input_shape { dim: 2 dim: 3 }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { '
        'num_output: 0 } }',
}
for name, text in CASES.items():
    run_case(name, CHILD, text)
