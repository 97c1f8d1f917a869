"""Make the repository root importable when pytest runs from a checkout, and the fixture
nets' Python layers (tests/fixtures/python_layers, which Caffe imported from its PYTHONPATH:
the fixture modules build those nets as they are collected); shared fixtures."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parent.parent)
PYTHON_LAYERS = str(Path(__file__).resolve().parent / "fixtures" / "python_layers")
for folder in (ROOT, PYTHON_LAYERS):
    if folder not in sys.path:
        sys.path.insert(0, folder)


@pytest.fixture
def default_stop_signals():
    """Ctrl-C, SIGTERM and SIGHUP as a terminal's foreground job has them, while a test runs
    (and in the processes it starts): pytest itself may run under nohup, or as a script's
    background job, with some of them ignored, which the commands rightly keep ignoring."""
    import signal
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
              signal.SIGHUP: signal.SIG_DFL}
    kept = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.fixture
def no_tf32():
    """Full fp32 in CUDA matmuls and cuDNN convolutions while a test runs."""
    # The fp32_precision API only: mixing it with the legacy allow_tf32 flags (which
    # harness.train.set_precision does not use) makes torch refuse to read either.
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    yield
    conv.fp32_precision, matmul.fp32_precision = saved


def pytest_terminal_summary(terminalreporter):
    """Print the largest runtime-vs-Caffe error per category (tests/test_caffe_fixtures.py)."""
    module = sys.modules.get("test_caffe_fixtures")
    lines = module.summary_lines() if module is not None else []
    if lines:
        terminalreporter.write_sep("-", "runtime vs real Caffe")
        for line in lines:
            terminalreporter.write_line(line)
