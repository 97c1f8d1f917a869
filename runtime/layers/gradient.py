"""Caffe's hand-written gradients: ``with_gradient``, where that gradient is not the derivative
autograd would take (clamped logs, a kink, Caffe's own approximations), and
``normalization_backward``, BatchNorm's and MVN's closed form in Caffe's order."""
from __future__ import annotations

import torch


class _WithGradient(torch.autograd.Function):
    """Forward: ``value`` as it is; backward: the incoming gradient goes to ``surrogate``."""

    @staticmethod
    def forward(value, surrogate):
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def with_gradient(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` (of the same shape) in the
    backward pass. The forward value is ``value`` exactly, also where the surrogate is infinite
    or NaN (``value + (s − s)`` would be NaN there: Power's y = inf with a slope of inf / inf)."""
    return _WithGradient.apply(value.detach(), surrogate)


def normalization_backward(dy: torch.Tensor, y: torch.Tensor, std: torch.Tensor,
                           dims) -> torch.Tensor:
    """dx = (dy − (y·Σ(dy·y) + Σdy) / m) / std for y = (x − mean) / std, the sums and mean over
    ``dims`` (m values), computed as Caffe does: the sums, then dy + (−1/m)·(…) in the input's
    dtype, then the division. Where few values are normalised together the terms cancel to a
    few ulps, and autograd's longer chain would round them differently."""
    m = y.numel() // std.numel()        # std has one value per normalised group
    together = y * (dy * y).sum(dims, keepdim=True) + dy.sum(dims, keepdim=True)
    return (dy + together * (-1.0 / m)) / std      # the scalar is rounded to y's dtype
