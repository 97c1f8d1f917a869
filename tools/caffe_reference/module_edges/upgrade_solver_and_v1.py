"""Real Caffe on old solver_type values, a V1 data layer's own transform_param, and extra
input_shape entries: prints what the upgraded net / solver is."""
import os, tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
tmp = tempfile.mkdtemp()
net_path = os.path.join(tmp, "net.prototxt")
with open(net_path, "w") as f:
    f.write('input: "x" input_shape { dim: 2 dim: 3 }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
            'inner_product_param { num_output: 2 } }\n')
for old in ("SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA", "ADAM"):
    path = os.path.join(tmp, f"{old}.prototxt")
    with open(path, "w") as f:
        f.write(f'net: "{net_path}"\nbase_lr: 0.01\nlr_policy: "fixed"\nsolver_type: {old}\n'
                + ("momentum: 0.9\n" if old in ("ADAM", "ADADELTA") else ""))
    s = caffe.get_solver(path)
    print("solver_type", old, "->", type(s).__name__)

# extra input_shape entries past the inputs
p = os.path.join(tmp, "extra.prototxt")
with open(p, "w") as f:
    f.write('input: "x"\ninput_shape { dim: 2 dim: 3 }\ninput_shape { dim: 5 }\n')
n = caffe.Net(p, caffe.TEST)
print("extra input_shape: built, blobs", {k: v.data.shape for k, v in n.blobs.items()})
