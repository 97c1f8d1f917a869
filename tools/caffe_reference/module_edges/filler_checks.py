"""Real Caffe's filler argument checks, each net built in a child process (a CHECK aborts it):
prints 'built' or 'aborted' and the glog line."""
from in_child import run_case

CASES = {
    "gaussian_sparse_over_num_outputs": 'type: "gaussian" std: 1 sparse: 5',
    "gaussian_sparse_equal_num_outputs": 'type: "gaussian" std: 1 sparse: 2',
    "gaussian_std_zero": 'type: "gaussian" std: 0',
    "uniform_min_eq_max": 'type: "uniform" min: 0.5 max: 0.5',
    "xavier_sparse_0": 'type: "xavier" sparse: 0',
    "constant_sparse_3": 'type: "constant" sparse: 3',
    "gaussian_sparse_minus2": 'type: "gaussian" sparse: -2',
}
CHILD = r'''
import sys, tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
proto = """input: "data" input_shape { dim: 4 dim: 3 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { %s } } }"""
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(proto % sys.argv[1])
net = caffe.Net(f.name, caffe.TEST)
print("built", net.params["ip"][0].data.tolist())
'''
for name, filler in CASES.items():
    run_case(name, CHILD, filler)
