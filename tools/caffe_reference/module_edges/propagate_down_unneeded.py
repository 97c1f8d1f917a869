"""propagate_down: true on a bottom no layer below needs (an input), on a layer with no
learnable blob: Caffe's layer_need_backward comes from the bottoms' blob need (not from
propagate_down), so the ReLU runs no Backward: x's diff stays 0, though the loss above it
runs Backward (for y, from a learnable InnerProduct).
(Mutant M101 started a diff at x anyway.)"""
import numpy as np

from either_net import assign, chosen, net_of

NET = """
layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }
layer { name: "relu" type: "ReLU" bottom: "x" top: "r" propagate_down: true }
layer { name: "ip" type: "InnerProduct" bottom: "t" top: "y" inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "r" bottom: "y" top: "loss" }
"""


def run(caffe_like):
    net = net_of(caffe_like, NET, caffe_like.TRAIN)
    assign(net.blobs["x"].data, np.arange(6).reshape(2, 3) - 2.0)
    assign(net.blobs["t"].data, np.ones((2, 3)))
    net.forward()
    net.backward()
    return {b: np.asarray(net.blobs[b].diff, np.float64).ravel().tolist() for b in ("x", "r", "y")}


if __name__ == "__main__":
    caffe, who = chosen()
    print(who, run(caffe))
