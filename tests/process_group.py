"""Commands that start process groups (torchrun, --rows-in-parallel), run by the tests."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest


def run_group(command: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with its output captured, in a session of its own: on a timeout the
    whole group is killed, not the launcher alone (its workers were left training, orphans
    holding the cores), and the test fails with the output's tail."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"{' '.join(command[:6])} ran past {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
