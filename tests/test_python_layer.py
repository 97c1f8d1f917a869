"""The Python layer as pycaffe runs it: what its class is handed, when its methods run, its
learnable blobs, and one line for each way a module or class can be wrong. Its values
against real Caffe are in test_caffe_fixtures.py (tools/caffe_reference/cases_python.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from runtime import TEST, TRAIN, Net
from runtime.errors import AllconvError

REPO = Path(__file__).resolve().parents[1]


def python_layer(module, layer, bottom="data", top="top", param_str="", extra=""):
    bottoms = f'bottom: "{bottom}"' if bottom else ""
    tops = f'top: "{top}"' if top else ""
    return (f'layer {{ name: "py" type: "Python" {bottoms} {tops} {extra} '
            f'python_param {{ module: "{module}" layer: "{layer}" param_str: "{param_str}" }} }}\n')


def net_text(*layers, shape=(2, 3, 4), force_backward=True):
    dims = " ".join(f"dim: {d}" for d in shape)
    return ((f"force_backward: {str(force_backward).lower()}\n") +
            f'layer {{ name: "in" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} '
            '}\n'
            + "".join(layers))


# what every test module starts with: Base has the setup Caffe requires (7 lines)
HEADER = """import caffe
import numpy as np


class Base(caffe.Layer):
    def setup(self, bottom, top):
        pass
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Write a module of Python layers under a fresh name; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    count = [0]

    def write(source: str) -> str:
        count[0] += 1
        name = f"layers_{tmp_path.name.replace('-', '_')}_{count[0]}"
        (tmp_path / f"{name}.py").write_text(HEADER + textwrap.dedent(source))
        return name
    return write


TIMES_TEN = """
class TimesTen(caffe.Layer):
    def setup(self, bottom, top):
        self.calls = ["setup"]
    def reshape(self, bottom, top):
        self.calls.append("reshape")
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        self.calls.append("forward")
        top[0].data[...] = 10 * bottom[0].data
    def backward(self, top, propagate_down, bottom):
        self.calls.append(("backward", list(propagate_down)))
        bottom[0].diff[...] = 10 * top[0].diff
"""


def test_three_layers_times_ten_forward_backward_and_reshape(module):
    """pycaffe's own check: three layers multiplying by 10, forward, backward and a reshape
    that every blob follows; and Caffe's call order (setup, reshape at set-up, then reshape
    and forward at each forward)."""
    name = module(TIMES_TEN)
    layers = [python_layer(name, "TimesTen", b, t).replace('name: "py"', f'name: "{t}"')
              for b, t in (("data", "one"), ("one", "two"), ("two", "three"))]
    net = Net(net_text(*layers, shape=(10, 9, 8)), TRAIN)
    net.blobs["data"].data[...] = 8
    net.forward()
    assert torch.equal(net.blobs["three"].data, torch.full((10, 9, 8), 8000.0))
    net.blobs["three"].diff[...] = 7
    net.backward()
    assert torch.equal(net.blobs["data"].diff, torch.full((10, 9, 8), 7000.0))
    assert net.layer_dict["one"].python.calls == [
        "setup", "reshape", "reshape", "forward", ("backward", [True])]
    net.blobs["data"].reshape(4, 4, 4, 4)
    net.reshape()
    net.forward()
    assert {tuple(b.data.shape) for b in net.blobs.values()} == {(4, 4, 4, 4)}


def test_without_force_backward_propagate_down_is_what_caffe_computes(module):
    """propagate_down is Caffe's bottom_need_backward: False for an Input blob that nothing
    needs the diff of, where the layer runs backward for a loss and its own learnable blob."""
    name = module(TIMES_TEN + """
class Learns(TimesTen):
    def setup(self, bottom, top):
        super().setup(bottom, top)
        self.blobs.add_blob(1)
    def backward(self, top, propagate_down, bottom):
        super().backward(top, propagate_down, bottom)
        self.blobs[0].diff[0] += 1
""")
    net = Net(net_text(python_layer(name, "Learns", extra="loss_weight: 1"),
                       force_backward=False), TRAIN)
    net.forward()
    net.backward()
    assert net.layers[1].python.calls[-1] == ("backward", [False])
    assert float(net.params["py"][0].diff) == 1.0


def test_learnable_blob_diff_written_save_and_load(module, tmp_path):
    """pycaffe's parameter check: a blob added in setup (zeros), its diff written by backward
    under force_backward with no loss, saved to a .caffemodel and loaded back."""
    name = module("""
class ParameterLayer(caffe.Layer):
    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[0] = 0
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        pass
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] = 1
""")
    text = net_text(python_layer(name, "ParameterLayer"), shape=(10, 9, 8))
    net = Net(text, TRAIN)
    net.forward()
    net.backward()
    view = net.params["py"][0]
    assert float(view.data) == 0 and float(view.diff) == 1
    view.data[...] += view.diff
    net.save(str(tmp_path / "p.caffemodel"))
    view.data[...] = -1
    net.copy_from(str(tmp_path / "p.caffemodel"))
    assert float(view.data) == 1
    assert float(Net(text, TEST, weights=str(tmp_path / "p.caffemodel")).params["py"][0].data) == 1


def test_a_layer_without_tops_runs_backward_under_force_backward(module):
    """Caffe's force_backward runs every layer's Backward, one with no tops too: its bottom
    diff reaches the blob (found by a held-out check against real Caffe)."""
    name = module("""
class Probe(Base):
    def reshape(self, bottom, top):
        pass
    def forward(self, bottom, top):
        self.calls = getattr(self, "calls", 0)
    def backward(self, top, propagate_down, bottom):
        self.calls += 1
        bottom[0].diff[...] = 0.5 * bottom[0].data
""")
    x = torch.randn(2, 3, 4)
    for forced in (True, False):
        net = Net(net_text(python_layer(name, "Probe", top=None), force_backward=forced),
                  TRAIN)
        net.forward(data=x)
        net.backward()
        assert net.layer_dict["py"].python.calls == int(forced)
        assert torch.equal(net.blobs["data"].diff, 0.5 * x if forced else torch.zeros_like(x))


def test_a_bottom_diff_written_against_propagate_down_reaches_the_blob(module):
    """The code is told Caffe's propagate_down (False: nothing below needs the diff), but a
    diff it writes all the same lands in the blob's memory, as in Caffe (real Caffe: 3), and
    a Split below adds it in."""
    name = module("""
class Ignores(Base):
    def setup(self, bottom, top):
        self.blobs.add_blob(1)
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        self.told = list(propagate_down)
        bottom[0].diff[...] = 3.0
""")
    net = Net(net_text(python_layer(name, "Ignores", extra="loss_weight: 1"),
                       force_backward=False), TRAIN)
    net.forward()
    net.backward()
    assert net.layer_dict["py"].python.told == [False]
    assert net.blobs["data"].diff.unique().tolist() == [3.0]


def test_a_frozen_blobs_diff_is_what_the_code_wrote(module):
    """lr_mult 0: the blob does not learn, and its diff shows what backward (run for the
    layer below, which learns) wrote there, as Caffe's diff memory does."""
    name = module("""
class Writes(Base):
    def setup(self, bottom, top):
        self.blobs.add_blob(2)
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += 1.5
""")
    ip = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
          'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n')
    net = Net(net_text(ip, python_layer(name, "Writes", "ip", extra="param { lr_mult: 0 } "
                                        "loss_weight: 1"), force_backward=False), TRAIN)
    for passes in (1, 2):
        net.forward()
        net.backward()
        assert net.params["py"][0].diff.tolist() == [1.5 * passes] * 2


def test_phase_param_str_type_and_blob_attributes(module):
    """phase and param_str are set before setup; a top shaped () holds one value; the blobs'
    shape, count and legacy axes, as pycaffe's."""
    name = module("""
class Echo(caffe.Layer):
    def setup(self, bottom, top):
        b = bottom[0]
        self.seen = (self.phase, self.param_str, self.type, b.shape, b.count, b.num,
                     b.channels, b.height, b.width, len(bottom), len(top))
    def reshape(self, bottom, top):
        top[0].reshape()
    def forward(self, bottom, top):
        top[0].data[()] = self.phase + 0.5
""")
    for phase in (TRAIN, TEST):
        net = Net(net_text(python_layer(name, "Echo", param_str="a b")), phase)
        assert net.layers[1].python.seen == (phase, "a b", "Python", (2, 3, 4), 24, 2, 3, 4, 1,
                                             1, 1)
        assert net.forward()["top"].shape == () and float(net.blobs["top"].data) == phase + 0.5


def test_data_layer_tops_follow_each_forward(module):
    """A layer with no bottoms whose reshape picks a new size at each forward: the layers
    below follow it, as Caffe reshapes every layer in each forward."""
    name = module(TIMES_TEN + """
class Growing(caffe.Layer):
    def setup(self, bottom, top):
        self.n = 0
    def reshape(self, bottom, top):
        self.n += 1
        top[0].reshape(1, 1, self.n, 2)
    def forward(self, bottom, top):
        top[0].data[...] = np.arange(top[0].count).reshape(top[0].data.shape)
""")
    text = (python_layer(name, "Growing", bottom=None, top="data")
            + 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    text += python_layer(name, "TimesTen", "data", "ten").replace('"py"', '"ten"')
    net = Net(text, TEST)
    assert net.blobs["pool"].shape == (1, 1, 1, 1)
    for rows in (2, 3, 4):
        out = net.forward()
        assert tuple(out["pool"].shape) == (1, 1, (rows + 1) // 2, 1)
        assert float(out["pool"].flatten()[-1]) == 2 * rows - 1
        assert tuple(out["ten"].shape) == (1, 1, rows, 2)
    # below a blob the data sizes, a layer's reshape runs once per forward, as in Caffe
    assert net.layer_dict["ten"].python.calls == ["setup", "reshape"] + ["reshape",
                                                                         "forward"] * 3


def test_in_place_layer_shares_its_blob(module):
    """top = bottom: the layer sees one blob, as Caffe's in-place layer does."""
    name = module(TIMES_TEN + """
class Negate(Base):
    def reshape(self, bottom, top):
        assert top[0] is bottom[0]
    def forward(self, bottom, top):
        top[0].data[...] *= -1
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] *= -1
""")
    net = Net(net_text(python_layer(name, "TimesTen", top="one"),
                       python_layer(name, "Negate", "one", "one").replace('"py"', '"neg"')), TRAIN)
    x = torch.randn(2, 3, 4)
    assert torch.equal(net.forward(data=x)["one"], -10 * x)
    g = torch.randn(2, 3, 4)
    assert torch.equal(net.backward(one=g)["data"], -10 * g)


def test_a_class_with_a_blobs_property_of_its_own_runs_as_in_caffe(module):
    """pycaffe's blobs is a property of its base; a subclass may define its own (real Caffe
    runs it); the layer's blobs are handed over beside it."""
    name = module("""
class OwnBlobs(Base):
    blobs = property(lambda self: "mine")
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data
""")
    net = Net(net_text(python_layer(name, "OwnBlobs")), TEST)
    assert torch.equal(net.forward(data=torch.ones(2, 3, 4))["top"], torch.full((2, 3, 4), 2.0))
    assert net.layer_dict["py"].python.blobs == "mine"


def test_the_caffe_module_is_put_back(module, monkeypatch):
    """The module's ``import caffe`` finds the stand-in only while it is imported: an import
    of caffe before or after finds what it found before."""
    name = module(TIMES_TEN)
    sentinel = object()
    monkeypatch.setitem(sys.modules, "caffe", sentinel)
    Net(net_text(python_layer(name, "TimesTen")), TRAIN)
    assert sys.modules["caffe"] is sentinel
    assert sys.modules[name].caffe.Layer.__module__ == "runtime.python_layer_api"
    monkeypatch.delitem(sys.modules, "caffe")
    other = module(TIMES_TEN)
    Net(net_text(python_layer(other, "TimesTen")), TRAIN)
    assert "caffe" not in sys.modules


def test_fixture_layers_run_as_real_caffe_ran_them_learn_in_a_solver(tmp_path):
    """The fixture module's layers in a solver: the Python layer's blobs move by SGD, and a
    snapshot resumes them exactly."""
    from runtime import SGDSolver
    net = ('layer { name: "in" type: "Input" top: "data" top: "target" input_param { '
           'shape { dim: 2 dim: 3 dim: 2 dim: 2 } } }\n'
           'layer { name: "affine" type: "Python" bottom: "data" top: "affine" '
           'param { lr_mult: 2 } python_param { module: "fixture_layers" '
           'layer: "ChannelAffine" } }\n'
           'layer { name: "loss" type: "Python" bottom: "affine" bottom: "target" top: "loss" '
           'loss_weight: 1 python_param { module: "fixture_layers" '
           'layer: "HalfSquaredDistance" } }\n')
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" '
        'max_iter: 10 '
        f'snapshot_prefix: "{tmp_path}/s" solver_mode: CPU\n')
    solver = SGDSolver(str(tmp_path / "solver.prototxt"))
    x, target = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    for name, value in (("data", x), ("target", target)):
        solver.net.blobs[name].data[...] = value
    gain = solver.net.params["affine"][0].data.clone()
    assert torch.equal(gain, torch.ones(3))
    solver.step(3)
    solver.snapshot()
    solver.step(2)
    after = [p.data.clone() for p in solver.net.params["affine"]]
    assert not torch.equal(after[0], gain)
    resumed = SGDSolver(str(tmp_path / "solver.prototxt"))
    for name, value in (("data", x), ("target", target)):
        resumed.net.blobs[name].data[...] = value
    resumed.restore(str(tmp_path / "s_iter_3.solverstate"))
    resumed.step(2)
    for a, b in zip(after, resumed.net.params["affine"]):
        assert torch.equal(a, b.data)


@pytest.mark.parametrize("body, layer, message", [
    (TIMES_TEN, "Missing", r"python_param.layer 'Missing': module '\w+' \(.*\.py\) has no such "
     r"name \(its layer classes: Base, TimesTen\)"),
    (TIMES_TEN, "np", r"\w+\.np is a module, not a class"),
    ("class Plain:\n    pass\n", "Plain", "is not a subclass of the caffe.Layer"),
    ("class Boom(caffe.Layer):\n    def setup(self, bottom, top):\n        raise "
     "RuntimeError('boom')\n", "Boom", r"layer 'py' \(Python\): \w+\.Boom setup raised "
     r"RuntimeError: boom \(.*\.py:10\)"),
    ("class NoSetup(caffe.Layer):\n    def reshape(self, bottom, top):\n        pass\n",
     "NoSetup", r"\(Python\): \w+\.NoSetup defines no setup\(self, bottom, top\)"),
    ("class NoReshape(Base):\n    pass\n", "NoReshape",
     r"\(Python\): \w+\.NoReshape defines no reshape\(self, bottom, top\)"),
    ("class Unshaped(Base):\n    def reshape(self, bottom, top):\n        pass\n",
     "Unshaped", r"Unshaped reshape gave top 'top' no shape"),
    ("class Late(Base):\n    def reshape(self, bottom, top):\n        "
     "self.blobs.add_blob(2)\n", "Late", "add_blob is for setup"),
    ("class Kw(Base):\n    def reshape(self, bottom, top):\n        "
     "top[0].reshape(2, n=3)\n", "Kw", "Blob.reshape takes no kwargs"),
    ("class Negative(Base):\n    def reshape(self, bottom, top):\n        "
     "top[0].reshape(2, -3)\n", "Negative", r"dim 1 is -3"),
    ("import sys\nclass Bye(Base):\n    def reshape(self, bottom, top):\n        "
     "sys.exit('bye')\n", "Bye", r"Bye reshape called sys.exit\('bye'\) \(.*\.py:11\)"),
    ("class E(Exception):\n    def __str__(self):\n        raise ValueError\nclass BadStr(Base):"
     "\n    def reshape(self, bottom, top):\n        raise E()\n", "BadStr",
     r"BadStr reshape raised E: <exception str\(\) failed>"),
    ("class Deep(Base):\n    def reshape(self, bottom, top):\n        top[0].reshape(*[1] * 33)"
     "\n", "Deep", r"33 axes, more than Caffe's kMaxBlobAxes \(32\)"),
    ("class Getter(Base):\n    def __getattr__(self, name):\n        raise KeyError(name)\n",
     "Getter", r"Getter reshape: looking it up raised KeyError: 'reshape'"),
    ("import no_such_module_here\n", "X", r"importing it raised ModuleNotFoundError: No module "
     r"named 'no_such_module_here' \(.*\.py:8\)"),
    ("def broken(:\n", "X", r"importing it raised SyntaxError: .* \(.*\.py:8\)"),
])
def test_a_wrong_module_or_class_is_one_line(module, body, layer, message):
    name = module(body)
    with pytest.raises(AllconvError, match=message) as err:
        Net(net_text(python_layer(name, layer)), TRAIN)
    assert "\n" not in str(err.value)


def test_unset_or_missing_module_is_one_line():
    with pytest.raises(AllconvError, match="no such module on sys.path .* PYTHONPATH"):
        Net(net_text(python_layer("allconv_no_such_layers", "X")), TRAIN)
    with pytest.raises(AllconvError, match=r"python_param.module '.m' is a relative name or a "
                                           r"path: Caffe imports a module by its full name"):
        Net(net_text(python_layer(".m", "X")), TRAIN)
    with pytest.raises(AllconvError, match=r"module 'caffe' \(allconv's stand-in for pycaffe's "
                                           r"caffe\) has no such name"):
        Net(net_text(python_layer("caffe", "Nope")), TRAIN)
    with pytest.raises(AllconvError, match="python_param.module is not set"):
        Net(net_text(python_layer("", "X")), TRAIN)
    with pytest.raises(AllconvError, match="python_param.layer is not set"):
        Net(net_text(python_layer("fixture_layers", "")), TRAIN)


def test_errors_in_forward_and_backward_name_the_layer_and_line(module):
    name = module("""
class Shapes(Base):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
class Fails(Shapes):
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[:1, :2]
class NoBackward(Shapes):
    pass
class Shrinks(Shapes):
    def backward(self, top, propagate_down, bottom):
        bottom[0].reshape(99)
""")
    with pytest.raises(AllconvError, match=r"layer 'py' \(Python\): \w+\.Fails forward raised "
                       r"ValueError: could not broadcast .* \(.*\.py:16\)"):
        Net(net_text(python_layer(name, "Fails")), TRAIN).forward()
    net = Net(net_text(python_layer(name, "NoBackward")), TRAIN)
    net.forward()
    with pytest.raises(AllconvError, match=r"NoBackward defines no backward\(self, top, "
                       r"propagate_down, bottom\)"):
        net.backward()
    net = Net(net_text(python_layer(name, "Shrinks")), TRAIN)
    net.forward()
    with pytest.raises(AllconvError, match=r"Shrinks backward reshaped bottom 'data' to "
                                           r"\(99,\): its diff must keep the forward's shape "
                                           r"\(2, 3, 4\)"):
        net.backward()


def test_learnable_blobs_reshape_in_setup_only(module):
    """In setup a blob reshapes as Caffe's Blob::Reshape (real Caffe: (6,)); after it, the
    net has taken the blobs."""
    name = module("""
class Grows(Base):
    def setup(self, bottom, top):
        self.blobs.add_blob(2, 3)
        self.blobs[0].data[...] = 7
        self.blobs[-1].reshape(6)
    def reshape(self, bottom, top):
        top[0].reshape(1)
    def forward(self, bottom, top):
        self.blobs[0].reshape(3)
""")
    net = Net(net_text(python_layer(name, "Grows")), TRAIN)
    assert net.params["py"][0].data.tolist() == [7.0] * 6
    with pytest.raises(AllconvError, match=r"Grows forward: a learnable blob is reshaped in "
                                           r"setup: after it, Caffe's net has taken .* "
                                           r"\(.*\.py:17\)"):
        net.forward()


def test_command_line_reports_a_failing_layer_in_one_line(tmp_path):
    """allconv-caffe imports the module from PYTHONPATH, as Caffe does; an exception in the
    layer's code is one line naming it, exit 2."""
    (tmp_path / "cli_layers.py").write_text(
        "import caffe\n\nclass Bad(caffe.Layer):\n    def setup(self, bottom, top):\n"
        "        raise KeyError('size')\n")
    (tmp_path / "net.prototxt").write_text(net_text(python_layer("cli_layers", "Bad")))
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "runtime.cli", "time", "-model",
                           str(tmp_path / "net.prototxt"), "-iterations", "1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "error: layer 'py' (Python): cli_layers.Bad setup raised KeyError: 'size' "
        f"({tmp_path / 'cli_layers.py'}:5)")
    assert "Traceback" not in done.stderr


def test_the_device_path_writes_back_only_what_the_code_took(monkeypatch):
    """The path a GPU takes (host copies written back after each call), on the CPU: the
    code's writes to data and diff reach the weights and gradients; a look from outside the
    code is read-only and writes nothing back over a later update (it put a solver's update
    back to the old weights at the next forward)."""
    from runtime.layers.python import Python
    monkeypatch.setattr(Python, "host", Python.host_copy)
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 '
            'dim: 1 dim: 1 } } }\nlayer { name: "affine" type: "Python" bottom: "data" '
            'top: "affine" loss_weight: 1 python_param { module: "fixture_layers" '
            'layer: "ChannelAffine" } }\n')
    net = Net(text, TRAIN)
    assert net.params["affine"][0].data.tolist() == [1.0, 1.0]     # setup's write came back
    look = net.layers[1].python.blobs[0].data
    assert not look.flags.writeable
    net.params["affine"][0].data[...] = 5.0                         # a solver's update
    assert net.forward(data=torch.ones(1, 2, 1, 1))["affine"].flatten().tolist() == [5.0, 5.0]
    net.backward()
    assert net.params["affine"][0].data.tolist() == [5.0, 5.0]
    assert net.params["affine"][0].diff.tolist() == [1.0, 1.0]      # backward's += came back


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_weights_and_gradients_go_through_the_host():
    text = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 '
            'dim: 2 dim: 2 } } }\nlayer { name: "affine" type: "Python" bottom: "data" '
            'top: "affine" loss_weight: 1 python_param { module: "fixture_layers" '
            'layer: "ChannelAffine" } }\n')
    x = torch.randn(2, 3, 2, 2)
    results = []
    for device in ("cpu", "cuda"):
        net = Net(text, TRAIN).to(device)
        net.params["affine"][0].data[...] = torch.tensor([1.0, -2.0, 0.5])
        out = net.forward(data=x.to(device))["affine"].cpu()
        net.backward()
        results.append((out, [p.diff.cpu() for p in net.params["affine"]]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b)


def test_time_runs_a_python_layers_backward_where_no_diff_reaches_it(module, tmp_path,
                                                                     monkeypatch):
    """caffe.cpp's time calls every layer's Backward, told its bottoms need no diff: a Python
    layer that no diff reaches ran its backward in Caffe and not here (mutation fuzzer)."""
    import importlib
    from runtime.cli import main
    name = module("""
    CALLS = []
    class Copy(Base):
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top):
            top[0].data[...] = bottom[0].data
        def backward(self, top, propagate_down, bottom):
            CALLS.append(list(propagate_down))
    """)
    (tmp_path / "net.prototxt").write_text(net_text(
        python_layer(name, "Copy"), 'layer { name: "loss" type: "EuclideanLoss" bottom: "top" '
        'bottom: "data" top: "loss" }\n', force_backward=False))
    monkeypatch.chdir(tmp_path)
    assert main(["time", "-model", "net.prototxt", "-iterations", "2"]) == 0
    assert importlib.import_module(name).CALLS == [[False], [False]]
