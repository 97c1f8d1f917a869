"""LossLayer (loss_layer.cpp): the base of the loss layers, and Caffe's loss normalization
(get_normalizer of softmax_loss_layer.cpp, sigmoid_cross_entropy_loss_layer.cpp and
infogain_loss_layer.cpp)."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer
from runtime.proto import pb

_N = pb.LossParameter
LOG_THRESHOLD = 1e-20          # Caffe's kLOG_THRESHOLD: probabilities are clamped to it


def normalization(loss_param, default: int = _N.VALID) -> int:
    """The mode in force: ``normalization`` if set, else the legacy ``normalize`` flag
    (true → VALID, false → BATCH_SIZE), else ``default`` (VALID in SoftmaxWithLoss, as the
    proto's default; BATCH_SIZE in SigmoidCrossEntropyLoss)."""
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return _N.VALID if loss_param.normalize else _N.BATCH_SIZE
    return default


def normalizer(mode: int, outer: int, inner: int, valid: torch.Tensor | None = None):
    """What the loss is divided by, at least 1: outer·inner (FULL, and VALID when every
    position counts), the count of ``valid`` positions (VALID with an ignore label), outer
    (BATCH_SIZE) or 1 (NONE)."""
    if mode == _N.VALID and valid is not None:
        return valid.sum().clamp(min=1).to(torch.float32)
    # An if-chain, not a dict keyed by the enum: torch.compile traces it without a break.
    if mode == _N.BATCH_SIZE:
        return float(max(1, outer))
    if mode == _N.NONE:
        return 1.0
    return float(max(1, outer * inner))


def ignored(labels: torch.Tensor, loss_param) -> torch.Tensor | None:
    """The positions whose label, cast to int as Caffe does, is ``ignore_label`` (None when
    the layer has no ignore label)."""
    if not loss_param.HasField("ignore_label"):
        return None
    return labels.long() == loss_param.ignore_label


class LossLayer(Layer):
    """Two bottoms (data, label) with the same first dimension; a scalar top weighted 1 by
    default. Caffe never back-propagates to the label: subclasses detach it."""

    num_bottoms = (2, 2)
    is_loss = True
    kept_from_force_backward = (1,)
    no_backward_to = {1: "label inputs"}

    def reshape(self, bottom_shapes):
        data, label = bottom_shapes[:2]
        if data[:1] != label[:1] or not data:
            raise AllconvError(f"the data and label should have the same first dimension "
                               f"(shapes {data} and {label})")
        return [()]
