"""A parameter's diff written by hand after a backward (a mutation round: ParamView.diff as a
copy of the gradient passed every other test)."""
from __future__ import annotations

import pytest
import torch

from runtime import TRAIN, AllconvError, Net

NET = ('layer { name: "in" type: "Input" top: "data" top: "target" input_param { '
       'shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }\n'
       'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { '
       'num_output: 2 weight_filler { type: "constant" value: 0.5 } '
       'bias_filler { type: "constant" value: 0.25 } } }\n'
       'layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }\n')


def test_a_param_diff_written_after_a_backward_is_what_the_next_backward_adds_onto():
    """pycaffe's net.params[l][i].diff is the Blob's diff memory: written after a backward, it
    reads back as written, and the next backward adds its gradient onto it. Values printed by
    tools/caffe_reference/module_edges/param_diff_ref.py on the reference pycaffe
    (param_diff_ref.out)."""
    net = Net(NET, TRAIN)
    net.blobs["data"].data[...] = torch.arange(6.0).reshape(2, 3) / 4
    net.blobs["target"].data[...] = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    net.forward()
    net.backward()
    weight, bias = net.params["ip"]
    assert torch.allclose(weight.diff, torch.tensor([[0.46875, 0.578125, 0.6875],
                                                     [-0.09375, 0.078125, 0.25]]))
    weight.diff[...] = 7
    bias.diff[...] = 0
    assert torch.equal(weight.diff, torch.full((2, 3), 7.0))
    assert torch.equal(bias.diff, torch.zeros(2))
    net.forward()
    net.backward()
    assert torch.allclose(weight.diff, torch.tensor([[7.46875, 7.578125, 7.6875],
                                                     [6.90625, 7.078125, 7.25]]))
    assert torch.allclose(bias.diff, torch.tensor([0.4375, 0.6875]))


def test_a_parameter_reshaped_to_another_shape_is_refused_in_one_line():
    """pycaffe's Blob.reshape on a parameter: to its own shape nothing changes; to another, the
    layer would read the new count in its old shape, so it is refused by name."""
    net = Net(NET, TRAIN)
    weight = net.params["ip"][0]
    weight.reshape(2, 3)
    assert weight.shape == (2, 3)
    with pytest.raises(AllconvError, match=r"ip's parameter 0 keeps its layer's shape \(2, 3\)"):
        weight.reshape(2, 5)
    assert weight.data.shape == (2, 3)
