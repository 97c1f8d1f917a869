"""InsertSplits' layer and blob names against the reference Caffe. Expected names:
tools/caffe_reference/module_edges/splits.py, printed by pycaffe on the reference build."""
import numpy as np
import pytest
import torch

from runtime import TEST, Net

HEAD = ('input: "x" input_shape { dim: 2 dim: 3 }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" %s '
        'inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 } } }\n')
NETS = {
    "zero_weight_one_reader": (
        HEAD % "loss_weight: 0" + 'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n',
        ['input', 'ip', 'r'], ['x', 'y', 'z']),
    "weight_two_readers": (
        HEAD % "loss_weight: 2" + 'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n'
        'layer { name: "s" type: "Sigmoid" bottom: "y" top: "w" }\n',
        ['input', 'ip', 'y_ip_0_split', 'r', 's'],
        ['x', 'y', 'y_ip_0_split_0', 'y_ip_0_split_1', 'y_ip_0_split_2', 'z', 'w']),
    "in_place_then_two_readers": (
        HEAD % "" + 'layer { name: "r" type: "ReLU" bottom: "y" top: "y" }\n'
        'layer { name: "a" type: "Sigmoid" bottom: "y" top: "p" }\n'
        'layer { name: "b" type: "TanH" bottom: "y" top: "q" }\n',
        ['input', 'ip', 'r', 'y_r_0_split', 'a', 'b'],
        ['x', 'y', 'y_r_0_split_0', 'y_r_0_split_1', 'p', 'q']),
    "in_place_weighted_two_readers": (
        HEAD % "" + 'layer { name: "r" type: "ReLU" bottom: "y" top: "y" loss_weight: 1 }\n'
        'layer { name: "a" type: "Sigmoid" bottom: "y" top: "p" }\n'
        'layer { name: "b" type: "TanH" bottom: "y" top: "q" }\n',
        ['input', 'ip', 'r', 'y_r_0_split', 'a', 'b'],
        ['x', 'y', 'y_r_0_split_0', 'y_r_0_split_1', 'y_r_0_split_2', 'p', 'q']),
}


@pytest.mark.parametrize("name", NETS)
def test_split_layers_and_blobs_are_caffes(name):
    text, layers, blobs = NETS[name]
    net = Net(text, TEST)
    assert list(net._layer_names) == layers
    assert list(net.blobs) == blobs


def test_the_loss_weight_goes_to_split_top_0_which_is_an_output():
    # module_edges/splits.py: weight_two_readers outputs y_ip_0_split_0 (the weighted use), z, w
    text, _, _ = NETS["weight_two_readers"]
    net = Net(text, TEST)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 10
    out = net.forward(x=x)
    assert sorted(out) == ["w", "y_ip_0_split_0", "z"]
    assert np.allclose(np.asarray(out["y_ip_0_split_0"]).ravel(), [0.15, 0.15, 0.6, 0.6])
    assert np.allclose(np.asarray(out["w"]).ravel(),
                       [0.5374298, 0.5374298, 0.6456563, 0.6456563], atol=1e-6)


def test_an_explicit_split_named_like_an_inserted_one_of_another_blob_is_the_users():
    # is_inserted_split (export's list of blobs hides inserted splits' tops): Caffe's name is
    # <blob>_<layer>_<top>_split, so a Split whose name does not start with its bottom's is
    # the prototxt's own
    from runtime.insert_splits import is_inserted_split, split_layer_name
    from runtime.proto import pb
    ours = pb.LayerParameter(name=split_layer_name("ip", "y", 0), type="Split", bottom=["y"],
                             top=["y_ip_0_split_0", "y_ip_0_split_1"])
    theirs = pb.LayerParameter(name="fork_split", type="Split", bottom=["y"],
                               top=["fork_split_0", "fork_split_1"])
    assert is_inserted_split(ours) and not is_inserted_split(theirs)
