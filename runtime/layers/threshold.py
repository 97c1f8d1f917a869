"""Threshold (threshold_layer.cpp): 1 where x > threshold, else 0. Caffe has no backward for
it (NOT_IMPLEMENTED): a net whose Backward runs it (force_backward, or a learnable layer below
it that reaches a loss) refuses backward, and so does autograd on its own."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, describe, register


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, layer):
        ctx.layer = layer
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        raise AllconvError(f"{ctx.layer}: Caffe's Threshold layer has no backward (a step "
                           "function); its input must not need a gradient")


@register("Threshold")
class Threshold(Layer):
    has_backward = False

    def setup(self, bottom_shapes, generator):
        self.threshold = self.param.threshold_param.threshold

    def forward(self, x):
        if x.requires_grad:
            return (_Step.apply(x, self.threshold, describe(self.param)),)
        return ((x > self.threshold).to(x.dtype),)
