"""matplotlib for the commands that draw figures (gen-prototxt --draw, replicate's report and
curves, visualize): files only, imported on first use, so nothing else pays for it."""
from pathlib import Path

from runtime.files import atomic_writer


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, **options) -> None:
    """``fig`` written atomically to ``path`` (an interrupted write leaves the file before it),
    in the format its suffix names, then closed; ``options`` go to ``savefig``."""
    try:
        with atomic_writer(path) as handle:
            fig.savefig(handle, format=Path(path).suffix[1:].lower() or "png", **options)
    finally:
        pyplot().close(fig)
