"""Top-k counting of NaN rows off the replayed path: label_rank and topk_errors, which the
harness's evaluation and GPU passes use, against the reference Caffe's Accuracy
(tools/caffe_reference/module_edges/accuracy_nan_rows.py: rows all NaN, labels 9 and 0 of 10
classes: top-1 and top-5 accuracy 0.5 each, as for rows all tied)."""
import pytest
import torch

from runtime.topk import heap_top_k, label_rank, topk_errors


def test_rows_all_nan_rank_the_classes_in_index_order_the_last_first():
    scores = torch.full((2, 10), float("nan"))
    labels = torch.tensor([9, 0])
    assert label_rank(scores, labels).tolist() == [0, 9]
    assert topk_errors(scores, labels) == {1: 50.0, 5: 50.0}


def test_a_nan_true_score_ties_with_every_class():
    # a NaN compares as a tie on either side: the label ranks after every higher index
    scores = torch.tensor([[1.0, float("nan"), -1.0, 5.0]])
    assert label_rank(scores, torch.tensor([1])).tolist() == [2]


# module_edges/argmax_nan_heap.py (its output: argmax_nan_heap.out there): real Caffe's ArgMax
# top_k indices on rows mixing NaN (None here) and numbers
NAN_HEAP_CASES = [
    ([5, 1, 3, None, 2, 4], 2, [3, 0]),
    ([5, 1, 3, None, 2, 4], 3, [3, 0, 5]),
    ([5, 1, 3, None, 2, 4], 4, [0, 5, 3, 2]),
    ([5, 1, 3, None, 2, 4], 5, [0, 5, 3, 4, 2]),
    ([None, 2, 7, 1, None, 3, 9, 0], 2, [6, 7]),
    ([None, 2, 7, 1, None, 3, 9, 0], 3, [6, 4, 2]),
    ([None, 2, 7, 1, None, 3, 9, 0], 4, [6, 5, 4, 2]),
    ([None, 2, 7, 1, None, 3, 9, 0], 5, [6, 5, 4, 2, 1]),
    ([0.5, None, 0.5, 2, None, -1, 2, 8, 3], 2, [7, 8]),
    ([0.5, None, 0.5, 2, None, -1, 2, 8, 3], 3, [7, 8, 6]),
    ([0.5, None, 0.5, 2, None, -1, 2, 8, 3], 4, [7, 8, 6, 4]),
    ([0.5, None, 0.5, 2, None, -1, 2, 8, 3], 5, [7, 8, 6, 4, 3]),
    ([1, 2, None, 3, 4, 5, 6, 7], 2, [7, 6]),
    ([1, 2, None, 3, 4, 5, 6, 7], 3, [7, 6, 5]),
    ([1, 2, None, 3, 4, 5, 6, 7], 4, [7, 6, 5, 4]),
    ([1, 2, None, 3, 4, 5, 6, 7], 5, [7, 6, 5, 4, 3]),
]


@pytest.mark.parametrize("row,k,caffe", NAN_HEAP_CASES)
def test_heap_top_k_replays_caffes_partial_sort_on_rows_with_nan(row, k, caffe):
    values = [float("nan") if v is None else float(v) for v in row]
    assert heap_top_k(values, k) == caffe
