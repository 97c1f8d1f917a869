#!/usr/bin/env python3
"""The real-pycaffe numbers that tests/test_solver_edges.py and tests/test_visualize_edges.py
hard-code, on the nets of tests/fixtures/edge_nets: one SGD step of a tiny InnerProduct net
under clip_gradients 0, an unknown regularization_type with weight_decay 0, and AdamSolver on
a file of type SGD; and the bottom diffs of an in-place ReLU of negative slope -0.5.

    PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference /usr/bin/python3 \\
        tools/caffe_reference/edge_values.py
"""
import tempfile
from pathlib import Path

import numpy as np

from pycaffe_import import import_caffe

caffe = import_caffe()
caffe.set_mode_cpu()

NETS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "edge_nets"


def one_step(extra: str, solver_class=caffe.get_solver) -> list[np.ndarray]:
    """The ip layer's weights and bias after one step of a solver file with ``extra`` fields."""
    path = Path(tempfile.mkdtemp()) / "solver.prototxt"
    path.write_text(f'net: "{NETS / "solver_step.prototxt"}"\nbase_lr: 0.1\n'
                    f'lr_policy: "fixed"\nmax_iter: 10\ndisplay: 0\n{extra}')
    solver = solver_class(str(path))
    solver.step(1)
    return [blob.data.copy() for blob in solver.net.params["ip"]]


def relu_diffs() -> tuple[np.ndarray, list[np.ndarray]]:
    """The in-place ReLU's top for inputs (-1, -2, 2, 3), and the data diff of a backward from
    each unit of it."""
    net = caffe.Net(str(NETS / "relu_in_place.prototxt"), caffe.TEST)
    net.blobs["data"].data[...] = np.array([-1.0, -2.0, 2.0, 3.0]).reshape(1, 1, 1, 4)
    net.forward()
    top, diffs = net.blobs["conv"].data.ravel().copy(), []
    for i in range(4):
        net.blobs["conv"].diff[...] = 0
        net.blobs["conv"].diff.flat[i] = 1
        net.backward(start="relu")
        diffs.append(net.blobs["data"].diff.ravel().copy())
    return top, diffs


if __name__ == "__main__":
    print("clip_gradients 0:", one_step("clip_gradients: 0\nmomentum: 0\n"))
    print("clip_gradients 0, weight_decay 0.5:",
          one_step("clip_gradients: 0\nmomentum: 0\nweight_decay: 0.5\n"))
    print('regularization_type "L3", weight_decay 0:',
          one_step('regularization_type: "L3"\nweight_decay: 0\n'))
    print("AdamSolver on a type SGD file:",
          one_step('type: "SGD"\nmomentum: 0.9\n', caffe.AdamSolver))
    top, diffs = relu_diffs()
    print("in-place ReLU top:", top)
    for i, diff in enumerate(diffs):
        print(f"  backward from unit {i}: data diff {diff}")
