"""Accuracy (accuracy_layer.cpp): a position counts as correct when its label is among the
``top_k`` classes ordered by (score, index), largest first (``runtime.topk.in_top_k``: a tie
goes to the higher index; a row with NaN in Caffe's heap order), over the positions whose
label is not ``ignore_label`` (NaN when none is left, as Caffe's 0/0); optional second top:
per-class accuracy (0 for classes that do not occur)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.labels import class_indices
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, check_labels, count
from runtime.topk import in_top_k


@register("Accuracy")
class Accuracy(Layer):
    num_bottoms = (2, 2)
    num_tops = (1, 2)
    reads_class_labels = True
    no_backward_to = {0: "it has no backward", 1: "it has no backward"}

    def setup(self, bottom_shapes, generator):
        acc = self.param.accuracy_param
        self.top_k = acc.top_k
        self.ignore_label = acc.ignore_label if acc.HasField("ignore_label") else None

    def reshape(self, bottom_shapes):
        scores, labels = bottom_shapes
        self.axis = canonical_axis(self.param.accuracy_param.axis, len(scores))
        if self.top_k > scores[self.axis]:
            raise AllconvError(f"top_k {self.top_k} exceeds the {scores[self.axis]} classes")
        check_labels(scores, labels, self.axis)
        return [(), (scores[self.axis],)][:len(self.tops)]

    def forward(self, scores, labels):
        outer, classes = count(scores.shape, 0, self.axis), scores.shape[self.axis]
        inner = count(scores.shape, self.axis + 1)
        scores = scores.detach().reshape(outer, classes, inner)
        labels = labels.detach().reshape(outer, inner).long()
        valid = (torch.ones_like(labels, dtype=torch.bool) if self.ignore_label is None
                 else labels != self.ignore_label)
        labels = class_indices(self, labels, classes, valid)
        correct = in_top_k(scores, labels, self.top_k) & valid
        accuracy = correct.sum() / valid.sum()      # every label ignored: 0/0, NaN as Caffe's
        if len(self.tops) == 1:
            return (accuracy,)
        per_class = F.one_hot(labels, classes) * valid.unsqueeze(-1)
        seen = per_class.sum((0, 1))
        hits = (per_class * correct.unsqueeze(-1)).sum((0, 1))
        return accuracy, torch.where(seen > 0, hits / seen.clamp(min=1), 0.0)
