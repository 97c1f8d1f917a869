"""ArgMax (argmax_layer.cpp): the ``top_k`` largest values per sample (over all axes but the
first) or along ``axis``. Caffe sorts (value, index) pairs descending, so equal values go to
the larger index first. Without ``axis`` the top is (N, 1, top_k), or (N, 2, top_k) with
``out_max_val`` (indices then values), padded with 1s to the bottom's axes; with ``axis`` it
is the bottom's shape with top_k there, holding the indices, or the values with
``out_max_val``. Indices are floats, as in Caffe's blobs. No gradient (Caffe has no
backward)."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, count
from runtime.topk import heap_top_k, may_replay


def top_k(x, k: int, dim: int):
    """(values, indices) of the k largest along ``dim``; ties to the larger index first; a row
    with NaN in the order Caffe's partial sort leaves (``runtime.topk.heap_top_k``)."""
    size = x.shape[dim]
    _, flipped = x.flip(dim).sort(dim=dim, descending=True, stable=True)
    indices = (size - 1 - flipped).narrow(dim, 0, k).movedim(dim, -1)
    rows = x.movedim(dim, -1)
    nan = rows.isnan().any(-1) if may_replay(x) else None
    if nan is not None and nan.any():
        indices[nan] = torch.tensor([heap_top_k(row, k) for row in rows[nan].tolist()],
                                    dtype=indices.dtype, device=indices.device)
    indices = indices.movedim(-1, dim)
    return x.gather(dim, indices), indices


@register("ArgMax")
class ArgMax(Layer):
    has_backward = False
    def setup(self, bottom_shapes, generator):
        argmax, shape = self.param.argmax_param, bottom_shapes[0]
        self.k, self.out_max_val = argmax.top_k, argmax.out_max_val
        self.axis = canonical_axis(argmax.axis, len(shape)) if argmax.HasField("axis") else None
        if self.k < 1:
            raise AllconvError("argmax_param.top_k must be at least 1")
        size = count(shape, 1) if self.axis is None else shape[self.axis]
        if self.k > size:
            raise AllconvError(f"argmax_param.top_k {self.k} exceeds the {size} values it "
                               f"chooses from (bottom shape {shape})")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        if self.axis is not None:
            return [shape[:self.axis] + (self.k,) + shape[self.axis + 1:]]
        top = [1] * max(3, len(shape))
        top[0], top[1], top[2] = shape[0], 2 if self.out_max_val else 1, self.k
        return [tuple(top)]

    def forward(self, x):
        x = x.detach()
        if self.axis is not None:
            values, indices = top_k(x, self.k, self.axis)
            return (values if self.out_max_val else indices.to(x.dtype),)
        values, indices = top_k(x.reshape(len(x), count(x.shape, 1)), self.k, 1)
        parts = [indices.to(x.dtype)] + ([values] if self.out_max_val else [])
        shape = (len(x),) + self.reshape([tuple(x.shape)])[0][1:]
        return (torch.stack(parts, 1).reshape(shape),)
