"""The curves PNG of a run's log: training and test loss, test error, the lr drops and the paper's
error. (The test metrics themselves are harness/evaluation.py's.)"""
from __future__ import annotations

from pathlib import Path

from runtime.plotting import pyplot, save_figure


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
        _label_epochs(axis.xaxis)
    if paper_error is not None:
        right.axhline(paper_error, color="k", linestyle="--", linewidth=1,
                      label=f"paper {paper_error:g} %")
        right.axhspan(paper_error, paper_error + tolerance, color="g", alpha=0.15,
                      label=f"PASS (<= {paper_error + tolerance:g} %)")
    for k, epoch in enumerate(lr_drops(evals)):
        for axis in (left, right):
            axis.axvline(epoch, color="grey", linestyle=":", linewidth=1,
                         label="lr x0.1" if k == 0 else None)
    right.grid(alpha=0.3)
    left.legend()
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _label_log_axis(axis) -> None:
    """Plain numbers on a log axis: the decades, and of the ticks between them only those
    starting with 2, 3 or 5, so that labels never crowd below a decade (0.06-0.09, 0.7-0.9)."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    def minor(value, _):
        leading = f"{value:e}"[0]
        return f"{value:g}" if leading in "235" else ""
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _label_epochs(axis) -> None:
    """At most 6 epoch ticks, plain numbers: a SMOKE run's 0.0002-0.0004 do not run into
    each other."""
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator
    axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FormatStrFormatter("%g"))


def lr_drops(evals: list[dict]) -> list[float]:
    """Epochs of the first evaluation after each fall of the learning rate."""
    return [b["epoch"] for a, b in zip(evals, evals[1:]) if b["lr"] < a["lr"]]
