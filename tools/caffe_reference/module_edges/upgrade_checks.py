"""Real Caffe's upgrade_proto behaviours: input without shape, BatchNorm 3-param upgrade
(param names kept -> sharing?), V1 layer blobs_lr/weight_decay, solver_type."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()

def net(text, phase=None):
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    return caffe.Net(f.name, caffe.TEST if phase is None else phase)

# 1. input without any shape, a DummyData making the blob
try:
    n = net('input: "data"\nlayer { name: "d" type: "DummyData" top: "data" dummy_data_param { shape { dim: 1 dim: 2 } } }\n')
    print("1 input without shape: built; layers", list(n._layer_names), "inputs", list(n.inputs))
except Exception as e:
    print("1 input without shape: refused", type(e).__name__, e)

# 2. BatchNorm with 3 named params in two layers: shared after the upgrade?
n = net('input: "data"\ninput_shape { dim: 2 dim: 3 }\n'
        + "".join(f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "data" top: "b{i}" '
                  'param { name: "m" lr_mult: 0 } param { name: "v" lr_mult: 0 } '
                  'param { name: "c" lr_mult: 0 } }\n' for i in (1, 2)))
n.params["bn1"][0].data[...] = 7.0
print("2 batchnorm named params shared after upgrade:", float(n.params["bn2"][0].data[0]) == 7.0,
      float(n.params["bn2"][0].data[0]))

# 3. BatchNorm with 3 params lr_mult 1: accepted?
try:
    n = net('input: "data"\ninput_shape { dim: 2 dim: 3 }\nlayer { name: "bn" type: "BatchNorm" bottom: "data" top: "b" '
            'param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }\n')
    print("3 batchnorm 3 params lr_mult 1: accepted")
except Exception as e:
    print("3 refused", e)
