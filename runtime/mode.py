"""pycaffe's process-wide settings: ``set_mode_cpu``, ``set_mode_gpu`` and ``set_device``
choose where the Nets and Solvers made after them run; ``set_random_seed`` makes the seeds of
Nets made without one a fixed sequence, as Caffe's seeded global generator makes their
fillers. Until one is called, a Net is made on the CPU with a random seed, and a Solver runs
where its ``solver_mode`` says."""
from __future__ import annotations

import numbers

import torch

from runtime.errors import AllconvError
from runtime.limits import INT_MAX, UINT32_MAX

_chosen: dict = {"mode": None, "device_id": 0, "seeds": None}


def set_mode_cpu() -> None:
    _chosen["mode"] = "cpu"


def set_mode_gpu() -> None:
    """Run on the GPU that ``set_device`` names (0 by default); refused without CUDA."""
    if not torch.cuda.is_available():
        raise AllconvError("set_mode_gpu: this machine has no CUDA device")
    _chosen["mode"] = "cuda"


def set_device(device_id: int) -> None:
    """The GPU that GPU mode runs on."""
    _chosen["device_id"] = _whole(device_id, "set_device takes a GPU's number", INT_MAX)


def set_random_seed(seed: int) -> None:
    """Caffe's seed: an unsigned int."""
    _chosen["seeds"] = torch.Generator().manual_seed(
        _whole(seed, "set_random_seed takes a seed", UINT32_MAX))


def _whole(value, what: str, most: int) -> int:
    """``value``, a whole number from 0 to ``most`` (a Python or numpy integer, not a bool), or
    one line: ``what``, and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            not 0 <= value <= most:
        raise AllconvError(f"{what}, a whole number from 0 to {most}, not {value!r}")
    return int(value)


def chosen_device() -> str | None:
    """The device set_mode_* chose, or None where neither was called."""
    if _chosen["mode"] == "cuda":
        return f"cuda:{_chosen['device_id']}"
    return _chosen["mode"]


def next_seed() -> int | None:
    """The next seed of the sequence set_random_seed began, or None where it was not called."""
    if _chosen["seeds"] is None:
        return None
    return int(torch.randint(2**62, (), generator=_chosen["seeds"]))
