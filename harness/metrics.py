"""What a run measures: test metrics from class scores, and the curves PNG of its log."""
from __future__ import annotations

from pathlib import Path

import torch

from generator.draw import pyplot
from runtime.topk import label_rank


def class_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """Test metrics from class scores (N, K) and labels (N,).

    - ``error``: % of images not classified correctly by Caffe's Accuracy rule (top-1: no other
      class scores >= the label's score, so ties count as wrong);
    - ``per_class``: accuracy of each class by the same rule (None for a class with no image);
    - ``never_predicted``: classes that are nobody's argmax;
    - ``dead_units``: classes whose score is exactly 0 on every image. For the All-CNN nets the
      score is the global average of the class conv's ReLU output, so a zero score means the
      unit is zero at every position of every test image: a dead unit, which gets no gradient.
    """
    scores, labels = scores.float(), labels.long()
    correct = label_rank(scores, labels) == 0
    classes = scores.shape[1]
    seen = torch.bincount(labels, minlength=classes)
    hits = torch.bincount(labels[correct], minlength=classes)
    predicted = torch.bincount(scores.argmax(1), minlength=classes)
    return {
        "error": 100.0 * (1.0 - correct.float().mean().item()),
        "per_class": [h / s if s else None for h, s in zip(hits.tolist(), seen.tolist())],
        "never_predicted": (predicted == 0).nonzero().flatten().tolist(),
        "dead_units": (scores.amax(0) == 0).nonzero().flatten().tolist(),
    }


def plot_curves(records: list[dict], path: Path, title: str, paper_error: float | None = None,
                tolerance: float = 0.0) -> None:
    """Training loss and test error against epochs, as a PNG (matplotlib's Agg backend). Dotted
    lines mark the lr drops; the paper's error and its tolerance band frame the test error."""
    plt = pyplot()
    evals = [r for r in records if "test_error" in r]
    style = {"marker": "."} if len(evals) <= 60 else {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in evals]
    left.plot(epochs, [r["train_loss"] for r in evals], label="train (mean since last eval)",
              **style)
    left.plot(epochs, [r["test_loss"] for r in evals], label="test", **style)
    left.set(xlabel="epoch", ylabel="loss", yscale="log")
    right.plot(epochs, [r["test_error"] for r in evals], label="measured", **style)
    right.set(xlabel="epoch", ylabel="test error % (log scale)", yscale="log")
    for axis in (left, right):
        _label_log_axis(axis.yaxis)
    if paper_error is not None:
        right.axhline(paper_error, color="k", linestyle="--", linewidth=1,
                      label=f"paper {paper_error:g} %")
        right.axhspan(paper_error, paper_error + tolerance, color="g", alpha=0.15,
                      label=f"PASS (<= {paper_error + tolerance:g} %)")
    for epoch in lr_drops(evals):
        for axis in (left, right):
            axis.axvline(epoch, color="grey", linestyle=":", linewidth=1)
    right.grid(alpha=0.3)
    left.legend()
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _label_log_axis(axis) -> None:
    """Plain numbers on a log axis: the decades, and of the ticks between them only those
    starting with 2, 3 or 5, so that labels never crowd below a decade (0.06-0.09, 0.7-0.9)."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    def minor(value, _):
        leading = f"{value:e}"[0]
        return f"{value:g}" if leading in "235" else ""
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(FuncFormatter(minor))


def lr_drops(evals: list[dict]) -> list[float]:
    """Epochs of the first evaluation after each fall of the learning rate."""
    return [b["epoch"] for a, b in zip(evals, evals[1:]) if b["lr"] < a["lr"]]
