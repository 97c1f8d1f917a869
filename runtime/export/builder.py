"""``GraphBuilder``: the nodes, weights and constants of one ONNX graph, with unique names."""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

FP16_EXACT = 2048       # the largest integer float16 holds with all below it


class GraphBuilder:
    """Collects nodes and initializers; ``dtype`` (float32 or float16) is the net's float type,
    ``opset`` the ONNX opset the nodes are written for; ``batch_is_the_nets``: the model's
    batch is fixed at the prototxt's, so what depends on the batch's size exports as it is."""

    def __init__(self, opset: int, dtype=np.float32, batch_is_the_nets: bool = False,
                 blob_names=()):
        self.opset, self.dtype = opset, np.dtype(dtype)
        self.batch_is_the_nets = batch_is_the_nets   # a static batch of the prototxt's size
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._blob_names = frozenset(blob_names)     # kept for ``reserve``: ``fresh`` avoids them
        self._node_names: set[str] = set()
        self._weights: dict[tuple, tuple[str, torch.Tensor]] = {}

    @property
    def elem_type(self) -> int:
        return helper.np_dtype_to_tensor_dtype(self.dtype)

    @property
    def lowest(self) -> float:
        """The most negative finite value of the net's float type (Caffe's −FLT_MAX)."""
        return float(np.finfo(self.dtype).min)

    def reserve(self, name: str) -> str:
        """Claim ``name`` (a blob's, kept from ``fresh`` since the start) for a value; a name
        already taken is an internal error."""
        if name in self._names:
            raise ValueError(f"ONNX value name {name!r} used twice")
        self._names.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A new value name starting with ``hint``."""
        name = _unused(hint, self._names, self._blob_names)
        self._names.add(name)
        return name

    def node(self, op: str, inputs, outputs=None, name: str | None = None, **attrs) -> str:
        """Append an ``op`` node; ``outputs`` None makes one fresh output. Returns output 0."""
        outputs = [self.fresh(f"{name or op}/out")] if outputs is None else list(outputs)
        node_name = _unused(name or op, self._node_names)
        self._node_names.add(node_name)
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=node_name, **attrs))
        return outputs[0]

    def constant(self, hint: str, value, dtype=None) -> str:
        """An initializer holding ``value`` (the net's float type unless ``dtype``)."""
        array = np.asarray(value, dtype=dtype or self.dtype)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, hint: str, tensor: torch.Tensor, transpose: bool = False) -> str:
        """A learnable blob as an initializer; a blob shared by several layers is stored once
        (the tensor is kept, so that its id cannot pass to another)."""
        key = (id(tensor), transpose)
        if key not in self._weights:
            array = tensor.detach().cpu().numpy()
            self._weights[key] = (self.constant(hint, array.T if transpose else array), tensor)
        return self._weights[key][0]

    def shape(self, hint: str, dims) -> str:
        """An int64 shape tensor (for Reshape)."""
        return self.constant(hint, list(dims), np.int64)

    def reduce(self, op: str, x: str, axes, name: str, keepdims: bool = True,
               outputs=None) -> str:
        """A Reduce* node over ``axes``: an input from opset 18 (ReduceSum from 13), an
        attribute before."""
        if self.opset >= (13 if op == "ReduceSum" else 18):
            return self.node(op, [x, self.shape(f"{name}/axes", axes)], outputs, name=name,
                             keepdims=int(keepdims))
        return self.node(op, [x], outputs, name=name, axes=list(axes), keepdims=int(keepdims))

    def group_mean(self, x: str, axes, name: str) -> str:
        """ReduceMean over ``axes`` (kept), but a group's own value where all its values are
        equal, as the runtime's BatchNorm takes it (so that it centres to 0)."""
        first = self.node("Slice", [x, self.shape(f"{name}/first_starts", [0] * len(axes)),
                                    self.shape(f"{name}/first_ends", [1] * len(axes)),
                                    self.shape(f"{name}/first_axes", axes)],
                          name=f"{name}/first")
        constant = self.node("Equal", [self.reduce("ReduceMax", x, axes, f"{name}/max"),
                                       self.reduce("ReduceMin", x, axes, f"{name}/min")],
                             name=f"{name}/constant")
        return self.node("Where", [constant, first, self.reduce("ReduceMean", x, axes, name)],
                         name=f"{name}/or_value")


def _unused(hint: str, *taken) -> str:
    """``hint``, or ``hint_1``, ``hint_2``, ... whichever is in none of the sets ``taken``."""
    name, i = hint, 1
    while any(name in names for names in taken):
        name, i = f"{hint}_{i}", i + 1
    return name
