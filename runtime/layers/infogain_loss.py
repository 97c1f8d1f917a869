"""InfogainLoss (infogain_loss_layer.cpp, BVLC master): with p = softmax(scores) along
``infogain_param.axis`` and the infogain matrix H (C × C: a third bottom, or the BlobProto
file ``infogain_param.source``), −Σ_l H[label, l]·log(max(p_l, 1e-20)) summed over the
positions whose label is not ``ignore_label``, divided by the normalizer of
``loss_param.normalization``. Gradient (p·ΣH[label, :] − H[label, :])/normalizer to the
scores (the clamp does not change it); none to the labels or H. Optional second top: p.

(Caffe releases before 2017 had no softmax inside: they took probabilities and divided by N.)
"""
from __future__ import annotations

import math

import torch

from runtime.caffemodel import read_blob
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.shapes import canonical_axis, check_labels, count
from runtime.layers.gradient import with_gradient
from runtime.labels import class_indices
from runtime.layers.loss import LOG_THRESHOLD, LossLayer, ignored, normalizer

LOG_MIN = math.log(float(torch.tensor(LOG_THRESHOLD, dtype=torch.float32)))


@register("InfogainLoss")
class InfogainLoss(LossLayer):
    reads_class_labels = True
    num_bottoms = (2, 3)
    num_tops = (1, 2)
    no_backward_to = {1: "label inputs", 2: "infogain inputs"}

    def setup(self, bottom_shapes, generator):
        loss, infogain = self.param.loss_param, self.param.infogain_loss_param
        if loss.HasField("normalize"):
            raise AllconvError('loss_param.normalize is deprecated here: use "normalization"')
        self.mode = loss.normalization
        if len(bottom_shapes) == 3:
            return
        if not infogain.HasField("source"):
            raise AllconvError("infogain_loss_param.source (the H matrix file) is required "
                               "without a third bottom")
        matrix = read_blob(infogain.source)
        self.register_buffer("matrix", torch.from_numpy(matrix.reshape(-1)), persistent=False)

    def reshape(self, bottom_shapes):
        scores, labels = bottom_shapes[:2]
        super().reshape(bottom_shapes)
        self.axis = canonical_axis(self.param.infogain_loss_param.axis, len(scores))
        check_labels(scores, labels, self.axis)
        classes = scores[self.axis]
        h = count(bottom_shapes[2]) if len(bottom_shapes) == 3 else self.matrix.numel()
        if h != classes * classes:
            raise AllconvError(f"the infogain matrix H has {h} values; {classes} classes "
                               f"need {classes}×{classes}")
        return [()] + [scores] * (len(self.tops) - 1)

    def forward(self, scores, labels, *matrix):
        outer, classes = count(scores.shape, 0, self.axis), scores.shape[self.axis]
        h = (matrix[0].detach() if matrix else self.matrix).reshape(classes, classes)
        inner = count(scores.shape, self.axis + 1)
        logp = scores.log_softmax(self.axis).reshape(outer, classes, inner)
        logp = with_gradient(logp.clamp(min=LOG_MIN), logp)
        label = labels.detach().reshape(outer, inner).long()
        skip = ignored(label, self.param.loss_param)
        rows = h[class_indices(self, label, classes, None if skip is None else ~skip)]
        per_position = -(rows.transpose(1, 2) * logp).sum(1)
        if skip is not None:
            per_position = torch.where(skip, 0, per_position)
        loss = per_position.sum() / normalizer(self.mode, outer, label.shape[1],
                                               None if skip is None else ~skip)
        return (loss,) + ((scores.softmax(self.axis),) if len(self.tops) > 1 else ())
