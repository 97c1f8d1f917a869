"""runtime.net_spec against real pycaffe's net_spec (tests/fixtures/net_spec_cases.json, made
by tools/caffe_reference/make_net_spec_cases.py from tests/fixtures/net_spec/builders.py)."""
import builtins
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from runtime import Net, TEST, AllconvError
from runtime.net_spec import NetSpec, layers as L, params as P, to_proto
from runtime.proto import pb

FIXTURES = Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "net_spec_cases.json").read_text())


def _builders():
    spec = importlib.util.spec_from_file_location(
        "net_spec_builders", FIXTURES / "net_spec" / "builders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {case.__name__: case for case in module.CASES}


BUILDERS = _builders()


def test_every_builder_has_its_fixture():
    assert sorted(BUILDERS) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(name for name in CASES if "prototxt" in CASES[name]))
def test_same_net_as_pycaffe(name):
    net = BUILDERS[name](L, P, NetSpec, to_proto)
    expected = text_format.Parse(CASES[name]["prototxt"], pb.NetParameter())
    assert net == expected


@pytest.mark.parametrize("name", sorted(name for name in CASES if "error" in CASES[name]))
def test_same_error_class_as_pycaffe(name):
    with pytest.raises(getattr(builtins, CASES[name]["error"])) as raised:
        BUILDERS[name](L, P, NetSpec, to_proto)
    assert isinstance(raised.value, AllconvError)   # and one line for allconv's CLIs


@pytest.mark.parametrize("name, words", [
    ("misspelt_field", "layer conv (Convolution): no field 'kernal_size' in convolution_param "
                       "or LayerParameter (did you mean kernel_size"),
    ("misspelt_nested_field", "layer conv (Convolution): convolution_param: weight_filler: "
                              "no field 'tpye' in FillerParameter (did you mean type?)"),
    ("deconvolution_keyword", "Deconvolution has no parameter field of its own"),
    ("input_not_a_top", "ReLU input 0 is not a Top (type is str)"),
    ("wrong_value_type", "layer conv (Convolution): convolution_param: kernel_size = '3'"),
    ("unknown_enum_value", "PoolingParameter has no enum value 'MEDIAN'"),
])
def test_errors_name_the_layer_and_field(name, words):
    with pytest.raises(AllconvError, match=None) as raised:
        BUILDERS[name](L, P, NetSpec, to_proto)
    assert words in str(raised.value)


def test_a_spec_builds_a_net_that_runs():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 6, 6]))
    n.conv = L.Convolution(n.data, kernel_size=3, num_output=4,
                           weight_filler=dict(type="constant", value=0.5))
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.AVE, global_pooling=True)
    net = Net(n.to_proto(), TEST)
    out = net.forward(data=torch.ones(2, 3, 6, 6))
    assert list(out) == ["pool"]
    assert torch.equal(out["pool"], torch.full((2, 4, 1, 1), 0.5 * 27))


def test_a_layer_with_several_tops_must_be_unpacked():
    n = NetSpec()
    n.data = L.Input(shape=[dict(dim=[1]), dict(dim=[1])], ntop=2)
    with pytest.raises(AttributeError, match=r"NetSpec top 'data' is a tuple.*unpack it"):
        n.to_proto()


def test_netspec_attribute_errors():
    n = NetSpec()
    n.conv1 = L.Input(shape=dict(dim=[1]))
    assert n["conv1"] is n.conv1 and list(n.tops) == ["conv1"]
    with pytest.raises(AttributeError, match=r"no top 'conv2' \(did you mean conv1\?\)"):
        n.conv2
    assert not hasattr(n, "__deepcopy__")
    with pytest.raises(AttributeError, match=r"no PolingParameter \(did you mean Pooling\?\)"):
        P.Poling


@pytest.mark.parametrize("script, error, words", [
    ("n[5] = L.ReLU(n.x)", TypeError, "a NetSpec names its tops with strings, not 5"),
    ("n['nope']", KeyError, "this NetSpec has no top 'nope'"),
    ("del n.nope", AttributeError, "this NetSpec has no top 'nope'"),
    ("L.ReLU(n.x, ntop='2')", TypeError, "ReLU: ntop must be an int, not '2'"),
    ("to_proto(L.Convolution(n.x, num_output=2, weight_filler={1: 2}))", TypeError,
     "weight_filler: a message's keys are field names, not 1"),
    ("a, b = L.ReLU(n.x, ntop=2, in_place=True); to_proto(L.ReLU(b))", IndexError,
     "ReLU is in place over 1 bottom(s), so it has no top 1"),
])
def test_misuse_is_one_allconv_error_of_pycaffes_class(script, error, words):
    """Found by mutation: these escaped as raw Python errors (a crash in the error path
    among them)."""
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    with pytest.raises(error) as raised:
        exec(script, {"n": n, "L": L, "to_proto": to_proto})
    assert isinstance(raised.value, AllconvError) and words in str(raised.value)


def test_a_chain_deeper_than_pythons_recursion_builds_in_pycaffes_order():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    top = n.x
    for _ in range(3000):
        top = L.ReLU(top)
    n.y = top
    net = n.to_proto()
    assert len(net.layer) == 3001 and net.layer[1].name == "ReLU1"
    assert net.layer[-1].name == "y" and net.layer[-1].bottom == ["ReLU2999"]
