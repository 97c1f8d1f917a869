"""The paper's preprocessing as ONNX nodes in front of the net: raw images in, whitened data out.

Input contract: ``image``, uint8, N×32×32×3, RGB, height × width × channel (as decoded image
files come). The nodes compute what ``runtime.data.preprocess.Whitening`` computes for the
harness: on each image's 3,072 values in Caffe's C×H×W order, pylearn2's GCN (subtract the
mean, divide by the L2 norm over ``scale``, a norm below ``min_divisor`` counting as 1), then
ZCA (subtract the training mean, multiply by the whitening matrix). They run in float32 (the
harness: float64 then float32); GCN's sum of squares over 3,072 values of 0-255 overflows
float16, so it stays float32 in an fp16 model and only its result is cast.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from runtime.data.cifar import IMAGE_SHAPE as NET_SHAPE   # C, H, W: what the net reads

IMAGE = "image"
IMAGE_SHAPE = (*NET_SHAPE[1:], NET_SHAPE[0])             # H, W, C: what the caller gives


def image_input(batch):
    """The graph input ``image`` (batch: an int, or a name for a dynamic batch)."""
    return helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, [batch, *IMAGE_SHAPE])


def describe_input(whitening) -> dict:
    """The input contract, for the model's metadata."""
    return {"name": IMAGE, "layout": "NHWC", "dtype": "uint8", "shape": ["N", *IMAGE_SHAPE],
            "channels": "RGB",
            "preprocessing": f"in the graph: GCN scale {whitening.scale:g} (pylearn2, L2 norm), "
                             f"then ZCA (filter_bias {whitening.filter_bias:g}) fit on the "
                             "training set, as the harness whitened its training data"}


def add_preprocessing(graph, whitening) -> str:
    """Nodes from the ``image`` input to whitened N×3×32×32 data in the graph's float type;
    returns that value's name."""
    f32 = np.float32
    size = int(np.prod(NET_SHAPE))
    x = graph.node("Cast", [IMAGE], name="pre/to_float", to=TensorProto.FLOAT)
    x = graph.node("Transpose", [x], name="pre/to_chw", perm=[0, 3, 1, 2])
    x = graph.node("Reshape", [x, graph.shape("pre/flat_shape", [-1, size])], name="pre/flat")
    mean = _reduce(graph, "ReduceMean", x, "pre/gcn_mean")
    x = graph.node("Sub", [x, mean], name="pre/gcn_centre")
    squares = _reduce(graph, "ReduceSumSquare", x, "pre/gcn_sumsq")
    bias = graph.constant("pre/sqrt_bias", whitening.sqrt_bias, f32)
    root = graph.node("Sqrt", [graph.node("Add", [squares, bias], name="pre/gcn_bias")],
                      name="pre/gcn_sqrt")
    norm = graph.node("Div", [root, graph.constant("pre/scale", whitening.scale, f32)],
                      name="pre/gcn_norm")
    small = graph.node("Less", [norm, graph.constant("pre/min_divisor", whitening.min_divisor,
                                                     f32)], name="pre/gcn_small")
    norm = graph.node("Where", [small, graph.constant("pre/one", 1.0, f32), norm],
                      name="pre/gcn_divisor")
    x = graph.node("Div", [x, norm], name="pre/gcn")
    x = graph.node("Sub", [x, graph.constant("pre/zca_mean", whitening.mean, f32)],
                   name="pre/zca_centre")
    x = graph.node("MatMul", [x, graph.constant("pre/zca_matrix", whitening.matrix, f32)],
                   name="pre/zca")
    x = graph.node("Reshape", [x, graph.shape("pre/net_shape", [-1, *NET_SHAPE])], name="pre/nchw")
    if graph.dtype != f32:
        x = graph.node("Cast", [x], name="pre/to_net_type", to=graph.elem_type)
    return x


def _reduce(graph, op: str, x: str, name: str) -> str:
    """``op`` over axis 1, keeping it (opset 18 moved ``axes`` from attribute to input)."""
    if graph.opset >= 18:
        return graph.node(op, [x, graph.shape(f"{name}/axes", [1])], name=name, keepdims=1)
    return graph.node(op, [x], name=name, axes=[1], keepdims=1)
