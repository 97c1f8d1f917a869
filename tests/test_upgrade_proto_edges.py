"""upgrade_proto details against the reference Caffe (pycaffe scripts in
tools/caffe_reference/module_edges/)."""
import pytest

from runtime import prototxt
from runtime.errors import AllconvError


# module_edges/upgrade_solver_and_v1.py: caffe.get_solver on `solver_type: X` gives these classes
@pytest.mark.parametrize("old,new", [("SGD", "SGD"), ("NESTEROV", "Nesterov"),
                                     ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
                                     ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_every_old_solver_type_becomes_the_type_of_caffes_solver(old, new):
    solver = prototxt.parse_solver(f'net: "n.prototxt"\nsolver_type: {old}\n')
    assert solver.type == new and not solver.HasField("solver_type")


def test_extra_input_shapes_past_the_inputs_are_ignored():
    # module_edges/upgrade_solver_and_v1.py: one input, two input_shape entries: built, x (2, 3)
    net = prototxt.parse_net('input: "x"\ninput_shape { dim: 2 dim: 3 }\ninput_shape { dim: 5 }\n')
    assert [(l.name, l.type, list(l.top)) for l in net.layer] == [("input", "Input", ["x"])]
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[2, 3]]


def test_two_inputs_need_eight_input_dims():
    # Caffe reads input_dim 4i .. 4i+3 for input i (past the end: undefined there)
    with pytest.raises(AllconvError, match="2 net input\\(s\\) need 8 input_dim values, got 4"):
        prototxt.parse_net('input: "a"\ninput: "b"\n'
                           + "".join(f"input_dim: {d}\n" for d in (1, 2, 3, 4)))


def test_a_v1_data_layers_own_transform_param_is_kept_beside_the_moved_fields():
    # upgrade_proto.cpp: UpgradeNetDataTransformation moves only the fields data_param has
    # (has_scale() ...), and UpgradeV1LayerParameter copies the V1 layer's transform_param.
    # (Not run on the reference build: it has no LMDB/LevelDB/OpenCV for a V1 data layer.)
    net = prototxt.parse_net(
        'layers { name: "d" type: DATA top: "data" top: "label" '
        'data_param { source: "db" batch_size: 2 scale: 0.5 } '
        'transform_param { mirror: true crop_size: 3 mean_value: 4 } }\n')
    t = net.layer[0].transform_param
    assert (t.scale, t.mirror, t.crop_size, list(t.mean_value)) == (0.5, True, 3, [4.0])
    assert not net.layer[0].data_param.HasField("scale")
