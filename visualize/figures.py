"""The three figures as PNG: one unit's reconstructions (Figures 4-6), filters (Figure 2),
top patches (Figure 3). Every reconstruction is shown with one stated display scaling."""
from __future__ import annotations

import textwrap

import numpy as np

from runtime.plotting import pyplot, save_figure

SCALING = "reconstructions: 0.5 + 0.5·r / max|r| per panel (0 is grey)"


def shown(signal: np.ndarray, colours: str = "RGB") -> np.ndarray:
    """A reconstruction (C, H, W) as an image in [0, 1], zero at 0.5: RGB for 3 channels (in
    the net's order ``colours``, RGB or BGR), grey for 1, and for any other count its channels
    side by side in grey, a grey column apart."""
    peak = float(np.abs(signal).max())
    image = 0.5 + 0.5 * signal / (peak if peak > 0 else 1.0)
    if image.shape[0] == 3:
        return in_rgb(image, colours)
    gap = np.full((image.shape[1], 1), 0.5)
    return np.concatenate([part for channel in image for part in (channel, gap)][:-1], axis=1)


def in_rgb(image: np.ndarray, colours: str) -> np.ndarray:
    """A 3-channel (C, H, W) image in channel order ``colours`` as (H, W, C) RGB."""
    return np.moveaxis(image[::-1] if colours == "BGR" else image, 0, -1)


def _panel(ax, image, title=None, fontsize=8):
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest",
              cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def blank(signal: np.ndarray) -> bool:
    """A reconstruction that is 0 everywhere: its panel is uniformly grey."""
    return not np.any(signal)


def unit_figure(path, picture, rows: list[tuple[str, dict]], title: str,
                colours: str = "RGB") -> None:
    """The input, then one reconstruction per method; one row per net (``rows``: label and
    ``{method: (C, H, W)}``, in channel order ``colours``). A reconstruction that is 0
    everywhere says so on its panel."""
    plt = pyplot()
    methods = list(rows[0][1])
    fig, axes = plt.subplots(len(rows), len(methods) + 1, squeeze=False,
                             figsize=(2.0 * (len(methods) + 1), 1.9 * len(rows) + 0.9
                                      + 0.15 * title.count("\n")))
    for r, (label, signals) in enumerate(rows):
        _panel(axes[r, 0], picture.shown, picture.caption if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=8)
        for c, method in enumerate(methods, 1):
            _panel(axes[r, c], shown(signals[method], colours), method if r == 0 else None)
            if blank(signals[method]):
                axes[r, c].text(0.5, 0.5, "0 everywhere", ha="center", va="center",
                                fontsize=8, transform=axes[r, c].transAxes)
    fig.suptitle(f"{title}\n{SCALING}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def grid_figure(path, cells: list[tuple[str, list[np.ndarray]]], title: str,
                columns: int) -> None:
    """Cells of equal-size panels in a grid; each cell is a label over its images (side by
    side), left-aligned over the cell so that it may run over the cell's later panels but
    not into the next cell. Used for filters (one image per cell) and top patches (patch,
    reconstruction). The title gets a fixed band of its own, whatever the number of rows."""
    plt = pyplot()
    per_cell = max(len(images) for _, images in cells)
    rows = -(-len(cells) // columns)
    panel = 0.9                                                        # inches
    width = panel * columns * per_cell
    title = "\n".join(textwrap.fill(line, max(60, int(13 * width)))   # ~13 characters an inch
                      for line in title.split("\n"))
    title_band = 0.25 + 0.16 * (title.count("\n") + 1)
    height = (panel + 0.2) * rows + title_band
    fig, axes = plt.subplots(rows, columns * per_cell, squeeze=False, figsize=(width, height),
                             gridspec_kw=dict(left=0.01, right=0.99, bottom=0.01,
                                              top=1 - title_band / height, wspace=0.08,
                                              hspace=0.3))
    for ax in axes.flat:
        ax.axis("off")
    for i, (label, images) in enumerate(cells):
        row, col = divmod(i, columns)
        for j, image in enumerate(images):
            ax = axes[row, col * per_cell + j]
            ax.axis("on")
            _panel(ax, image)
        axes[row, col * per_cell].set_title(label, fontsize=6, loc="left")
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
