"""Top-k error as the reference Caffe's Accuracy layer counts it (accuracy_layer.cpp): the
classes are ordered by (score, class index), largest first, and an image is correct within k
when its label is among the first k. So a tie goes to the higher class index. A NaN compares
as a tie, as the pairs compare it: a row all NaN (a diverged net) puts the classes in index
order, the last first, as in Caffe. A row mixing NaN and numbers has no consistent order, and
Caffe's is libstdc++'s heap order, which this does not model. (BVLC master since 2017 counts
every tie against the label, and no NaN; the reference build predates that.)"""
from __future__ import annotations

import torch


def label_rank(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label's place in that order: how many classes score higher, or equal (or NaN beside
    it) with a higher index; scores (N, classes, ...), labels (N, ...) int64. Rank 0 is a
    top-1 hit."""
    true_score = scores.gather(1, labels.unsqueeze(1))
    index = torch.arange(scores.shape[1], device=scores.device)
    index = index.view(1, -1, *([1] * (scores.dim() - 2)))
    tied = ~(scores > true_score) & ~(scores < true_score)      # equal, or a NaN on a side
    above = (scores > true_score) | (tied & (index > labels.unsqueeze(1)))
    return above.sum(1)


def predicted_class(scores: torch.Tensor) -> torch.Tensor:
    """The class of rank 0 along dim -1: the highest score, the highest index among ties."""
    return scores.shape[-1] - 1 - scores.flip(-1).argmax(-1)


def topk_errors(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """{k: % of images whose label is not within the top k}; scores (N, classes)."""
    rank = label_rank(scores.detach().float(), labels.detach().long().to(scores.device))
    return {k: 100.0 * float((rank >= k).float().mean()) for k in ks}
