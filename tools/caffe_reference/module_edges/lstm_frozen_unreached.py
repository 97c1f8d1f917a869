"""An LSTM whose blobs all have lr_mult 0, on inputs that need no diff, runs no Backward in
Caffe: its blobs' diffs and its top's diff stay 0 after a backward (the InnerProduct above it
learns but propagates nothing down). (Mutant M099 gave the LSTM's blobs grads anyway.)"""
import numpy as np

from either_net import assign, chosen, net_of

NET = """
layer { name: "in" type: "Input" top: "x" top: "cont" top: "t"
  input_param { shape { dim: 2 dim: 1 dim: 3 } shape { dim: 2 dim: 1 } shape { dim: 2 dim: 2 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "h" top: "ip" inner_product_param { num_output: 2 axis: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "fl" type: "Reshape" bottom: "ip" top: "flat" reshape_param { shape { dim: 2 dim: 2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "flat" bottom: "t" top: "loss" }
"""


def run(caffe_like):
    net = net_of(caffe_like, NET, caffe_like.TRAIN)
    for p in net.params["lstm"]:
        assign(p.data, np.linspace(-1, 1, np.asarray(p.data).size).reshape(np.asarray(p.data).shape))
    assign(net.params["ip"][0].data, [[0.5, -1.0], [2.0, 0.25]])
    assign(net.params["ip"][1].data, [0.0, 0.0])
    assign(net.blobs["x"].data, np.arange(6).reshape(2, 1, 3) / 5)
    assign(net.blobs["cont"].data, [[0], [1]])
    assign(net.blobs["t"].data, np.ones((2, 2)))
    net.forward()
    net.backward()
    return ([float(np.abs(np.asarray(p.diff)).sum()) for p in net.params["lstm"]],
            float(np.abs(np.asarray(net.blobs["h"].diff)).sum()),
            float(np.abs(np.asarray(net.params["ip"][0].diff)).sum()))


if __name__ == "__main__":
    caffe, who = chosen()
    print(who, run(caffe))
