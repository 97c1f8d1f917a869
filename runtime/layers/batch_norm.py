"""BatchNorm (batch_norm_layer.cpp): (x − μ) / √(σ² + eps) per channel (axis 1).

Three blobs, never learned: the mean sum, the variance sum and the factor s both are divided by
(s = 0 gives 0). With ``use_global_stats`` (default: true at TEST, false at TRAIN) μ and σ² are
the blobs over s; otherwise they are the batch's (σ² biased) and each forward updates the blobs
in place, without autograd: s ← f·s + 1, mean ← μ + f·mean, var ← c·σ² + f·var, where
f = ``moving_average_fraction``, m = count / channels and c = m / (m − 1) (1 when m = 1).
"""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.gradient import normalization_backward
from runtime.proto import pb


@register("BatchNorm")
class BatchNorm(Layer):

    @property
    def repeatable_forward(self) -> bool:
        """In TRAIN its forward moves its statistics anew."""
        return self.phase != pb.TRAIN

    # Caffe's Backward writes the bottom diff without asking propagate_down; it runs where the
    # net's ParamSpecs leave a blob's lr_mult at its default 1 (its own lr_mult: 0 is for the
    # solver alone)
    diffs_whenever_run = (0,)

    @property
    def backward_ignores_input(self) -> bool:
        return self.use_global_stats        # the batch's statistics depend on the input

    def setup(self, bottom_shapes, generator):
        bn = self.param.batch_norm_param
        self.channels = self._channels(bottom_shapes[0])
        self.use_global_stats = (bn.use_global_stats if bn.HasField("use_global_stats")
                                 else self.phase == pb.TEST)
        self.fraction, self.eps = bn.moving_average_fraction, bn.eps
        for i, spec in enumerate(self.param.param):
            if spec.lr_mult != 0:
                raise AllconvError(f"param[{i}].lr_mult is {spec.lr_mult:g}: BatchNorm's "
                                   "statistics are not learned; give lr_mult 0 or no param")
        zeros = pb.FillerParameter(type="constant", value=0)
        for shape in ((self.channels,), (self.channels,), (1,)):
            self.add_blob(shape, zeros, generator)
            self.blobs[-1].lr_mult = 0.0     # Caffe adds or checks `param { lr_mult: 0 }`

    @staticmethod
    def _channels(shape) -> int:
        if len(shape) < 2:
            raise AllconvError(f"bottom shape {shape} has no channel axis (axis 1)")
        return shape[1]

    def reshape(self, bottom_shapes):
        if self._channels(bottom_shapes[0]) != self.channels:
            raise AllconvError(f"bottom shape {bottom_shapes[0]} has {bottom_shapes[0][1]} "
                               f"channels; the blobs have {self.channels}")
        return [bottom_shapes[0]]

    def statistics(self):
        """The stored (mean, variance) per channel: the sums over s, or 0 when s is 0."""
        mean, var, s = (b.detach() for b in self.blobs)
        factor = torch.where(s == 0, torch.zeros_like(s), 1 / s)
        return mean * factor, var * factor

    def forward(self, x):
        view = (1, self.channels) + (1,) * (x.dim() - 2)
        if self.use_global_stats:
            mean, var = self.statistics()
        else:
            y, mean, var = BatchStatistics.apply(x, self.eps)
            self._update(mean, var, x.numel() // self.channels)
            return (y,)
        return ((x - mean.view(view)) / torch.sqrt(var + self.eps).view(view),)

    def _update(self, mean, var, m: int) -> None:
        correction = m / (m - 1) if m > 1 else 1.0     # rounded to float32 where it is used
        blob_mean, blob_var, s = self.blobs
        with torch.no_grad():
            s.mul_(self.fraction).add_(1)
            blob_mean.mul_(self.fraction).add_(mean)
            blob_var.mul_(self.fraction).add_(var, alpha=correction)


class BatchStatistics(torch.autograd.Function):
    """Normalisation by the batch's own statistics, std = √(σ² + eps) per channel, with Caffe's
    closed-form backward. Returns y and the (non-differentiable) μ and σ² (``_channel_mean``)."""

    @staticmethod
    def forward(ctx, x, eps):
        axes, view = [0, *range(2, x.dim())], (1, x.shape[1]) + (1,) * (x.dim() - 2)
        mean = _channel_mean(x, axes)
        centered = x - mean.view(view)
        var = (centered * centered).mean(axes)
        std = torch.sqrt(var + eps).view(view)
        y = centered / std
        ctx.save_for_backward(y, std)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _mean, _var):
        y, std = ctx.saved_tensors
        return normalization_backward(dy, y, std, [0, *range(2, y.dim())]), None


def _channel_mean(x: torch.Tensor, axes) -> torch.Tensor:
    """The mean over ``axes``, but exactly the value of a constant channel, so that it centres
    to 0 (a mean can miss it by an ulp, which 1/√eps amplifies; Caffe's sums give 0 for most
    such channels). Other channels keep the plain mean, whose bits Caffe's give where the
    count is a power of 2."""
    mean = x.mean(axes)
    if not x.numel():
        return mean
    first = x[(slice(0, 1), slice(None)) + (slice(0, 1),) * (x.dim() - 2)].reshape(-1)
    return torch.where(x.amax(axes) == x.amin(axes), first, mean)
