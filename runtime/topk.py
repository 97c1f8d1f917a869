"""Top-k error as Caffe's Accuracy layer counts it (accuracy_layer.cpp): an image is correct
within k when fewer than k other classes score at least as high as its label (ties count
against it)."""
from __future__ import annotations

import torch


def label_rank(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many other classes score >= the label's class; scores (N, classes, ...), labels
    (N, ...) int64. Rank 0 is a top-1 hit."""
    true_score = scores.gather(1, labels.unsqueeze(1))
    return (scores >= true_score).sum(1) - 1


def topk_errors(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """{k: % of images whose label is not within the top k}; scores (N, classes)."""
    rank = label_rank(scores.detach().float(), labels.detach().long().to(scores.device))
    return {k: 100.0 * float((rank >= k).float().mean()) for k in ks}
