"""Reduction (reduction_layer.cpp): SUM, ASUM (sum of |x|), SUMSQ or MEAN over all axes from
``axis`` on (the top keeps the axes before it), times ``coeff``. MEAN multiplies by the float
coeff / count, as Caffe does."""
from __future__ import annotations

import numpy as np

from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, count
from runtime.proto import pb

_R = pb.ReductionParameter


@register("Reduction")
class Reduction(Layer):
    def reshape(self, bottom_shapes):
        shape, reduction = bottom_shapes[0], self.param.reduction_param
        self.axis = canonical_axis(reduction.axis, len(shape))
        coeff = np.float32(reduction.coeff)
        if reduction.operation == _R.MEAN:
            coeff = coeff / np.float32(count(shape, self.axis))
        self.coeff = float(coeff)
        return [shape[:self.axis]]

    def forward(self, x):
        rows = x.reshape(tuple(x.shape[:self.axis]) + (-1,))
        op = self.param.reduction_param.operation
        if op == _R.ASUM:
            rows = rows.abs()
        elif op == _R.SUMSQ:
            rows = rows * rows
        total = rows.sum(-1)
        return (total * self.coeff if self.coeff != 1 else total,)
