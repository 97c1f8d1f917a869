"""Captum against the reconstructions on hand-made nets, through a torch copy built layer by
layer from the runtime's parameters: in-place and separate ReLUs, Caffe's ceil-mode,
overlapping and padded MAX and AVE pools, global pooling + InnerProduct + Softmax, Dropout in
a TEST net, ELU/Sigmoid/TanH, grouped and dilated convs, Concat and Eltwise SUM, and MAX-pool
ties (rounded inputs) under every rule; batch 2 with another unit per image. Leaky ReLUs and
a ReLU input read by another layer are left out: README names those differences."""
import pytest
import torch
from torch import nn

from runtime import TEST, Net
from runtime.proto import pb
from runtime.reconstruction import activations, choose_unit, reconstruct

captum = pytest.importorskip("captum.attr")


class Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *xs):
        return self.function(*xs)


def torch_layer(net, layer) -> nn.Module:
    """An nn.Module computing ``layer`` with the net's parameters; ReLUs are nn.ReLU, the
    modules Captum hooks."""
    p, kind = layer.param, layer.param.type
    weights = [v.data.detach().clone() for v in net.params.get(p.name, [])]
    if kind == "Convolution":
        c, w = p.convolution_param, weights[0]
        module = nn.Conv2d(w.shape[1] * c.group, w.shape[0], tuple(w.shape[2:]),
                           tuple(layer.stride), tuple(layer.pad), tuple(layer.dilation), c.group,
                           bias=c.bias_term)
    elif kind == "InnerProduct":
        w = weights[0]
        module = nn.Linear(w.shape[1], w.shape[0], bias=p.inner_product_param.bias_term)
    elif kind == "Pooling":
        windows = layer.windows(net.blobs[layer.bottoms[0]].shape[2:])
        kernel, pad, stride = (tuple(w[i] for w in windows) for i in (1, 2, 3))
        if layer.method == pb.PoolingParameter.MAX:
            return nn.MaxPool2d(kernel, stride, pad, ceil_mode=layer.ceil)
        return nn.AvgPool2d(kernel, stride, pad, ceil_mode=layer.ceil, count_include_pad=True)
    else:
        return {"ReLU": nn.ReLU, "ELU": lambda: nn.ELU(p.elu_param.alpha),
                "Sigmoid": nn.Sigmoid, "TanH": nn.Tanh, "Dropout": nn.Identity,
                "Softmax": lambda: nn.Softmax(dim=1),
                "Concat": lambda: Lambda(lambda *xs: torch.cat(xs, 1)),
                "Eltwise": lambda: Lambda(lambda *xs: sum(xs)),
                "Split": lambda: Lambda(lambda x: (x,) * len(layer.tops))}[kind]()
    with torch.no_grad():
        module.weight.copy_(weights[0])
        if module.bias is not None:
            module.bias.copy_(weights[1])
    return nn.Sequential(nn.Flatten(1), module) if kind == "InnerProduct" else module


class TorchCopy(nn.Module):
    """The net up to ``blob``, one torch module per layer, run in the net's layer order."""

    def __init__(self, net, blob: str):
        super().__init__()
        self.blob, self.input = blob, net.layers[0].tops[0]
        layers = [layer for layer in net.layers if layer.bottoms]
        self.steps = [(list(layer.bottoms), list(layer.tops)) for layer in layers]
        self.layers = nn.ModuleList(torch_layer(net, layer) for layer in layers)

    def forward(self, x):
        blobs = {self.input: x}
        for module, (bottoms, tops) in zip(self.layers, self.steps):
            out = module(*(blobs[b] for b in bottoms))
            blobs.update(zip(tops, out if isinstance(out, tuple) else (out,)))
        return blobs[self.blob]


def data(c, h, w):
    return (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: {c} dim: {h} dim: {w} }} }} }}\n')


def conv(name, bottom, n, k=3, pad=1, stride=1, extra=""):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: {n} kernel_size: {k} pad: {pad} stride: {stride} '
            f'{extra} weight_filler {{ type: "gaussian" std: 0.4 }} '
            f'bias_filler {{ type: "gaussian" std: 0.2 }} }} }}\n')


def layer(name, kind, bottom, top=None, extra=""):
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" '
            f'top: "{top or bottom}" {extra} }}\n')


def relu(name, bottom, top=None):
    return layer(name, "ReLU", bottom, top)


def pool(name, bottom, k, stride, pad=0, method="MAX"):
    return layer(name, "Pooling", bottom, name, f"pooling_param {{ pool: {method} "
                 f"kernel_size: {k} stride: {stride} pad: {pad} }}")


def ip(name, bottom, n):
    return layer(name, "InnerProduct", bottom, name, f'inner_product_param {{ num_output: {n} '
                 'weight_filler { type: "gaussian" std: 0.5 } '
                 'bias_filler { type: "gaussian" std: 0.2 } }')


NETS = {
    "in_place": data(3, 11, 11) + conv("c1", "data", 5) + relu("r1", "c1")
    + conv("c2", "c1", 6, stride=2) + relu("r2", "c2") + conv("c3", "c2", 4) + relu("r3", "c3"),
    "separate_relus": data(3, 11, 11) + conv("c1", "data", 5) + relu("r1", "c1", "a1")
    + conv("c2", "a1", 6, stride=2) + relu("r2", "c2", "a2") + conv("c3", "a2", 4)
    + relu("r3", "c3", "a3"),
    "ceil_pools": data(3, 12, 12) + conv("c1", "data", 5) + relu("r1", "c1")
    + pool("p1", "c1", 3, 2) + conv("c2", "p1", 6) + relu("r2", "c2")
    + pool("p2", "c2", 2, 2, pad=1) + conv("c3", "p2", 4, k=2, pad=0) + relu("r3", "c3")
    + pool("p3", "c3", 3, 1, pad=1),
    "ave_pools": data(3, 13, 13) + conv("c1", "data", 5) + relu("r1", "c1")
    + pool("p1", "c1", 3, 2, pad=1, method="AVE") + conv("c2", "p1", 6) + relu("r2", "c2")
    + pool("p2", "c2", 2, 2, method="AVE"),
    "global_pool_ip_softmax": data(3, 9, 9) + conv("c1", "data", 8) + relu("r1", "c1")
    + layer("d1", "Dropout", "c1", extra="dropout_param { dropout_ratio: 0.5 }")
    + conv("c2", "c1", 6, stride=2) + relu("r2", "c2")
    + layer("gp", "Pooling", "c2", "gp", "pooling_param { pool: AVE global_pooling: true }")
    + ip("ip", "gp", 7) + relu("r3", "ip") + ip("ip2", "ip", 5)
    + layer("prob", "Softmax", "ip2", "prob"),
    "elu_sigmoid_tanh": data(3, 9, 9) + conv("c1", "data", 5) + layer("e1", "ELU", "c1")
    + conv("c2", "c1", 6) + relu("r2", "c2") + conv("c3", "c2", 6) + layer("s3", "Sigmoid", "c3")
    + conv("c4", "c3", 4) + layer("t4", "TanH", "c4") + conv("c5", "c4", 4) + relu("r5", "c5"),
    "max_pool_ties_after_relu": data(2, 8, 8) + conv("c1", "data", 4, k=1, pad=0)
    + relu("r1", "c1") + pool("p1", "c1", 3, 2) + conv("c2", "p1", 3) + relu("r2", "c2"),
    "max_pool_ties_on_input": data(2, 8, 8) + pool("p0", "data", 2, 2) + conv("c1", "p0", 4)
    + relu("r1", "c1") + pool("p1", "c1", 3, 1, pad=1) + conv("c2", "p1", 3) + relu("r2", "c2"),
    "concat_eltwise": data(3, 9, 9) + conv("c1", "data", 4) + relu("r1", "c1")
    + conv("a", "c1", 3) + relu("ra", "a") + conv("b", "c1", 3, k=1, pad=0) + relu("rb", "b")
    + 'layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }\n'
    + conv("c2", "cat", 4) + relu("r2", "c2") + conv("c3", "c1", 4) + relu("r3", "c3")
    + 'layer { name: "sum" type: "Eltwise" bottom: "c2" bottom: "c3" top: "sum" }\n'
    + relu("rs", "sum"),
    "relu_on_input": data(3, 9, 9) + relu("r0", "data") + conv("c1", "data", 5)
    + relu("r1", "c1"),
    "dilated_grouped": data(4, 11, 11) + conv("c1", "data", 6, extra="group: 2 dilation: 2")
    + relu("r1", "c1") + conv("c2", "c1", 4, pad=0, stride=2, extra="bias_term: false")
    + relu("r2", "c2"),
}


@pytest.mark.filterwarnings("ignore:Setting backward hooks")
@pytest.mark.parametrize("name", NETS)
def test_every_blob_of_a_hand_made_net_agrees_with_captum(name):
    """Each blob: the image's strongest unit and a random one, by the three methods."""
    net = Net(NETS[name], TEST, seed=1)
    generator = torch.Generator().manual_seed(7)
    x = torch.randn((2,) + tuple(net.blobs["data"].shape[1:]), generator=generator)
    if "ties" in name:
        x = torch.round(x)
    drawn = 0
    for blob in list(net.blobs)[1:]:
        act = activations(net, blob, x)
        units = [choose_unit(act[0], None),
                 tuple(int(torch.randint(n, (), generator=generator)) for n in act.shape[1:])]
        copy = TorchCopy(net, blob)
        for method, attribution, options in [("guided", captum.GuidedBackprop, {}),
                                             ("deconvnet", captum.Deconvolution, {}),
                                             ("backprop", captum.Saliency, {"abs": False})]:
            ours = reconstruct(net, blob, x, method, units)
            theirs = attribution(copy).attribute(
                x.clone().requires_grad_(), target=[u[0] if len(u) == 1 else u for u in units],
                **options)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
            drawn += bool(theirs.abs().max() > 0)
    assert drawn > 0
