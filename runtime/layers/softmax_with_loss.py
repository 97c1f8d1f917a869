"""SoftmaxWithLoss (softmax_loss_layer.cpp): −log(max(p_label, FLT_MIN)) summed over the
non-ignored positions, divided by the normalizer of ``loss_param.normalization``.
One top: Caffe declares a second (the softmax) but cannot build it, since its inner Softmax is
set up from the same parameter, loss_weights included, with one top."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.labels import class_indices
from runtime.layers import register
from runtime.layers.shapes import canonical_axis, check_labels, count
from runtime.layers.gradient import with_gradient
from runtime.layers.loss import LossLayer, normalization, normalizer

NEG_LOG_FLT_MIN = -math.log(float(torch.finfo(torch.float32).tiny))


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(LossLayer):
    num_tops = (1, 2)          # as Caffe declares; a second is refused in setup
    reads_class_labels = True

    def setup(self, bottom_shapes, generator):
        if len(self.tops) > 1:
            raise AllconvError(f"{len(self.tops)} tops: Caffe cannot build a SoftmaxWithLoss "
                               "with a second top (its inner Softmax gets the layer's loss_weight "
                               "list for one top); add a Softmax layer for the probabilities")
        loss = self.param.loss_param
        self.ignore_label = loss.ignore_label if loss.HasField("ignore_label") else None
        self.mode = normalization(loss)

    def reshape(self, bottom_shapes):
        super().reshape(bottom_shapes)      # the same first dimension, whatever the axis
        scores, labels = bottom_shapes
        self.axis = canonical_axis(self.param.softmax_param.axis, len(scores))
        check_labels(scores, labels, self.axis)
        return [()]

    def forward(self, scores, labels):
        outer, classes = count(scores.shape, 0, self.axis), scores.shape[self.axis]
        inner = count(scores.shape, self.axis + 1)      # explicit: outer may be 0 (Filter)
        logp = scores.log_softmax(self.axis).reshape(outer, classes, inner)
        labels = labels.reshape(outer, inner).long()
        valid = (torch.ones_like(labels, dtype=torch.bool) if self.ignore_label is None
                 else labels != self.ignore_label)
        index = class_indices(self, labels, classes, valid)
        nll = -logp.gather(1, index.unsqueeze(1)).squeeze(1)
        # Clamp the value like Caffe's max(p, FLT_MIN), but keep Caffe's gradient p − 1.
        nll = with_gradient(nll.clamp(max=NEG_LOG_FLT_MIN), nll)   # exact: no 1e6 − 1e6
        loss = torch.where(valid, nll, 0).sum() / normalizer(
            self.mode, outer, labels.shape[1], None if self.ignore_label is None else valid)
        return (loss,)
