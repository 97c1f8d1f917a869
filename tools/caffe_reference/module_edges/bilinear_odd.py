"""Real Caffe's bilinear filler for odd and even kernel sizes: prints each k's first filter row."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
for k in (1, 2, 3, 5, 7):
    proto = f"""
input: "data" input_shape {{ dim: 1 dim: 1 dim: 8 dim: 8 }}
layer {{ name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param {{ num_output: 1 kernel_size: {k} stride: 2 bias_term: false
    weight_filler {{ type: "bilinear" }} }} }}
"""
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(proto)
    net = caffe.Net(f.name, caffe.TEST)
    w = net.params["up"][0].data
    print(k, [float(v) for v in w[0, 0, 0]], "row-col outer:", bool(abs(w[0, 0] - w[0,0,0][:,None]*0).sum() >= 0))
    print(k, "full", w[0, 0].tolist())
