"""ContrastiveLoss (contrastive_loss_layer.cpp): pairs (a_i, b_i) of N × C × 1 × 1 features and
a similarity y_i (N × 1 × 1 × 1, cast to int: nonzero is similar). With d² = ‖a − b‖²:
Σ [y·d² + (1 − y)·max(margin − d, 0)²] / 2N, or max(margin − d², 0) for the dissimilar pairs
with ``legacy_version``. Gradient (a; b gets the negative) as Caffe's, which divides the
dissimilar term by d + 1e-4 rather than d; none to y."""
from __future__ import annotations

import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.gradient import with_gradient
from runtime.layers.loss import LossLayer
from runtime.layers.shapes import count

EPSILON = 1e-4      # Caffe adds it to d in the dissimilar gradient


@register("ContrastiveLoss")
class ContrastiveLoss(LossLayer):
    kept_from_force_backward, no_backward_to = (2,), {}    # the similarity: no diff, no check
    num_bottoms = (3, 3)

    def setup(self, bottom_shapes, generator):
        loss = self.param.contrastive_loss_param
        self.margin, self.legacy = loss.margin, loss.legacy_version

    def reshape(self, bottom_shapes):
        a, b, y = bottom_shapes
        legacy_a, legacy_b = legacy_shape(a, "bottom 0"), legacy_shape(b, "bottom 1")
        if legacy_a[1] != legacy_b[1] or legacy_a[2:] != (1, 1) or legacy_b[2:] != (1, 1):
            raise AllconvError(f"the pair bottoms must both be N × C × 1 × 1 (shapes {a}, {b})")
        if legacy_shape(y, "bottom 2")[1:] != (1, 1, 1):
            raise AllconvError(f"the similarity bottom must be N × 1 × 1 × 1, not {y}")
        if y[:1] < a[:1]:
            raise AllconvError(f"the similarity bottom {y} has fewer values than the "
                               f"{a[0]} pairs")
        return super().reshape([a, b])

    def forward(self, a, b, y):
        num = a.shape[0]
        diff = (a - b.reshape(a.shape)).reshape(num, count(a.shape, 1))
        dist_sq = (diff * diff).sum(1)
        similar = y.detach().reshape(-1)[:num].long() != 0
        if self.legacy:
            mdist = self.margin - dist_sq
            dissimilar = mdist.clamp(min=0)
            slope = -(mdist > 0).to(a.dtype)
        else:
            dist = dist_sq.sqrt()
            mdist = self.margin - dist
            dissimilar = mdist.clamp(min=0) ** 2
            slope = torch.where(mdist > 0, -mdist / (dist + EPSILON), 0)
        value = torch.where(similar, dist_sq, dissimilar)
        slope = torch.where(similar, 1, slope).detach()
        return (with_gradient(value, slope * dist_sq).sum() / num / 2,)
