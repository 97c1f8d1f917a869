"""Eltwise (eltwise_layer.cpp): PROD, SUM with per-bottom ``coeff``, or MAX.

SUM adds each bottom times its coeff into a zeroed top with BLAS's axpy, which returns at once
for a coeff of 0: such a bottom is left out, infinities and NaN included (0 · inf would be NaN).

PROD's bottom diff is the top diff times the other bottoms' product (``stable_prod_grad``,
the default), or Caffe's top / bottom times it without (0/0, NaN, where a bottom is 0).

MAX picks like (CPU) Caffe: bottom 1 wins ties with bottom 0 (0 only when strictly greater),
later bottoms only when strictly greater than the value picked so far, so a NaN is picked only
where it stands in bottom 1 or bottom 0 loses to it (then it stays); the gradient goes to the
picked bottom. The bottoms
need one count, not one shape (the reference build's shape CHECK is commented out): each is
read in bottom 0's shape, which the top takes."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import count
from runtime.proto import pb

_E = pb.EltwiseParameter


@register("Eltwise")
class Eltwise(Layer):
    num_bottoms = (2, None)

    @property
    def backward_ignores_input(self) -> bool:
        return self.op == _E.SUM

    def setup(self, bottom_shapes, generator):
        eltwise = self.param.eltwise_param
        self.op = eltwise.operation
        self.coeff = list(eltwise.coeff) or [1.0] * len(bottom_shapes)
        if eltwise.coeff and self.op == _E.PROD:      # (MAX takes them and ignores them)
            raise AllconvError("coeff is only for operation SUM (PROD takes none)")
        if len(self.coeff) != len(bottom_shapes):
            raise AllconvError(f"{len(self.coeff)} coeff value(s) for {len(bottom_shapes)} bottoms")

    def reshape(self, bottom_shapes):
        for shape in bottom_shapes[1:]:
            if count(shape) != count(bottom_shapes[0]):
                raise AllconvError(f"bottom shapes {bottom_shapes[0]} and {shape} hold "
                                   f"{count(bottom_shapes[0])} and {count(shape)} values")
        return [bottom_shapes[0]]

    def forward(self, *bottoms):
        bottoms = [b.reshape(bottoms[0].shape) for b in bottoms]
        if self.op == _E.PROD:
            if not self.param.eltwise_param.stable_prod_grad:
                return (_ProdOverBottom.apply(*bottoms),)
            return (torch.stack(bottoms).prod(0),)
        if self.op == _E.SUM:
            terms = [c * b for c, b in zip(self.coeff, bottoms) if c != 0]
            return (sum(terms) if terms else torch.zeros_like(bottoms[0]),)
        best = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
        for b in bottoms[2:]:       # each where passes the gradient to the bottom it picked
            best = torch.where(b > best, b, best)
        return (best,)


class _ProdOverBottom(torch.autograd.Function):
    """The product, whose diff for bottom i is (top / bottom i) · top diff, in Caffe's order."""

    @staticmethod
    def forward(ctx, *bottoms):
        top = torch.stack(bottoms).prod(0)
        ctx.save_for_backward(top, *bottoms)
        return top

    @staticmethod
    def backward(ctx, top_diff):
        top, *bottoms = ctx.saved_tensors
        return tuple(top / bottom * top_diff for bottom in bottoms)
