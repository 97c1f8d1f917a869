"""SigmoidCrossEntropyLoss (sigmoid_cross_entropy_loss_layer.cpp, BVLC master): the cross
entropy of σ(x) against targets t in [0, 1], −[x·(t − [x ≥ 0]) − log(1 + e^(−|x|))] per
position, summed over the positions whose target (cast to int) is not ``ignore_label`` and
divided by the normalizer of ``loss_param`` (BATCH_SIZE unless ``normalization`` or the
legacy ``normalize`` is given). Gradient (σ(x) − t)/normalizer, 0 where ignored; none to t.
Bottom 0 has at most 4 axes: the reference build divides by its legacy num()."""
from __future__ import annotations

import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.shapes import count
from runtime.layers.gradient import with_gradient
from runtime.layers.loss import LossLayer, ignored, normalization, normalizer
from runtime.proto import pb


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LossLayer):
    def setup(self, bottom_shapes, generator):
        self.mode = normalization(self.param.loss_param, pb.LossParameter.BATCH_SIZE)

    def reshape(self, bottom_shapes):
        x, t = bottom_shapes
        legacy_shape(x, "bottom 0")
        if count(x) != count(t):
            raise AllconvError(f"inputs must have the same count: shapes {x} and {t}")
        return super().reshape(bottom_shapes)

    def forward(self, x, target):
        t = target.detach().reshape(x.shape)
        positive = (x >= 0).to(x.dtype)
        # log(1 + e^(−|x|)) as Caffe computes it, in x's precision: 0 past |x| ≈ 17 in float
        value = -(x * (t - positive) - torch.log(1 + torch.exp(-x.abs())))
        per_position = with_gradient(value, (torch.sigmoid(x) - t).detach() * x)
        skip = ignored(t, self.param.loss_param)
        if skip is not None:
            per_position = torch.where(skip, 0, per_position)
        outer = x.shape[0]
        loss = per_position.sum() / normalizer(self.mode, outer, x.numel() // max(outer, 1),
                                               None if skip is None else ~skip)
        return (loss,)
