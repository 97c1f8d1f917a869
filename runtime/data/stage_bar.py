"""A progress bar over named stages, for work of a few long steps (the whitening's)."""
from __future__ import annotations

import sys

from tqdm import tqdm


class StageBar:
    """A tqdm bar over named stages, moved by calling it with the stage that starts; on a
    terminal only (a log gets the lines written at the end, or the one-line error)."""

    def __init__(self, stages: tuple[str, ...]):
        self.stages = stages
        self.bar = tqdm(total=len(stages), unit="stage", file=sys.stderr,
                        disable=not sys.stderr.isatty(),
                        bar_format="{desc:<32} {n_fmt}/{total_fmt} stages [{elapsed}]")

    def __call__(self, stage: str) -> None:
        self.bar.set_description_str(stage, refresh=False)
        self.bar.update(self.stages.index(stage) - self.bar.n)
        self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, error, *rest) -> None:
        """Done: the full bar stays. An error: the bar is cleared, so the one-line error that
        follows stands alone."""
        if error is None:
            self.bar.update(self.bar.total - self.bar.n)
        else:
            self.bar.leave = False
        self.bar.close()
