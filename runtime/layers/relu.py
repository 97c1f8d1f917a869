"""ReLU (relu_layer.cpp): max(x, 0) + negative_slope·min(x, 0); gradient at 0 is the slope.
With a slope of 0 CPU Caffe's is NaN at −inf (0·−inf) and +0 below 0 (0 + −0): leaky_relu,
plus 0 for the zeros' sign (relu gives 0 at −inf, leaky_relu −0 below 0).

``rule`` picks the backward rule (Springenberg et al. 2015, Section 3.4). With input f, signal
R from above and slope s, and g(v) = 1 if v > 0 else s:

- ``backprop``: g(f)·R, the true gradient (the default; plain autograd);
- ``deconvnet``: g(R)·R, the ReLU applied to the signal, whatever f was;
- ``guided``: g(f)·g(R)·R, both masks.

With s = 0 these are the paper's (f > 0)·R, (R > 0)·R and (f > 0)·(R > 0)·R; a leaky ReLU
lets s times the signal through where a plain one blocks it, in each mask alike.

Run in place, Caffe's backward reads f from the overwritten bottom, the top: with s < 0 a
negative input's top is positive, so its gradient is 1, not s. The runtime does the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.layers import Layer, register

RULES = ("backprop", "deconvnet", "guided")
READS_INPUT = ("backprop", "guided")       # the rules that gate by the ReLU's input f
READS_SIGNAL = ("deconvnet", "guided")     # the rules that gate by the signal from above


def rule_backward(f: torch.Tensor, signal: torch.Tensor, slope: float, rule: str) -> torch.Tensor:
    """The signal a ReLU with input ``f`` passes down under ``rule``."""
    if rule not in RULES:
        raise AllconvError(f"unknown ReLU backward rule {rule!r} (valid: {', '.join(RULES)})")
    if rule == "backprop" and slope == 0:     # one kernel: y > 0 ? g : 0·g, which blocks the
        # signal where the output is NaN (a NaN or −inf input) as Caffe's x > 0 does
        return torch.ops.aten.leaky_relu_backward(signal, f, 0.0, True)
    out = signal
    if rule in READS_INPUT:
        out = torch.where(f > 0, out, slope * out)
    if rule in READS_SIGNAL:
        out = torch.where(signal > 0, out, slope * out)
    return out


def caffe_relu(x: torch.Tensor, slope: float) -> torch.Tensor:
    """CPU Caffe's ReLU forward: NaN at −inf, and +0 below zero for a slope of 0 (−0 only
    from −0, which becomes +0 here). Not ``add_``: torch 2.11 compiles an in-place op on a
    Function's output into wrong gradients."""
    return F.leaky_relu(x, slope) + 0.0 if slope == 0 else F.leaky_relu(x, slope)


class _RuledReLU(torch.autograd.Function):
    """Caffe's ReLU forward with a chosen backward rule, which reads the sign of the input
    from the output where the slope is not negative (as relu keeps its output, which the
    next layer keeps anyway) or where Caffe reads the top (in place)."""

    @staticmethod
    def forward(ctx, x, slope, rule, reads_top):
        y = caffe_relu(x, slope)
        ctx.save_for_backward(y if reads_top or slope >= 0 else x)
        ctx.slope, ctx.rule = slope, rule
        return y

    @staticmethod
    def backward(ctx, signal):
        (x,) = ctx.saved_tensors
        return rule_backward(x, signal, ctx.slope, ctx.rule), None, None, None


@register("ReLU")
class ReLU(Layer):
    backward_ignores_input = True
    def setup(self, bottom_shapes, generator):
        self.slope = self.param.relu_param.negative_slope
        self.rule = "backprop"

    def forward(self, x):
        reads_top = self.slope < 0 and self.tops[0] == self.bottoms[0]
        if self.rule != "backprop" or reads_top or self.slope == 0:
            return (_RuledReLU.apply(x, self.slope, self.rule, reads_top),)
        return (F.leaky_relu(x, self.slope),)
