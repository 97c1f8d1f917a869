"""The prototxt generator: the paper's networks as Caffe definitions (``gen-prototxt``)."""
from runtime.console import launch


def gen_prototxt_command() -> None:
    """The ``gen-prototxt`` console script."""
    launch("generator.cli", "gen-prototxt")
