"""An Accuracy with two tops (its per-class top read by pw, which reaches no loss; the other
unread) contributes no loss: Caffe's Backward does not run it (it would abort, NOT_IMPLEMENTED,
as ip's diff is needed), and Backward runs through. (Mutant M088 put pw's bottoms under the
loss, so the Accuracy seemed to contribute and ran a Backward it refuses.)"""
import numpy as np

from either_net import assign, chosen, net_of

NET = """
layer { name: "in" type: "Input" top: "x" top: "label" top: "t"
  input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } shape { dim: 2 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 4 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" top: "per_class" }
layer { name: "pw" type: "Power" bottom: "per_class" top: "pw" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "t" top: "loss" }
"""


def run(caffe_like):
    net = net_of(caffe_like, NET, caffe_like.TRAIN)
    assign(net.blobs["x"].data, np.arange(6).reshape(2, 3) / 5)
    assign(net.blobs["label"].data, [1, 3])
    assign(net.blobs["t"].data, np.ones((2, 4)))
    net.forward()
    net.backward()
    return np.round(np.asarray(net.params["ip"][0].diff, np.float64).ravel(), 6).tolist()


if __name__ == "__main__":
    caffe, who = chosen()
    print(who, run(caffe))
