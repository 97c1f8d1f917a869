"""Snapshot files: ``<prefix>_iter_<N>`` .caffemodel, .rngstate and .solverstate (or Caffe's
HDF5 pair, .caffemodel.h5 and .solverstate.h5), written as one set (`written_together`: none
is in place before all are whole), and the restore of weights, momentum history and schedule
position from them.

Caffe's two files (weights; ``SolverState`` with the history, ``iter``, ``current_step`` and
``learned_net``) plus ``.rngstate``: a dict of random state, in whatever form the caller keeps
(`runtime.solver.Solver` and the harness's `Run` each have theirs), saved with ``torch.save``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import re
import struct
import textwrap
import zipfile
from pathlib import Path

import torch

from runtime import hdf5_snapshot
from runtime.caffemodel import read_binary, write_binary
from runtime.errors import AllconvError
from runtime.files import ZIP_ERRORS, ZIP_MAGIC, atomic_write_bytes, written_together
from runtime.proto import pb

__all__ = ["filename", "write", "restore", "sibling", "read_rng_state", "torch_rng_state",
           "set_torch_rng_state"]

log = logging.getLogger("allconv.snapshot")


BINARY_FILES = (".caffemodel", ".solverstate", ".rngstate")     # one binary-format snapshot's


def filename(prefix, iter: int, extension: str) -> str:
    """Caffe's SnapshotFilename: ``<prefix>_iter_<iter><extension>``."""
    return f"{prefix}_iter_{iter}{extension}"


_ITERATION = re.compile(r"_iter_(\d+)\.[\w.]+$")


def iteration(path) -> int | None:
    """The ``<iter>`` of a ``filename`` (None for a name of another form)."""
    match = _ITERATION.search(Path(path).name)
    return None if match is None else int(match.group(1))


def write(prefix, net, optimizer, schedule, rng_state: dict,
          hdf5: bool = False, diff: bool = False) -> tuple[str, str]:
    """Write ``net``'s weights, ``rng_state`` and ``optimizer``'s history at ``schedule``'s
    iteration and multistep position; returns the .caffemodel and .solverstate paths (with
    ``hdf5``, Caffe's .caffemodel.h5 and .solverstate.h5; with ``diff``, the weights' diffs
    too: the solver's snapshot_diff)."""
    iter = schedule.last_epoch
    end, kind = (".h5", "HDF5") if hdf5 else ("", "binary proto")
    model = filename(prefix, iter, ".caffemodel" + end)
    state = filename(prefix, iter, ".solverstate" + end)
    log.info("Snapshotting to %s file %s", kind, model)
    save = net.save_hdf5 if hdf5 else net.save
    with written_together():        # the three files are one set, or the old set stays
        if diff:        # a pack's member (the harness) writes none
            save(model, diff=True)
        else:
            save(model)
        buffer = io.BytesIO()
        torch.save(rng_state, buffer)
        atomic_write_bytes(filename(prefix, iter, ".rngstate"), buffer.getvalue())
        log.info("Snapshotting solver state to %s file %s", kind, state)
        message = optimizer.solver_state(iter, schedule.current_step, model)
        (hdf5_snapshot.write_state if hdf5 else write_binary)(state, message)
    return model, state


def restore(state_path, net, optimizer, schedule, weights=None, require_all=False) -> None:
    """Load a .solverstate: the history into ``optimizer`` (checked first, so a mismatch
    changes nothing), the weights into ``net`` (from ``weights``, else from the state's
    ``learned_net`` when it names one; ``require_all``: every learnable layer must find its
    own there), ``iter`` and ``current_step`` into ``schedule``."""
    state_path = os.fspath(state_path)
    state = read_state(state_path)
    if state.iter < 0 or state.current_step < 0:      # no solver ever writes one
        raise AllconvError(f"{state_path}: iter {state.iter} and current_step "
                           f"{state.current_step} must not be negative")
    optimizer.load_solver_state(state, state_path)
    if weights is None and state.HasField("learned_net"):
        weights = _find_learned_net(state.learned_net, state_path)
    if weights is not None:         # unlogged, as Caffe's Restore
        net.copy_from(weights, require_all=require_all)
    schedule.load_state_dict({"last_epoch": state.iter, "current_step": state.current_step})


def read_state(state_path) -> pb.SolverState:
    """A .solverstate, binary or HDF5, as a ``SolverState`` message."""
    state_path = os.fspath(state_path)
    return (hdf5_snapshot.read_state(state_path) if hdf5_snapshot.is_hdf5(state_path)
            else read_binary(state_path, pb.SolverState))


def _find_learned_net(learned_net: str, state_path: str) -> str:
    """``learned_net`` as written, else relative to the .solverstate's folder, else its file
    name in that folder (a snapshot folder that was moved), said in a warning: Caffe opens it
    as written only, and fails. A name that is not UTF-8 (protobuf gives its bytes) is a path
    all the same."""
    learned_net = os.fsdecode(learned_net)
    if not learned_net:         # Caffe opens "" and fails: "File not found"
        raise AllconvError(f"{state_path}: learned_net is set but empty")
    base = os.path.dirname(state_path)
    candidates = [learned_net]
    if not os.path.isabs(learned_net):
        candidates.append(os.path.join(base, learned_net))
    candidates.append(os.path.join(base, os.path.basename(learned_net)))
    for candidate in candidates:
        if os.path.isfile(candidate):
            if candidate != learned_net:
                log.warning("learned_net %s not found as written (Caffe stops here); restoring "
                            "the weights from %s, beside the solver state", learned_net,
                            candidate)
            return candidate
    if os.path.exists(learned_net):
        raise AllconvError(f"{state_path}: learned_net {learned_net!r} is not a file")
    raise AllconvError(
        f"{state_path}: learned_net {learned_net!r} not found (also looked in {base or '.'})")


def sibling(state_path, extension: str) -> str:
    """The snapshot file beside ``state_path`` with ``extension`` in place of .solverstate."""
    state_path = os.fspath(state_path)
    for end in (".solverstate", ".solverstate.h5"):
        if state_path.endswith(end):
            return state_path[:-len(end)] + extension
    return state_path + extension


# what torch.load raises on a damaged or foreign file (a bad zip, pickle or record)
UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, LookupError,
              TypeError, AttributeError, OverflowError, struct.error)
SOLVER_STATE = "allconv-rngstate-2"          # Solver's: its nets' streams, feeds, torch's
OLD_SOLVER_STATE = "allconv-rngstate-1"      # the same, its generators named by module path
LOOP_STATE = "allconv-harness-state-1"      # replicate's: one run's feed, dropout, progress


def _check_zip(path: str) -> None:
    """Refuse a damaged .rngstate, which torch.load may read as another state: a zip (as
    torch.save writes it) that Python's zipfile cannot read, or whose member fails its CRC-32.
    A file that is no zip is left to torch.load's own refusal."""
    with open(path, "rb") as handle:
        if handle.read(4) != ZIP_MAGIC:
            return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except ZIP_ERRORS as err:
        raise AllconvError(f"{path}: not an rng state a run wrote (a damaged zip: "
                           f"{str(err).rstrip('.')}; a truncated file?)") from None
    if damaged is not None:
        raise AllconvError(f"{path}: not an rng state a run wrote (its {damaged!r} fails its "
                           "CRC-32 check: a damaged file)")


def read_rng_state(path: str) -> dict:
    """The dict a `write` saved as .rngstate (tensors on the CPU)."""
    if os.path.isdir(path):
        raise AllconvError(f"{path}: is a directory, not an rng state file")
    if not os.path.isfile(path):
        raise AllconvError(f"{path}: no such rng state file (one is written beside each "
                           "snapshot)")
    if os.path.getsize(path) == 0:
        raise AllconvError(f"{path}: an empty rng state file (its write was cut short?)")
    _check_zip(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as e:
        # torch's weights-only refusal is a page of advice; its line after "error:" says why
        said = " ".join(str(e).split("WeightsUnpickler error:")[-1].split("Check the")[0]
                        .split()) or type(e).__name__
        said = textwrap.shorten(said.split(". ")[0].rstrip("."), 120, placeholder=" ...")
        raise AllconvError(f"{path}: not an rng state a run wrote ({said}; a truncated "
                           "or foreign file?)") from None
    except OSError as e:        # a zip whose directory is cut off: a seek before its start
        raise AllconvError(f"{path}: not an rng state a run wrote ({e.strerror or e} while "
                           "reading it: a truncated file?)") from None
    if not isinstance(state, dict):
        raise AllconvError(f"{path}: holds a {type(state).__name__}, not an rng state")
    return state


@contextlib.contextmanager
def restoring_state(path):
    """Report a state file whose content is not what its reader expects (a field missing, of
    another type or shape) in one line naming the file."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, RuntimeError) as e:
        what = f"no field {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise AllconvError(f"{path}: not a state this run can restore ({what})") from None


def torch_rng_state() -> dict:
    """torch's CPU generator and, once CUDA is in use, every CUDA device's."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return {"torch_cpu": torch.get_rng_state(), "torch_cuda": cuda}


def set_torch_rng_state(state: dict) -> None:
    """Restore what `torch_rng_state` returned (CUDA for the devices this machine has)."""
    if state.get("torch_cpu") is not None:
        torch.set_rng_state(state["torch_cpu"])
    cuda = state.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
