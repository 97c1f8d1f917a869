"""Two LSTMs share their blobs by name: lstmA learns them (lr_mult 1), lstmB not (lr_mult 0)
but runs Backward (its input y needs a diff), and Caffe's recurrent Backward writes every
param diff of its unrolled net whenever it runs: the shared diffs hold both layers' parts.
(Mutant M100 kept lstmB's frozen reads detached: only lstmA's part.)"""
import numpy as np

from either_net import assign, chosen, net_of

NET = """
layer { name: "in" type: "Input" top: "x" top: "cont"
  input_param { shape { dim: 2 dim: 1 dim: 3 } shape { dim: 2 dim: 1 } } }
layer { name: "ip0" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 3 axis: 2 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "lstmA" type: "LSTM" bottom: "x" bottom: "cont" top: "ha"
  param { name: "w1" } param { name: "w2" } param { name: "w3" }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "lstmB" type: "LSTM" bottom: "y" bottom: "cont" top: "hb"
  param { name: "w1" lr_mult: 0 } param { name: "w2" lr_mult: 0 } param { name: "w3" lr_mult: 0 }
  recurrent_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ha" bottom: "hb" top: "loss" }
"""


def run(caffe_like):
    net = net_of(caffe_like, NET, caffe_like.TEST)   # TRAIN: see lstm_shared_by_name.py
    for p in net.params["lstmA"]:
        n = np.asarray(p.data).size
        assign(p.data, np.linspace(-1, 1, n).reshape(np.asarray(p.data).shape))
    assign(net.params["ip0"][0].data, [[0.5, -1.0, 0.3], [2.0, 0.25, -0.7], [0.1, 0.9, -0.4]])
    assign(net.params["ip0"][1].data, [0.0, 0.1, 0.2])
    assign(net.blobs["x"].data, np.arange(6).reshape(2, 1, 3) / 5)
    assign(net.blobs["cont"].data, [[0], [1]])
    net.forward()
    net.backward()
    return ([np.round(np.asarray(p.diff, np.float64).ravel()[:4], 6).tolist() for p in net.params["lstmA"]],
            float(np.abs(np.asarray(net.params["ip0"][0].diff)).sum()))


if __name__ == "__main__":
    caffe, who = chosen()
    print(who, run(caffe))
