"""Python-layer behaviours no other test holds (a mutation round over runtime/layers/python.py
and runtime/python_layer_api.py). The Blob facts are real Caffe's: the pycaffe script
tools/caffe_reference/module_edges/python_layer_ref.py printed them (python_layer_ref.out; the
reference build has no Python layer, so they are checked on an Input blob)."""
from __future__ import annotations

import pytest
import torch

from runtime import TEST, TRAIN, Net
from runtime.errors import AllconvError
from test_python_layer import module  # noqa: F401  (the fixture)

def python_layer(module, layer, extra=""):
    return (f'layer {{ name: "py" type: "Python" bottom: "data" top: "top" {extra} '
            f'python_param {{ module: "{module}" layer: "{layer}" }} }}\n')


def net_text(*layers, shape=(2, 3), force_backward=True):
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f"force_backward: {str(force_backward).lower()}\n"
            f'layer {{ name: "in" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} '
            "}\n" + "".join(layers))


def test_a_tops_memory_is_kept_up_to_its_capacity_across_reshapes(module):
    """Caffe's Blob::Reshape keeps the memory up to its capacity (python_layer_ref.out: data
    reshaped (1,3) then (2,3) still holds its second row): a layer adding into its top sees
    what the top's memory held. Mutant A01 (new memory at every change of count) fails."""
    name = module("""
class Accumulate(caffe.Layer):
    def setup(self, bottom, top):
        pass
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] += bottom[0].data
""")
    net = Net(net_text(python_layer(name, "Accumulate")), TEST)
    seen = []
    for shape in ((2, 3), (1, 3), (2, 3)):
        net.blobs["data"].reshape(*shape)
        net.reshape()
        net.blobs["data"].data[...] = 1
        seen.append(net.forward()["top"].tolist())
    assert seen == [[[1.0] * 3, [1.0] * 3], [[2.0] * 3], [[3.0] * 3, [2.0] * 3]]


def test_a_blobs_data_and_diff_are_separate_memories(module):
    """A backward that reads a top's data beside its diff (dx = dy * y, y = 2x) reads the
    forward's values: Caffe's data and diff are two memories (python_layer_ref.out). Mutant
    A02 (one array for both) fails."""
    name = module("""
class TopTimesDiff(caffe.Layer):
    def setup(self, bottom, top):
        pass
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff * top[0].data
""")
    net = Net(net_text(python_layer(name, "TopTimesDiff")), TRAIN)
    x = torch.arange(6.0).reshape(2, 3)
    net.forward(data=x)
    net.blobs["top"].diff[...] = 3
    net.backward()
    assert torch.equal(net.blobs["data"].diff, 3 * 2 * x)


def test_caffe_train_and_test_are_pycaffes_numbers(module):
    """pycaffe's caffe.TRAIN is 0 and caffe.TEST 1 (python_layer_ref.out: "constants TRAIN TEST
    0 1"), and a layer's phase compares equal to them. Mutant A06 (swapped) fails."""
    name = module("""
class PhaseName(caffe.Layer):
    def setup(self, bottom, top):
        self.constants = (caffe.TRAIN, caffe.TEST)
    def reshape(self, bottom, top):
        top[0].reshape(1)
    def forward(self, bottom, top):
        top[0].data[0] = 1.0 if self.phase == caffe.TEST else 0.0
""")
    for phase, expected in ((TRAIN, 0.0), (TEST, 1.0)):
        net = Net(net_text(python_layer(name, "PhaseName")), phase)
        assert net.layer_dict["py"].python.constants == (0, 1)
        assert float(net.forward()["top"][0]) == expected


def test_self_blobs_takes_a_slice_as_pycaffes_blobvec(module):
    """pycaffe's BlobVec is a boost vector_indexing_suite (_caffe.cpp: class_<...>("BlobVec")
    .def(vector_indexing_suite...)), which takes slices. Mutant A04 (no slices) fails."""
    name = module("""
class Sliced(caffe.Layer):
    def setup(self, bottom, top):
        self.blobs.add_blob(2)
        self.blobs.add_blob(3)
        self.sliced = [b.shape for b in self.blobs[0:2]] + [b.shape for b in self.blobs[1:]]
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
""")
    net = Net(net_text(python_layer(name, "Sliced")), TEST)
    assert net.layer_dict["py"].python.sliced == [(2,), (3,), (3,)]


def test_a_blob_reshaped_in_setup_keeps_its_param_specs_lr_mult(module, tmp_path):
    """A learnable blob reshaped in setup is still the blob of its ParamSpec: with lr_mult 0
    SGD leaves it under force_backward, where the layer's backward writes its diff (Caffe's
    update scales by the net's params_lr, taken from the ParamSpec when the net collects the
    layer's blobs after its setup). Mutant P10 (the reshaped blob loses
    lr_mult, read as 1 by the solver) moves it."""
    from runtime import SGDSolver
    name = module("""
class FrozenReshaped(caffe.Layer):
    def setup(self, bottom, top):
        self.blobs.add_blob(3)
        self.blobs[0].reshape(2, 3)
        self.blobs[0].data[...] = 0.5
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] = 1.0
""")
    (tmp_path / "net.prototxt").write_text(
        net_text(python_layer(name, "FrozenReshaped", extra="param { lr_mult: 0 }"))
        + 'layer { name: "loss" type: "EuclideanLoss" bottom: "top" bottom: "data" '
          'top: "loss" }\n')
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 10 '
        'solver_mode: CPU\n')
    solver = SGDSolver(str(tmp_path / "solver.prototxt"))
    solver.net.blobs["data"].data[...] = 1
    solver.step(2)
    assert torch.equal(solver.net.params["py"][0].data, torch.full((2, 3), 0.5))


def test_a_module_in_a_missing_package_is_no_such_module(module):
    """pkg.mod where pkg is not on sys.path is the same line as a missing module (mutant P02
    said "importing it raised ModuleNotFoundError")."""
    with pytest.raises(AllconvError, match="'allconv_no_such_pkg.layers': no such module on "
                                           "sys.path"):
        Net(net_text(python_layer("allconv_no_such_pkg.layers", "X")), TRAIN)


def test_backward_over_part_of_a_net_refuses_a_python_layer(module):
    """README: backward(start=, end=) reruns the part's forward, so it refuses a Python layer
    (its code may keep state) in one line. Mutant P24 (repeatable_forward True) runs it."""
    name = module("""
class Counter(caffe.Layer):
    def setup(self, bottom, top):
        self.forwards = 0
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        self.forwards += 1
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff
""")
    net = Net(net_text(python_layer(name, "Counter"),
                       'layer { name: "after" type: "ReLU" bottom: "top" top: "out" }\n'), TRAIN)
    net.forward()
    with pytest.raises(AllconvError, match="backward\\(start=/end=\\) over .*py"):
        net.backward(start="py")
    assert net.layer_dict["py"].python.forwards == 1
