"""From a mutation round: runtime.net_spec against real pycaffe on cases the fixtures
of tests/test_net_spec.py leave out. The expected layers and exception classes were printed
by tools/caffe_reference/net_edges/netspec_reference.py (BVLC pycaffe) from the same builders
as here (tools/caffe_reference/net_edges/netspec_builders.py)."""
import builtins

import pytest

from runtime import AllconvError
from runtime.net_spec import NetSpec, layers as L, to_proto


def _input(n, *names):
    tops = L.Input(shape=[dict(dim=[1, 2])] * len(names), ntop=len(names))
    for name, top in zip(names, tops if len(names) > 1 else (tops,)):
        n[name] = top


def two_fresh_inputs():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.y = L.Eltwise(L.ReLU(n.x), L.TanH(n.x))
    return n.to_proto()


def three_fresh_inputs_to_proto():
    x = L.Input(shape=dict(dim=[1, 2]))
    return to_proto(L.Concat(L.Sigmoid(x), L.ReLU(x), L.TanH(L.AbsVal(x))))


def silence_named_in_netspec():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.quiet = L.Silence(n.x, ntop=0)
    return n.to_proto()


def two_tops_of_one_layer_to_proto():
    a, b = L.Input(shape=[dict(dim=[1, 2]), dict(dim=[1, 2])], ntop=2)
    return to_proto(L.ReLU(b), L.TanH(a))


def in_place_over_two_bottoms_one_top():
    n = NetSpec()
    _input(n, "a", "b")
    n.c = L.Eltwise(n.a, n.b, in_place=True)
    return n.to_proto()


def in_place_pair():
    n = NetSpec()
    _input(n, "a", "b")
    n.c, n.d = L.Python(n.a, n.b, ntop=2, in_place=True, python_param=dict(module="m", layer="l"))
    n.e = L.Eltwise(n.c, n.d)
    return n.to_proto()


def empty_dict_for_one_number():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, num_output={}, kernel_size=1)
    return n.to_proto()


def _conv(**keywords):
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Convolution(n.x, **keywords)
    return n.to_proto()


# what pycaffe made: (name, type, bottoms, tops) per layer
BUILT = [
    (two_fresh_inputs, [("x", "Input", [], ["x"]), ("ReLU1", "ReLU", ["x"], ["ReLU1"]),
                        ("TanH1", "TanH", ["x"], ["TanH1"]),
                        ("y", "Eltwise", ["ReLU1", "TanH1"], ["y"])]),
    (three_fresh_inputs_to_proto, [
        ("Input1", "Input", [], ["Input1"]), ("Sigmoid1", "Sigmoid", ["Input1"], ["Sigmoid1"]),
        ("ReLU1", "ReLU", ["Input1"], ["ReLU1"]), ("AbsVal1", "AbsVal", ["Input1"], ["AbsVal1"]),
        ("TanH1", "TanH", ["AbsVal1"], ["TanH1"]),
        ("Concat1", "Concat", ["Sigmoid1", "ReLU1", "TanH1"], ["Concat1"])]),
    (silence_named_in_netspec, [("x", "Input", [], ["x"]), ("quiet", "Silence", ["x"], [])]),
    (two_tops_of_one_layer_to_proto, [("Input1", "Input", [], ["Input1", "Input2"]),
                                      ("ReLU1", "ReLU", ["Input2"], ["ReLU1"]),
                                      ("TanH1", "TanH", ["Input1"], ["TanH1"])]),
    (in_place_over_two_bottoms_one_top, [("a", "Input", [], ["a", "b"]),
                                         ("c", "Eltwise", ["a", "b"], ["a", "b"])]),
    (in_place_pair, [("a", "Input", [], ["a", "b"]), ("c", "Python", ["a", "b"], ["a", "b"]),
                     ("e", "Eltwise", ["a", "b"], ["e"])]),
    (empty_dict_for_one_number, [("x", "Input", [], ["x"]), ("y", "Convolution", ["x"], ["y"])]),
]


@pytest.mark.parametrize("build, layers", BUILT, ids=[b.__name__ for b, _ in BUILT])
def test_the_layers_pycaffe_makes(build, layers):
    net = build()
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer] == layers


def test_an_empty_dict_for_one_number_sets_nothing():
    conv = empty_dict_for_one_number().layer[1].convolution_param
    assert not conv.HasField("num_output") and list(conv.kernel_size) == [1]


# what pycaffe raised
REFUSED = [
    ("empty_dict_for_repeated_number", dict(num_output=2, kernel_size={}), "AttributeError"),
    ("second_item_not_a_dict", dict(num_output=2, kernel_size=1, param=[dict(lr_mult=1), 3]),
     "AttributeError"),
    ("first_item_not_a_dict", dict(num_output=2, kernel_size=1, param=[3, dict(lr_mult=1)]),
     "TypeError"),
    ("tuple_for_a_repeated_message", dict(num_output=2, kernel_size=1,
                                          param=(dict(lr_mult=1),)), "TypeError"),
    ("tuple_for_one_number", dict(num_output=(2,), kernel_size=1), "TypeError"),
    ("tuple_for_a_message", dict(num_output=2, kernel_size=1, weight_filler=(1,)),
     "AttributeError"),
]


@pytest.mark.parametrize("keywords, error", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_the_exception_class_pycaffe_raises(keywords, error):
    with pytest.raises(getattr(builtins, error)) as raised:
        _conv(**keywords)
    assert isinstance(raised.value, AllconvError)
