#!/usr/bin/env python3
"""The real-pycaffe numbers that tests/test_solver_edges.py and tests/test_visualize_edges.py
hard-code: one SGD step of a tiny InnerProduct net under clip_gradients 0, an unknown
regularization_type with weight_decay 0, and AdamSolver on a file of type SGD; and the
bottom diffs of an in-place ReLU of negative slope -0.5.

    PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference /usr/bin/python3 \\
        tools/caffe_reference/edge_values.py
"""
import tempfile
from pathlib import Path

import numpy as np

from pycaffe_import import import_caffe

caffe = import_caffe()
caffe.set_mode_cpu()

# DummyData x = 1 (2x3), y = 0 (2x2); InnerProduct(2) of weights 0.5, bias 0.25; Euclidean loss
SOLVER_NET = """
name: "t"
layer { name: "x" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 }
    data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 0 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
  inner_product_param { num_output: 2 weight_filler { type: "constant" value: 0.5 }
    bias_filler { type: "constant" value: 0.25 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""
# data (1x1x1x4) -> 1x1 conv of weight 1, bias 0 -> ReLU of slope -0.5 in place on "conv"
RELU_NET = """
name: "inplace"
force_backward: true
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 1 dim: 1 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "constant" value: 1 }
    bias_filler { type: "constant" value: 0 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: -0.5 } }
"""


def one_step(extra: str, solver_class=caffe.get_solver) -> list[np.ndarray]:
    """The ip layer's weights and bias after one step of a solver file with ``extra`` fields."""
    folder = Path(tempfile.mkdtemp())
    (folder / "net.prototxt").write_text(SOLVER_NET)
    (folder / "solver.prototxt").write_text(
        f'net: "{folder}/net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 10\n'
        f"display: 0\n{extra}")
    solver = solver_class(str(folder / "solver.prototxt"))
    solver.step(1)
    return [blob.data.copy() for blob in solver.net.params["ip"]]


def relu_diffs() -> tuple[np.ndarray, list[np.ndarray]]:
    """The in-place ReLU's top for inputs (-1, -2, 2, 3), and the data diff of a backward from
    each unit of it."""
    path = Path(tempfile.mkdtemp()) / "relu.prototxt"
    path.write_text(RELU_NET)
    net = caffe.Net(str(path), caffe.TEST)
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
