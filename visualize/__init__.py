"""`visualize`: the paper's Section 3.4 figures (backprop, deconvnet, guided backpropagation)."""
from runtime.console import launch


def visualize_command() -> None:
    """The ``visualize`` console script."""
    launch("visualize.cli", "visualize")
