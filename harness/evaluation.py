"""Evaluation on the device (issue 20, section 4): the test set goes through a TEST-phase net
in a few large batches, each batch one call (compiled on CUDA), every metric is counted on the
device, and the host reads the device once per evaluation. A pack (runtime/pack.py) is
evaluated in the same passes for all its members: the test images fill every member's input
channels and every member's label input gets the test labels.

The metrics a run records (one definition of a hit, `runtime.topk.label_rank`: classes ordered
by score then index, as the reference Caffe's Accuracy layer orders them): the mean
SoftmaxWithLoss, the top-1 error, wider top-k errors, accuracy per class (None for a class with
no image), classes that are nobody's prediction (the rank-0 class), and dead class units (a
class whose score is exactly 0 on every image: for the All-CNN nets the global average of the
class conv's ReLU, so the unit is zero at every position of every test image and gets no
gradient). Errors are computed from integer counts in double precision (the host path they
replaced took a float32 mean; they agree to float32 rounding, tests/test_evaluation.py).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterable

import torch

from runtime.errors import AllconvError
from runtime.labels import defer_label_checks, deferred_label_error, label_records
from runtime.topk import label_rank, predicted_class

__all__ = ["class_counts", "summarize", "Evaluator"]


def class_counts(scores: torch.Tensor, labels: torch.Tensor, ks=()) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """One batch's counts for K sets of scores (K, N, C) against shared labels (N,), without a
    host sync: ``counts`` (K, 3·C + len(ks)) int64 (per class: images, top-1 hits, argmax
    predictions; then the misses of each top-k) and ``maxima`` (K, C), each class's highest
    score."""
    members, n, classes = scores.shape
    labels = labels.long()
    rank = label_rank(scores.permute(1, 2, 0), labels[:, None].expand(n, members)).T  # (K, N)
    offsets = torch.arange(members, device=scores.device)[:, None] * classes
    counts = torch.zeros(3, members * classes, dtype=torch.long, device=scores.device)
    for row, (index, value) in enumerate([(labels, torch.ones_like(rank)),
                                          (labels, (rank == 0).long()),
                                          (predicted_class(scores), torch.ones_like(rank))]):
        counts[row].scatter_add_(0, (offsets + index).flatten(), value.flatten())
    misses = [(rank >= k).sum(1) for k in ks]
    counts = counts.reshape(3, members, classes).permute(1, 0, 2).reshape(members, -1)
    return torch.cat([counts, *(m[:, None] for m in misses)], 1), scores.amax(1)


def summarize(counts: list[int], maxima: list[float], loss_sum: float, images: int,
              ks=()) -> dict:
    """One member's metrics from its `class_counts` summed over the test set (on the host), in
    `Run.evaluate`'s record form: test_loss, test_error, top<k>_error, per_class,
    never_predicted, dead_units."""
    classes = len(maxima)
    seen, hits, predicted = (counts[i * classes:(i + 1) * classes] for i in range(3))
    misses = counts[3 * classes:]
    return {"test_loss": loss_sum / images,
            "test_error": 100.0 * (1.0 - sum(hits) / images),
            **{f"top{k}_error": 100.0 * m / images for k, m in zip(ks, misses)},
            "per_class": [h / s if s else None for h, s in zip(hits, seen)],
            "never_predicted": [c for c in range(classes) if predicted[c] == 0],
            "dead_units": [c for c in range(classes) if maxima[c] == 0]}


def _origin(net, blob: str) -> str:
    """The blob a Split top (InsertSplits) is a view of."""
    sources = {top: layer.bottoms[0] for layer in net.layers if layer.type_name == "Split"
               for top in layer.tops}
    while blob in sources:
        blob = sources[blob]
    return blob


class Evaluator:
    """Test metrics of a TEST-phase `Net`, solo or packed: one member per SoftmaxWithLoss
    layer, whose bottoms are the member's scores and label input; the other input is the
    data, repeated once per member along axis 1.

    ``topk``: the dataset's top-k list (k > 1 are reported beside the top-1 error);
    ``autocast``: the context the forward runs in (the harness's bf16 autocast);
    ``compile``: compile each batch's forward and counts (default: on CUDA), ``cuda_graphs``:
    as CUDA graphs (mode "reduce-overhead"). A batch of another size compiles once more.
    """

    def __init__(self, net, topk=(), *, autocast=None, compile: bool | None = None,
                 cuda_graphs: bool = False, memory_format=torch.preserve_format):
        losses = [l for l in net.layers if l.type_name == "SoftmaxWithLoss"]
        if not losses:
            raise AllconvError("the net has no SoftmaxWithLoss layer to evaluate")
        self.net, self.ks = net, [k for k in topk if k > 1]   # top-1 is the test error
        self.losses = [l.tops[0] for l in losses]
        self.scores = [l.bottoms[0] for l in losses]
        self.labels = [_origin(net, l.bottoms[1]) for l in losses]
        data = [name for name in net.inputs if name not in self.labels]
        if len(data) != 1 or not set(self.labels) <= set(net.inputs):
            raise AllconvError(f"evaluation needs one data input and the losses' labels as "
                               f"inputs; the net's inputs are {net.inputs}")
        self.data = data[0]
        self.label_layers = defer_label_checks(net)   # read with the counts, in the one read
        self.autocast = autocast if autocast is not None else nullcontext()
        self.memory_format, self.cuda_graphs = memory_format, cuda_graphs
        if compile is None:
            compile = net.device.type == "cuda"
        self._step = (torch.compile(self._counts, dynamic=False,
                                    mode="reduce-overhead" if cuda_graphs else None)
                      if compile else self._counts)

    @property
    def members(self) -> int:
        return len(self.losses)

    def _counts(self, images: torch.Tensor, labels: torch.Tensor):
        """(loss × batch size (K,), class_counts) of one batch."""
        inputs = dict.fromkeys(self.labels, labels)
        repeats = (1, self.members) + (1,) * (images.dim() - 2)
        inputs[self.data] = images.repeat(repeats) if self.members > 1 else images
        with self.autocast:
            out = self.net.blob_values(**inputs)
        scores = torch.stack([out[s].float().reshape(len(images), -1) for s in self.scores])
        losses = torch.stack([out[l].float() for l in self.losses]) * len(images)
        # an out-of-range label is in the loss layer's record; clamped, it cannot index here
        return (losses, *class_counts(scores, labels.clamp(0, scores.shape[2] - 1), self.ks))

    @torch.no_grad()
    def __call__(self, batches: Iterable, progress: Callable[[int], None] | None = None
                 ) -> list[dict]:
        """One dict of metrics per member (`summarize`) over the ``(images, labels)`` batches;
        ``progress(images done)`` after each batch. Reads the device once, at the end."""
        totals, done = None, 0
        for images, labels in batches:
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            step = self._step(images.contiguous(memory_format=self.memory_format), labels)
            if totals is None:   # copies: a CUDA graph's outputs are overwritten by its next run
                totals = [t.clone() for t in step]
            else:
                totals[0] += step[0]
                totals[1] += step[1]
                totals[2] = torch.maximum(totals[2], step[2])
            done += len(images)
            if progress is not None:
                progress(done)
        if totals is None:
            raise AllconvError("evaluation got no test images")
        totals.append(label_records(self.label_layers))
        host = torch.cat([t.double().flatten() for t in totals]).cpu()   # the one read
        loss, counts, maxima, records = host.split([t.numel() for t in totals])
        error = deferred_label_error(self.label_layers, records.reshape(-1, 3))
        if error is not None:
            raise error
        counts = counts.long().reshape(self.members, -1).tolist()
        maxima = maxima.reshape(self.members, -1).tolist()
        return [summarize(c, m, float(l), done, self.ks)
                for l, c, m in zip(loss.tolist(), counts, maxima)]
