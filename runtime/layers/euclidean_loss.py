"""EuclideanLoss (euclidean_loss_layer.cpp): Σ(a − b)² / (2·N), N the first dimension; both
bottoms get a gradient (±(a − b)/N), and they need only the same count from axis 1 on.
N is Caffe's legacy num(): bottom 0 has at most 4 axes, and so has bottom 1 where it gets a
diff (Backward divides by its own num())."""
from __future__ import annotations

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.layers import register
from runtime.layers.shapes import count
from runtime.layers.loss import LossLayer


@register("EuclideanLoss")
class EuclideanLoss(LossLayer):
    kept_from_force_backward, no_backward_to = (), {}      # both bottoms get a gradient
    def reshape(self, bottom_shapes):
        a, b = bottom_shapes
        legacy_shape(a, "bottom 0")
        self.no_backward_to = {1: f"its {len(b)} axes, more than the 4 of Caffe's legacy "
                                  "num()"} if len(b) > 4 else {}
        if count(a, 1) != count(b, 1):
            raise AllconvError(f"inputs must have the same dimension: shapes {a} and {b} hold "
                               f"{count(a, 1)} and {count(b, 1)} values per item")
        return super().reshape(bottom_shapes)

    def forward(self, a, b):
        diff = a - b.reshape(a.shape)
        return ((diff * diff).sum() / a.shape[0] / 2,)
