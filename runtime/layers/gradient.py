"""``with_gradient``: a value whose backward is Caffe's hand-written gradient, where that
gradient is not the derivative autograd would take (clamped logs, a kink, Caffe's own
approximations)."""
from __future__ import annotations

import torch


def with_gradient(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``surrogate`` in the backward pass."""
    return value.detach() + (surrogate - surrogate.detach())
