"""Real Caffe's msra filler ignores FillerParameter.mean: prints the weights' mean and std."""
import tempfile
from pycaffe_import import import_caffe
caffe = import_caffe()
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write('input: "x" input_shape { dim: 1 dim: 50 }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { '
            'num_output: 2000 weight_filler { type: "msra" mean: 5 } } }\n')
w = caffe.Net(f.name, caffe.TEST).params["ip"][0].data
print("msra mean: 5 on (2000, 50): mean %.4f std %.4f (sqrt(2/50) = 0.2)" % (w.mean(), w.std()))
