"""The replication harness: specs, training runs, run folders, reports, replicate, export-onnx."""
from runtime.console import launch


def replicate_command() -> None:
    """The ``replicate`` console script."""
    launch("harness.cli", "replicate")


def export_onnx_command() -> None:
    """The ``export-onnx`` console script."""
    launch("harness.export_onnx", "export-onnx")
