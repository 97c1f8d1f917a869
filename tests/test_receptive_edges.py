"""runtime/reconstruction/receptive.py (a mutation round): a padded,
overlapping pooling, a dilated convolution, a union of windows with different starts, a 4-d
blob whose spatial shape a layer changes, and a 2-d input. Each expected window is checked
against the positions an input gradient actually reaches."""
import torch

from runtime import TEST, Net
from runtime.geometry import Window
from runtime.reconstruction import receptive_windows

NET = """
layer { name: "in" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } shape { dim: 1 dim: 3 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "dil" type: "Convolution" bottom: "data" top: "dil"
  convolution_param { num_output: 1 kernel_size: 3 dilation: 2 pad: 2 weight_filler { type: "constant" value: 1 } } }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 1 kernel_size: 3 pad: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "c2" type: "Convolution" bottom: "data" top: "c2"
  convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "constant" value: 1 } } }
layer { name: "sum" type: "Eltwise" bottom: "c2" bottom: "c1" top: "sum" }
layer { name: "fold" type: "Reshape" bottom: "sum" top: "fold" reshape_param { shape { dim: 1 dim: 4 dim: 6 dim: 6 } } }
"""




def test_receptive_windows_of_padded_pooling_dilation_and_unions():
    windows = receptive_windows(Net(NET, TEST, seed=0))
    assert windows["pool"] == (Window(-1, 3, 2),) * 2          # 3x3, stride 2, pad 1
    assert windows["dil"] == (Window(-2, 5, 1),) * 2           # 3x3 dilated by 2: 5 wide
    assert windows["sum"] == (Window(-1, 3, 1),) * 2           # 1x1 and 3x3 pad 1: the 3x3's
    assert windows["fold"] is None                             # 12x12 folded to 6x6: no window
    assert windows["label"] is None                            # a 2-d input blob
    assert windows["data"] == (Window(), Window())


def test_the_windows_hold_exactly_what_the_gradient_reaches():
    """Cross-check of the expected windows: the input positions a unit's gradient reaches."""
    import torch.nn.functional as F
    x = torch.ones(1, 1, 12, 12, requires_grad=True)
    for top, window in ((F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), Window(-1, 3, 2)),
                        (F.conv2d(x, torch.ones(1, 1, 3, 3), padding=2, dilation=2),
                         Window(-2, 5, 1))):
        for i in (0, 3):
            x.grad = None
            top[0, 0, i, i].backward(retain_graph=True)
            rows = x.grad[0, 0].abs().sum(1).nonzero().flatten().tolist()
            begin, end = window.span(i, 12)
            # dilation touches every other row: the window bounds them
            assert rows[0] == begin and rows[-1] == end - 1
