"""HingeLoss (hinge_loss_layer.cpp): one-vs-all hinge on scores x (N × dim, dim = count/N)
with one label per item (N is Caffe's legacy num(): at most 4 axes): t = max(0, 1 − x) at the
label, max(0, 1 + x) elsewhere; Σt / N (norm L1, the default) or Σt² / N (L2). Gradient
±sign(t)/N or ±2t/N; none to labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.shapes import count
from runtime.labels import class_indices
from runtime.layers.loss import LossLayer
from runtime.proto import pb


@register("HingeLoss")
class HingeLoss(LossLayer):
    reads_class_labels = True
    def setup(self, bottom_shapes, generator):
        self.l2 = self.param.hinge_loss_param.norm == pb.HingeLossParameter.L2

    def reshape(self, bottom_shapes):
        tops = super().reshape(bottom_shapes)
        scores, labels = bottom_shapes
        legacy_shape(scores, "bottom 0")
        if count(labels) < scores[0]:
            raise AllconvError(f"label shape {labels} holds {count(labels)} labels; scores "
                               f"shape {scores} needs one per item ({scores[0]})")
        return tops

    def _margins(self, scores, labels):
        num = scores.shape[0]
        x = scores.reshape(num, count(scores.shape, 1))
        label = class_indices(self, labels.detach().reshape(-1)[:num].long(), x.shape[1])
        sign = 1 - 2 * F.one_hot(label, x.shape[1]).to(x.dtype)
        margin = 1 + sign * x
        return torch.where(margin > 0, margin, 0)      # std::max(0, NaN) is 0, as in Caffe

    def forward(self, scores, labels):
        margin = self._margins(scores, labels)
        return (((margin * margin) if self.l2 else margin).sum() / scores.shape[0],)

    def scratch_diff(self, bottoms, top_diff, learns, bottom_diffs):
        """Caffe's Forward computes the margins in bottom 0's diff."""
        return self._margins(*bottoms).reshape(bottoms[0].shape)
