"""Real Caffe's InsertSplits on loss-weighted tops: prints each net's layer names, blob names
and the loss a forward gives."""
import tempfile
import numpy as np
from pycaffe_import import import_caffe
caffe = import_caffe()

HEAD = ('input: "x" input_shape { dim: 2 dim: 3 }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" %s '
        'inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 } } }\n')
NETS = {
    # an explicit zero loss weight is no consumer: one reader, no split
    "zero_weight_one_reader": HEAD % "loss_weight: 0" +
        'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n',
    # a weighted top with two readers: three consumers, the loss on split top 0
    "weight_two_readers": HEAD % "loss_weight: 2" +
        'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n'
        'layer { name: "s" type: "Sigmoid" bottom: "y" top: "w" }\n',
    # (more loss weights than tops: Caffe aborts, "loss_weight must be unspecified or
    # specified once per top blob")
    # an in-place ReLU on y, then two readers of the in-place top: the split is the ReLU's
    "in_place_then_two_readers": HEAD % "" +
        'layer { name: "r" type: "ReLU" bottom: "y" top: "y" }\n'
        'layer { name: "a" type: "Sigmoid" bottom: "y" top: "p" }\n'
        'layer { name: "b" type: "TanH" bottom: "y" top: "q" }\n',
    # an in-place layer with a loss weight on its top, then two readers
    "in_place_weighted_two_readers": HEAD % "" +
        'layer { name: "r" type: "ReLU" bottom: "y" top: "y" loss_weight: 1 }\n'
        'layer { name: "a" type: "Sigmoid" bottom: "y" top: "p" }\n'
        'layer { name: "b" type: "TanH" bottom: "y" top: "q" }\n',
}
for name, text in NETS.items():
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    net = caffe.Net(f.name, caffe.TEST)
    net.blobs["x"].data[...] = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    out = net.forward()
    print(name)
    print("  layers", list(net._layer_names))
    print("  blobs", list(net.blobs))
    print("  outputs", {k: np.asarray(v).ravel().tolist() for k, v in out.items()})
