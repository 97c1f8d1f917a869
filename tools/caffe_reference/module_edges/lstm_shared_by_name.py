"""mutants53: LSTM lstmB shares its three blobs by ParamSpec name with lstmA. In the TEST
phase Caffe's lstmB computes lstmA's values; in TRAIN, from t = 2 on, it computes what an
unshared lstmB with lstmA's W_xc and b_c and its own W_hc (its filler's 0.3) computes: the
recurrent layer re-shares its unrolled net's per-timestep blobs only in TEST. The runtime shares
in both (README, "Where real Caffe computes something else").
Run: `python3 lstm_shared_by_name.py` (pycaffe) or `python3 lstm_shared_by_name.py allconv`."""
import numpy as np

from either_net import assign, chosen, net_of

PHASE = []
SHARED = """
layer { name: "in" type: "Input" top: "x" top: "cont"
  input_param { shape { dim: 3 dim: 1 dim: 3 } shape { dim: 3 dim: 1 } } }
layer { name: "lstmA" type: "LSTM" bottom: "x" bottom: "cont" top: "ha"
  param { name: "w1" } param { name: "w2" } param { name: "w3" }
  recurrent_param { num_output: 2 weight_filler { type: "constant" value: -0.2 } } }
layer { name: "lstmB" type: "LSTM" bottom: "x" bottom: "cont" top: "hb"
  param { name: "w1" } param { name: "w2" } param { name: "w3" }
  recurrent_param { num_output: 2 weight_filler { type: "constant" value: 0.3 } } }
"""
UNSHARED = SHARED.replace('param { name: "w1" } param { name: "w2" } param { name: "w3" }\n  recurrent_param { num_output: 2 weight_filler { type: "constant" value: 0.3',
                          'recurrent_param { num_output: 2 weight_filler { type: "constant" value: 0.3')


def run(caffe_like, text, copy_xc=False):
    net = net_of(caffe_like, text, PHASE[0] if PHASE else caffe_like.TEST)
    for p in net.params["lstmA"]:
        n = np.asarray(p.data).size
        assign(p.data, np.linspace(-1, 1, n).reshape(np.asarray(p.data).shape))
    if copy_xc:                        # lstmB: lstmA's W_xc and b_c, its own W_hc (0.3)
        for i in (0, 1):
            assign(net.params["lstmB"][i].data, np.asarray(net.params["lstmA"][i].data))
    assign(net.blobs["x"].data, np.arange(9).reshape(3, 1, 3) / 5)
    assign(net.blobs["cont"].data, [[0], [1], [1]])
    net.forward()
    return {b: np.round(np.asarray(net.blobs[b].data, np.float64).ravel(), 6).tolist()
            for b in ("ha", "hb")}


if __name__ == "__main__":
    caffe, who = chosen()
    for name in ("TEST", "TRAIN"):
        PHASE[:] = [getattr(caffe, name)]
        print(who, name, "shared", run(caffe, SHARED))
        print(who, name, "unshared, lstmB's own W_hc", run(caffe, UNSHARED, copy_xc=True))
