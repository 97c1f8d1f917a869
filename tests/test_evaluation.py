"""Device-side evaluation (harness/evaluation.py) against the host path the harness took before
it (`class_metrics` below, `topk_errors`, the mean SoftmaxWithLoss), for a solo net and a pack
of 2."""
from __future__ import annotations

import warnings

import pytest
import torch

from harness.evaluation import Evaluator, class_counts, summarize
from runtime.errors import AllconvError
from runtime import TEST
from runtime.net import Net
from runtime.pack import pack_net, pack_weights
from runtime.topk import label_rank, predicted_class, topk_errors

CLASSES, TOPK = 5, (1, 2)
NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 25 dim: 3 dim: 8 dim: 8 } shape { dim: 25 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "score" type: "Convolution" bottom: "conv1" top: "score"
  convolution_param { num_output: 5 kernel_size: 1 weight_filler { type: "xavier" }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "score" top: "score" }
layer { name: "pool" type: "Pooling" bottom: "score" top: "pool"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "pool" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""


def class_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """The old host path's metrics from class scores (N, K) and labels (N,), kept here as the
    reference: error (ties to the higher index, Caffe's Accuracy), per-class accuracy, never-predicted
    classes, dead class units."""
    scores, labels = scores.float(), labels.long()
    correct = label_rank(scores, labels) == 0
    classes = scores.shape[1]
    seen = torch.bincount(labels, minlength=classes)
    hits = torch.bincount(labels[correct], minlength=classes)
    predicted = torch.bincount(predicted_class(scores), minlength=classes)
    return {
        "error": 100.0 * (1.0 - correct.float().mean().item()),
        "per_class": [h / s if s else None for h, s in zip(hits.tolist(), seen.tolist())],
        "never_predicted": (predicted == 0).nonzero().flatten().tolist(),
        "dead_units": (scores.amax(0) == 0).nonzero().flatten().tolist(),
    }


def solo(seed: int, dead: int | None = None) -> Net:
    """The tiny net; class ``dead``'s unit killed (ReLU of a very negative bias)."""
    net = Net(NET, TEST, seed=seed)
    if dead is not None:
        with torch.no_grad():
            net.params["score"][1].data[dead] = -100.0
    return net


def batches(size: int = 60, batch: int = 25):
    """Test batches (the last one partial), labels as the harness keeps them."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, 8, 8, generator=g)
    labels = torch.randint(0, CLASSES, (size,), generator=g)
    return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, size, batch)]


@torch.no_grad()
def host_metrics(net: Net, test_batches) -> dict:
    """What the harness's Run.evaluate computed before: scores gathered, then class_metrics."""
    scores, labels, loss, done = [], [], 0.0, 0
    for x, y in test_batches:
        out = net.blob_values(data=x, label=y)
        loss += out["loss"].float() * len(x)
        scores.append(out["pool"].float().reshape(len(x), -1))
        labels.append(y)
        done += len(x)
    scores, labels = torch.cat(scores), torch.cat(labels)
    metrics = class_metrics(scores, labels)
    wider = [k for k in TOPK if k > 1]
    topk = {f"top{k}_error": e for k, e in topk_errors(scores, labels, wider).items()}
    return {"test_loss": float(loss) / done, "test_error": metrics.pop("error"), **topk,
            **metrics}


def assert_same_metrics(got: dict, want: dict, loss_rtol: float = 0.0) -> None:
    assert list(got) == list(want)
    assert got["test_loss"] == pytest.approx(want["test_loss"], rel=loss_rtol, abs=0)
    for key in ("test_error", "top2_error"):   # double vs float32 means of the same counts
        assert got[key] == pytest.approx(want[key], rel=1e-6)
    for key in ("per_class", "never_predicted", "dead_units"):
        assert got[key] == want[key], key


def test_solo_metrics_equal_the_host_path():
    net = solo(0, dead=3)
    want = host_metrics(net, batches())
    assert want["dead_units"] == [3] and 3 in want["never_predicted"]   # the cases are there
    seen = []
    [got] = Evaluator(net, TOPK)(batches(), progress=seen.append)
    assert_same_metrics(got, want)
    assert seen == [25, 50, 60]


def test_pack_of_two_gives_each_members_metrics_in_one_pass():
    solos = [solo(1), solo(2, dead=0)]
    pack = Net(pack_net(NET, 2), TEST)
    pack_weights(pack, solos)
    evaluator = Evaluator(pack, TOPK)
    assert (evaluator.members, evaluator.labels) == (2, ["label_m0", "label_m1"])
    for got, net in zip(evaluator(batches()), solos):
        # grouped and dense convolutions round differently: the loss agrees to rounding
        assert_same_metrics(got, host_metrics(net, batches()), loss_rtol=1e-6)


def test_counts_give_ties_to_the_higher_index_like_class_metrics():
    scores = torch.tensor([[2.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.0, 5.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    counts, maxima = class_counts(scores[None], labels, (2,))
    got = summarize(counts[0].tolist(), maxima[0].tolist(), 0.0, 4, (2,))
    want = class_metrics(scores, labels)
    # row 0's label loses its tie to class 1; row 1's wins its tie as the highest index
    assert got["test_error"] == pytest.approx(want["error"]) == 25.0
    assert got["top2_error"] == topk_errors(scores, labels, (2,))[2] == 0.0
    assert (got["per_class"], got["never_predicted"], got["dead_units"]) == \
        (want["per_class"], want["never_predicted"], want["dead_units"]) == \
        ([0.0, 1.0, 1.0], [0], [])


def test_each_batch_traces_as_one_graph():
    evaluator = Evaluator(Net(pack_net(NET, 2), TEST), TOPK)
    x, y = batches()[0]
    explained = torch._dynamo.explain(evaluator._counts)(x, y)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_host_sync_per_evaluation_on_cuda():
    net = Net(pack_net(NET, 2), TEST).cuda()
    evaluator = Evaluator(net, TOPK, compile=False)
    test_batches = [(x.cuda(), y.cuda()) for x, y in batches()]
    evaluator(test_batches)   # warm-up: lazy CUDA initialisation
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluator(test_batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in caught if "synchroniz" in str(w.message)]) == 1


def test_a_test_label_past_the_classes_is_one_error_after_the_pass():
    """The label checks wait in device records (no host read per batch) and are read with the
    counts: the first offender, named by layer, label and class count."""
    test = batches()
    test[1][1][3] = 7
    with pytest.raises(AllconvError, match=r"layer 'loss' \(SoftmaxWithLoss\): label 7 is "
                                           r"outside its 5 classes"):
        Evaluator(solo(0), TOPK)(test)
