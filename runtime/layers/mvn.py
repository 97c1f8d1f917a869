"""MVN (mvn_layer.cpp): subtract the mean of each (n, c) plane, or of each sample with
``across_channels``; with ``normalize_variance`` divide by √σ² + eps (eps added after the
root). Caffe reads the bottom with its legacy 4-d accessors, so the top is (N, C, H, W) with
missing axes as 1. The backward with ``normalize_variance`` is Caffe's,
(dy − mean(dy) − mean(dy·y)·y) / (√σ² + eps), which leaves out the exact gradient's factor
(√σ² + eps) / √σ² on the last term. A constant row centres to its mean's rounding, which
1/(σ + eps) makes about ±1: Caffe's own float sums give about −0.9 for most constants, an order
of summation not reproduced here."""
from __future__ import annotations

import torch

from runtime.blob_shape import legacy_shape
from runtime.layers import Layer, register
from runtime.layers.gradient import normalization_backward
from runtime.layers.shapes import count


class _Normalize(torch.autograd.Function):
    """Rows of ``x`` less their mean, over √σ² + eps, with Caffe's backward (which already
    holds the centring's gradient: autograd must not take it again)."""

    @staticmethod
    def forward(ctx, rows, eps):
        centred = rows - rows.mean(1, keepdim=True)
        std = (centred * centred).mean(1, keepdim=True).sqrt() + eps
        y = centred / std
        ctx.save_for_backward(y, std)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, std = ctx.saved_tensors
        return normalization_backward(dy, y, std, 1), None


@register("MVN")
class MVN(Layer):
    diffs_whenever_run = (0,)     # Caffe's Backward ignores propagate_down

    def reshape(self, bottom_shapes):
        return [legacy_shape(bottom_shapes[0], "bottom")]

    def forward(self, x):
        mvn = self.param.mvn_param
        shape = legacy_shape(x.shape, "bottom")
        rows = x.reshape(count(shape, 0, 1 if mvn.across_channels else 2),
                         count(shape, 1 if mvn.across_channels else 2))
        if mvn.normalize_variance:
            return (_Normalize.apply(rows, mvn.eps).reshape(shape),)
        return ((rows - rows.mean(1, keepdim=True)).reshape(shape),)
