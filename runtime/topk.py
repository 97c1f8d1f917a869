"""Top-k error as the reference Caffe's Accuracy layer counts it (accuracy_layer.cpp): the
classes are ordered by (score, class index), largest first, and an image is correct within k
when its label is among the first k. So a tie goes to the higher class index. A NaN compares
as a tie, as the pairs compare it: a row all NaN (a diverged net) puts the classes in index
order, the last first. A row mixing NaN and numbers has no consistent order: what Caffe's
``std::partial_sort`` leaves first is then libstdc++'s heap order, which ``heap_top_k``
replays (Accuracy and ArgMax use it for such rows). (BVLC master since 2017 counts every tie
against the label, and no NaN; the reference build predates that.)"""
from __future__ import annotations

import torch


def _greater(a: tuple, b: tuple) -> bool:
    """``std::greater<std::pair<float, int>>``: b < a, where a NaN is less than nothing."""
    return b[0] < a[0] or (not a[0] < b[0] and b[1] < a[1])


def heap_top_k(values: list[float], k: int) -> list[int]:
    """The indices of the first ``k`` (value, index) pairs after libstdc++'s
    ``std::partial_sort(first, first + k, last, std::greater<>())``: a heap of the first k,
    each later pair that beats its top popped in, then the heap sorted. With NaN among the
    values the order is the one these steps give, which no sort rule describes."""
    pairs = [(float(v), i) for i, v in enumerate(values)]

    def adjust(hole: int, size: int, value: tuple) -> None:     # __adjust_heap, __push_heap
        top, child = hole, hole
        while child < (size - 1) // 2:
            child = 2 * (child + 1)
            if _greater(pairs[child], pairs[child - 1]):
                child -= 1
            pairs[hole], hole = pairs[child], child
        if size % 2 == 0 and child == (size - 2) // 2:
            child = 2 * (child + 1)
            pairs[hole], hole = pairs[child - 1], child - 1
        parent = (hole - 1) // 2
        while hole > top and _greater(pairs[parent], value):
            pairs[hole], hole = pairs[parent], parent
            parent = (hole - 1) // 2
        pairs[hole] = value

    def pop(size: int, result: int) -> None:                     # __pop_heap
        value = pairs[result]
        pairs[result] = pairs[0]
        adjust(0, size, value)

    if k > 1:                                                   # __make_heap
        for parent in range((k - 2) // 2, -1, -1):
            adjust(parent, k, pairs[parent])
    for i in range(k, len(pairs)):                              # __heap_select
        if _greater(pairs[i], pairs[0]):
            pop(k, i)
    for size in range(k - 1, 0, -1):                            # __sort_heap
        pop(size, size)
    return [index for _, index in pairs[:k]]


def may_replay(values: torch.Tensor) -> bool:
    """Whether rows with NaN may be replayed on the host: on the CPU, outside a compiled
    graph. A GPU pass (the harness's evaluation: one host read in all, or a captured CUDA
    graph: none) and a compiled one keep the closed form's order for them."""
    return values.device.type == "cpu" and not torch.compiler.is_compiling()


def in_top_k(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each label is among Caffe's first ``k`` classes; scores (N, classes, ...),
    labels (N, ...) int64. Rows with NaN replay Caffe's partial sort (``heap_top_k``) where
    ``may_replay``."""
    hit = label_rank(scores, labels) < k
    if not may_replay(scores):
        return hit
    nan = scores.isnan().any(1)
    if nan.any():
        rows, wanted = scores.movedim(1, -1)[nan].tolist(), labels[nan].tolist()
        hit[nan] = torch.tensor([label in heap_top_k(row, k) for row, label in zip(rows, wanted)],
                                device=hit.device)
    return hit


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
