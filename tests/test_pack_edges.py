"""From a mutation round: corners of runtime/pack.py that tests/test_pack.py left open."""
import pytest
import torch

from runtime import TEST, TRAIN
from runtime.errors import AllconvError
from runtime.net import Net
from runtime.pack import Member, pack_inputs, pack_net, packed_net

INPUT = ('name: "n" layer { name: "in" type: "Input" top: "data" top: "label" '
         'input_param { shape { dim: 4 dim: 4 dim: 6 dim: 6 } shape { dim: 4 } } }\n')
POOLED = ('layer { name: "gp" type: "Pooling" bottom: "data" top: "d" '
          'pooling_param { pool: AVE global_pooling: true } }\n')
SCORES = ('layer { name: "c" type: "Convolution" bottom: "d" top: "s" convolution_param { '
          'num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } '
          'bias_filler { type: "gaussian" std: 0.5 } } }\n')
LOSS = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }\n'
ACCURACY = 'layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "acc" }\n'
SOLO = INPUT + POOLED + SCORES + LOSS


def test_a_one_axis_input_that_no_loss_reads_is_refused_in_one_line():
    text = SOLO + 'layer { name: "in2" type: "Input" top: "x" input_param { shape { dim: 4 } } }\n'
    Net(text, TRAIN)        # a valid solo net
    with pytest.raises(AllconvError, match=r"cannot pack layer 'in2' \(Input\): top 'x' of shape "
                                           r"\(4,\) has no channel axis"):
        pack_net(text, 2)


def test_a_member_of_a_pack_built_as_a_plain_net_is_refused_in_one_line(tmp_path):
    """member_weights writes the solo layers' definitions, which only packed_net's PackedNet
    keeps (an AttributeError before)."""
    pack = Net(pack_net(SOLO, 2), TRAIN)
    with pytest.raises(AllconvError, match="^member_weights needs the net packed_net builds"):
        Member(pack, None, 0, 2).save(tmp_path / "m.caffemodel")
    Member(packed_net(SOLO, TRAIN, (1, 2)), None, 0, 2).save(tmp_path / "m.caffemodel")
    assert Net(SOLO, TRAIN, weights=str(tmp_path / "m.caffemodel")).layer_names[-1] == "loss"


DROPPED = INPUT + POOLED + 'layer { name: "drop" type: "Dropout" bottom: "d" top: "d" }\n' \
    + SCORES + LOSS


def test_a_pack_refuses_members_that_are_packs_themselves():
    from runtime.pack import pack_seeds
    pack, inner = packed_net(DROPPED, TRAIN, (1, 2)), packed_net(DROPPED, TRAIN, (3, 4))
    with pytest.raises(AllconvError, match="layer 'drop': a member's net is itself a pack"):
        pack_seeds(pack, [inner, inner])


def test_a_member_reads_a_file_without_its_layers_as_an_error_whatever_require_all_says(tmp_path):
    """Member.copy_from: every learnable layer must find its own blocks ("require_all is
    always true here"): a member left with the pack's fillers would be no solo run's."""
    pack = packed_net(SOLO, TRAIN, (1, 2))
    other = Net(SOLO.replace('name: "c"', 'name: "other"'), TRAIN, seed=3)
    path = tmp_path / "other.caffemodel"
    other.save(path)
    before = [p.detach().clone() for p in pack.learnable_params]
    for require_all in (True, False):
        with pytest.raises(AllconvError, match="no weights for layer\\(s\\) c "):
            Member(pack, None, 0, 2).copy_from(path, require_all=require_all)
    assert all(torch.equal(a, b) for a, b in zip(before, pack.learnable_params))


def test_an_accuracy_alone_gets_a_label_input_per_member():
    net = Net(pack_net(INPUT + POOLED + SCORES + ACCURACY, 2), TEST)
    assert net.inputs == ["data", "label_m0", "label_m1"]
    assert [l.name for l in net.layers if l.type_name == "Accuracy"] == ["acc_m0", "acc_m1"]


def test_a_loss_whose_labels_are_computed_is_refused():
    """Labels computed from the packed blobs would be packed too, not one input per member."""
    data_only = ('layer { name: "in" type: "Input" top: "data" '
                 'input_param { shape { dim: 4 dim: 4 dim: 6 dim: 6 } } }\n')
    text = (data_only + POOLED + SCORES
            + 'layer { name: "lab" type: "Convolution" bottom: "d" top: "lab" convolution_param '
              '{ num_output: 1 kernel_size: 1 weight_filler { type: "constant" } } }\n'
            + LOSS.replace('bottom: "label"', 'bottom: "lab"'))
    Net(text, TRAIN)     # a valid solo net
    with pytest.raises(AllconvError, match=r"layer 'loss' \(SoftmaxWithLoss\): its bottoms must "
                                           "be the packed scores and a label Input top"):
        pack_net(text, 2)


def test_a_solo_net_without_a_learnable_layer_of_the_pack_is_named():
    from runtime.pack import pack_weights
    pack = packed_net(SOLO, TRAIN, (1, 2))
    renamed = Net(SOLO.replace('name: "c"', 'name: "other"'), TRAIN, seed=2)
    with pytest.raises(AllconvError, match="^member 1's net has no layer 'c'$"):
        pack_weights(pack, [Net(SOLO, TRAIN, seed=1), renamed])


def test_members_inputs_of_other_names_or_none_are_one_line():
    """pack_inputs let an IndexError (no member) and a KeyError (member 1 lacking member 0's
    label) through, and dropped a label only member 1 gave."""
    pack = packed_net(SOLO, TRAIN, seeds=[0, 1])
    x, y = torch.zeros(4, 4, 6, 6), torch.zeros(4)
    with pytest.raises(AllconvError, match="no member's inputs"):
        pack_inputs(pack, [])
    for members in ([{"data": x, "label": y}, {"data": x}], [{"data": x}, {"data": x, "label": y}]):
        with pytest.raises(AllconvError, match="give every member the same inputs"):
            pack_inputs(pack, members)
    assert set(pack_inputs(pack, [{"data": x, "label": y}] * 2)) == {"data", "label_m0",
                                                                     "label_m1"}
