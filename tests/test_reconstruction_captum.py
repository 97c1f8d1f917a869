"""Cross-check with Captum (skipped when it is not installed): guided backpropagation, the
deconvnet rule and plain backprop of one unit, on a plain torch copy of a small net and of
the paper's nets with max and global average pooling."""
import pytest
import torch
from torch import nn

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from runtime import TEST, Net
from runtime.reconstruction import activations, choose_unit, reconstruct

captum = pytest.importorskip("captum.attr")

NET = """
name: "plain"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "conv3" type: "Convolution" bottom: "conv2" top: "conv3"
  convolution_param { num_output: 5 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.3 } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
"""


def torch_copy(net):
    convs = [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, stride=2, padding=1),
             nn.Conv2d(6, 5, 3)]
    with torch.no_grad():
        for conv, name in zip(convs, ("conv1", "conv2", "conv3")):
            conv.weight.copy_(net.params[name][0].data)
            conv.bias.copy_(net.params[name][1].data)
    return nn.Sequential(*[m for c in convs for m in (c, nn.ReLU())])


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
@pytest.mark.parametrize("method, attribution", [
    ("guided", lambda m: captum.GuidedBackprop(m)),
    ("deconvnet", lambda m: captum.Deconvolution(m)),
    ("backprop", lambda m: captum.Saliency(m)),
])
def test_agrees_with_captum(method, attribution):
    net = Net(NET, TEST, seed=4)
    x = torch.randn(3, 3, 9, 9, generator=torch.Generator().manual_seed(2))
    for unit in [(1, 0, 2), (4, 2, 1), (0, 1, 1)]:
        ours = reconstruct(net, "conv3", x, method, [unit] * 3)
        kwargs = {"abs": False} if method == "backprop" else {}
        theirs = attribution(torch_copy(net)).attribute(x.clone().requires_grad_(), target=unit, **kwargs)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def sequential_copy(net, blob: str) -> nn.Sequential:
    """torch modules for a paper net's layers up to ``blob`` (its in-place ReLU included):
    Convolution, ReLU, MAX pooling with Caffe's rounding up, global AVE pooling."""
    modules = []
    for layer in net.layers:
        p = layer.param
        if p.type == "Convolution":
            c = p.convolution_param
            w, b = (v.data for v in net.params[p.name])
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                             c.stride[0] if c.stride else 1, c.pad[0] if c.pad else 0)
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(b)
            modules.append(conv)
        elif p.type == "ReLU":
            modules.append(nn.ReLU())
        elif p.type == "Pooling":
            q = p.pooling_param
            modules.append(nn.AdaptiveAvgPool2d(1) if q.global_pooling else
                           nn.MaxPool2d(q.kernel_size, q.stride, q.pad, ceil_mode=True))
        elif p.type not in ("Input", "Dropout"):
            raise AssertionError(f"no copy of {p.type}")
        if blob in p.top and p.type != "Convolution":
            return nn.Sequential(*modules)
    raise AssertionError(f"no blob {blob}")


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
@pytest.mark.parametrize("variant, blob, channels", [
    ("convpool-c", "conv7", [5, 0, 17]),          # after two max poolings
    ("model-c", "conv4", [3, 40]),
    ("all-c", "global_pool", [2, 7]),             # global average pooling
])
def test_paper_nets_agree_with_captum(variant, blob, channels):
    net = Net(render_net(get_variant(variant), NetOptions(deploy=True)), TEST, seed=3)
    copy = sequential_copy(net, blob)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    nonzero = 0
    activation = activations(net, blob, x)[0]
    for unit in [choose_unit(activation, (c,)) for c in channels]:
        for method, attribution, kwargs in [("guided", captum.GuidedBackprop, {}),
                                            ("deconvnet", captum.Deconvolution, {}),
                                            ("backprop", captum.Saliency, {"abs": False})]:
            ours = reconstruct(net, blob, x, method, [unit])
            theirs = attribution(copy).attribute(x.clone().requires_grad_(), target=unit,
                                                 **kwargs)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
            nonzero += bool(theirs.abs().max() > 0)
    assert nonzero >= 2 * len(channels)     # dead units alone would prove nothing
