"""Scale sB shares its factor f with sA (which learns it) but with lr_mult 0, and
propagate_down: false on its bottom c: Caffe's Scale Backward computes no factor diff
(param_propagate_down false) and so uses no scratch in c's diff, which stays 0.
(Mutant M109 took sB as learning f, leaving top diff x c in c's diff.)"""
import numpy as np

from either_net import assign, chosen, net_of

NET = """
layer { name: "in" type: "Input" top: "x1" top: "x2" top: "t"
  input_param { shape { dim: 2 dim: 3 dim: 2 } shape { dim: 2 dim: 4 } shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "sA" type: "Scale" bottom: "x1" top: "a" param { name: "f" }
  scale_param { axis: 1 num_axes: 1 filler { type: "constant" value: 1.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x2" top: "c0" inner_product_param { num_output: 6 weight_filler { type: "constant" value: 0.25 } } }
layer { name: "rs" type: "Reshape" bottom: "c0" top: "c" reshape_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "sB" type: "Scale" bottom: "c" top: "b" param { name: "f" lr_mult: 0 } propagate_down: false
  scale_param { axis: 1 num_axes: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "ab" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ab" bottom: "t" top: "loss" }
"""


def run(caffe_like):
    net = net_of(caffe_like, NET, caffe_like.TRAIN)
    assign(net.blobs["x1"].data, np.arange(12).reshape(2, 3, 2) / 4)
    assign(net.blobs["x2"].data, np.arange(8).reshape(2, 4) / 3 - 1)
    assign(net.blobs["t"].data, np.ones((2, 3, 2)))
    net.forward()
    net.backward()
    return {"c": np.round(np.asarray(net.blobs["c"].diff, np.float64).ravel(), 6).tolist(),
            "c0": np.round(np.asarray(net.blobs["c0"].diff, np.float64).ravel(), 6).tolist(),
            "f": np.round(np.asarray(net.params["sA"][0].diff, np.float64).ravel(), 6).tolist()}


if __name__ == "__main__":
    caffe, who = chosen()
    print(who, run(caffe))
