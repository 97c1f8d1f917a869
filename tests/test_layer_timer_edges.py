"""runtime/layer_timer.py (a mutation round): a LayerTimer sums each layer's
forward and backward over the passes it watches (caffe.cpp adds each iteration's per-layer
timer), so three identical passes give three times one pass's. A clock that ticks once a
reading makes the passes identical."""
import types

from runtime import TRAIN, Net
from runtime import layer_timer
from runtime.layer_timer import LayerTimer

NET = """
layer { name: "x" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 4 } shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "act" type: "TanH" bottom: "ip" top: "act" }
layer { name: "loss" type: "EuclideanLoss" bottom: "act" bottom: "t" top: "loss" }
"""


class Ticks:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


def _timed(passes, monkeypatch):
    net = Net(NET, TRAIN, seed=0)
    monkeypatch.setattr(layer_timer, "time", types.SimpleNamespace(perf_counter=Ticks().perf_counter))
    with LayerTimer(net, lambda: None) as timer:
        for _ in range(passes):
            net.loss().backward()
            timer.collect_backward()
    return timer.forward, timer.backward


def test_the_layer_timer_sums_its_passes(monkeypatch):
    forward1, backward1 = _timed(1, monkeypatch)
    forward3, backward3 = _timed(3, monkeypatch)
    assert set(forward1.values()) == {1.0}                  # one reading before, one after
    assert backward1["ip"] > 0 and backward1["act"] > 0 and backward1["loss"] > 0
    assert forward3 == {k: 3 * v for k, v in forward1.items()}
    assert backward3 == {k: 3 * v for k, v in backward1.items()}
