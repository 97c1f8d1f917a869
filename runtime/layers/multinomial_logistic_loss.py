"""MultinomialLogisticLoss (multinomial_logistic_loss_layer.cpp): −Σ log(max(p_label, 1e-20))
/ N over probabilities p (N × dim, at most 4 axes: N is Caffe's legacy num()) and one label
per item (N × 1 × 1 × 1). Gradient −1/(N·max(p_label, 1e-20)) at the label, also where the
clamp applies (Caffe's); none to labels."""
from __future__ import annotations

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.gradient import with_gradient
from runtime.labels import class_indices
from runtime.layers.loss import LOG_THRESHOLD, LossLayer
from runtime.layers.shapes import count


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(LossLayer):
    reads_class_labels = True
    def reshape(self, bottom_shapes):
        legacy_shape(bottom_shapes[0], "bottom 0")
        labels = bottom_shapes[1]
        if legacy_shape(labels, "the label blob")[1:] != (1, 1, 1):
            raise AllconvError(f"the label blob must be N × 1 × 1 × 1 (one label per item), "
                               f"not {labels}")
        return super().reshape(bottom_shapes)

    def forward(self, prob, labels):
        num = prob.shape[0]
        prob = prob.reshape(num, count(prob.shape, 1))
        label = class_indices(self, labels.detach().reshape(num, 1).long(), prob.shape[1])
        p = prob.gather(1, label)
        clamped = p.clamp(min=LOG_THRESHOLD)
        return (-with_gradient(clamped.log(), p / clamped.detach()).sum() / num,)
