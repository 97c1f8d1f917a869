"""Caffe's HDF5 snapshot files (``snapshot_format: HDF5``): ``.caffemodel.h5`` and
``.solverstate.h5``.

Weights (Net::ToHDF5): a group ``data`` holding one group per layer (every layer, in net
order), and in it one float32 dataset per learnable blob the layer owns, named by its index
(``data/conv1/0``); a blob shared from an earlier layer is left out. Solver state
(SnapshotSolverStateToHDF5): int32 datasets ``iter`` and ``current_step`` of shape (1,),
the string ``learned_net`` and a group ``history`` of datasets ``0`` … ``N-1``. h5py is
optional (``pip install -e ".[hdf5]"``)."""
from __future__ import annotations

import io
import os

import numpy as np

from runtime.caffemodel import array_to_blob, blob_to_array
from runtime.data.hdf5 import READ_ERRORS, h5py, member
from runtime.errors import AllconvError
from runtime.files import HDF5_MAGIC, atomic_write_bytes, read_bytes
from runtime.proto import pb

SUFFIX = ".h5"
WHAT = "snapshot_format: HDF5"


def is_hdf5(path) -> bool:
    """Whether a snapshot file is HDF5: the reference build tells the formats apart by the
    ``.h5`` ending (weights and solver state; BVLC master reads weights by their bytes)."""
    return os.fspath(path).endswith(SUFFIX)


def _hdf5_bytes(data: bytes) -> bool:
    """H5Fis_hdf5's test: the signature at byte 0, 512, 1024, 2048, ..."""
    offset = 0
    while offset + len(HDF5_MAGIC) <= len(data):
        if data[offset:offset + len(HDF5_MAGIC)] == HDF5_MAGIC:
            return True
        offset = max(512, 2 * offset)
    return False


def _write(path, fill) -> None:
    module = h5py(WHAT)
    buffer = io.BytesIO()
    with module.File(buffer, "w") as f:
        fill(f)
    atomic_write_bytes(path, buffer.getvalue())


def _read(path, take):
    module = h5py(WHAT)
    data = read_bytes(path, "Caffe HDF5 snapshot")
    if not _hdf5_bytes(data):
        raise AllconvError(f"{path}: not an HDF5 file" + (
            " (a binary snapshot? Caffe tells the formats apart by the name: drop the .h5 "
            "ending)" if is_hdf5(path) else ""))
    try:
        with module.File(io.BytesIO(data), "r") as f:
            return take(f)
    except READ_ERRORS as err:
        raise AllconvError(f"{path}: cannot read it as a Caffe HDF5 snapshot: {err}") from None


def check_names(names) -> None:
    """Refuse layer names that are no plain HDF5 group name, as Caffe's ToHDF5 makes one group
    per layer: one with '/' (nested groups, or none: Caffe's H5Gcreate fails on most, "Error
    saving weights"), '.', an empty one, one given twice (those it always fails on)."""
    seen = set()
    for name in names:
        why = ("it holds '/'" if "/" in name else "it is empty" if not name else
               "it is '.'" if name == "." else "two layers have it" if name in seen else None)
        if why:
            raise AllconvError(f"layer {name!r}: no HDF5 snapshot holds it as a layer's group "
                               f"({why}; Caffe's ToHDF5 fails on such names, \"Error saving "
                               "weights\", or nests groups); rename the layer, or use "
                               "snapshot_format: BINARYPROTO")
        seen.add(name)


def write_weights(path, layers: list[tuple[str, list]],
                  diffs: list[list] | None = None) -> None:
    """``layers``: (name, [the blobs it owns as arrays, None for a shared one]) in net order
    (names `check_names` takes); ``diffs`` (the solver's snapshot_diff): every blob's diff, one
    list per layer, shared blobs included, in a group "diff" beside "data" (Caffe's ToHDF5
    with write_diff)."""
    check_names(name for name, _ in layers)

    def fill(f):
        for top, entries in (("data", layers),
                             ("diff", [(name, d) for (name, _), d in zip(layers, diffs)]
                              if diffs is not None else None)):
            if entries is None:
                continue
            group_of = f.create_group(top)
            for name, blobs in entries:
                group = group_of.require_group(name)
                for i, blob in enumerate(blobs):
                    if blob is not None:
                        group.create_dataset(str(i), data=np.asarray(blob, np.float32))
    _write(path, fill)


def read_weights(path, layers=None) -> list[tuple[str, list | None]]:
    """(layer name, [blob arrays, None where the file has no dataset of that index]), as
    CopyTrainedLayersFromHDF5 reads them; an entry named like none of ``layers`` (the net's
    layer names, when given) is not read, whatever it is (Caffe ignores it): None stands
    for its blobs."""
    what = "Caffe HDF5 weights"

    def take(f):
        found = []
        data = member(f, "data", "Group", path, what)
        for name in data:
            if isinstance(name, bytes):     # h5py's name that is not UTF-8: no layer's
                name = name.decode("utf-8", "backslashreplace")
            if layers is not None and name not in layers:
                found.append((name, None))
                continue
            group = member(data, name, "Group", path, what)
            indices = [int(k) for k in group if k.isdigit()]
            blobs = [None] * (max(indices) + 1 if indices else 0)
            for i in indices:
                blobs[i] = np.asarray(member(group, str(i), "Dataset", path, what), np.float32)
            found.append((name, blobs))
        return found
    return _read(path, take)


def _write_c_string(f, name: str, text: str) -> None:
    """A scalar NUL-terminated string, as H5LTmake_dataset_string writes it: Caffe reads it
    into a buffer of the type's size and takes it as a C string, so the NUL must be inside."""
    value, module = text.encode() + b"\0", h5py(WHAT)
    string_type = module.h5t.C_S1.copy()
    string_type.set_size(len(value))
    string_type.set_strpad(module.h5t.STR_NULLTERM)
    scalar = module.h5s.create(module.h5s.SCALAR)
    dataset = module.h5d.create(f.id, name.encode(), string_type, scalar)
    dataset.write(module.h5s.ALL, module.h5s.ALL, np.array(value, f"S{len(value)}"))


def write_state(path, state: "pb.SolverState") -> None:
    """``state`` (as `CaffeSGD.solver_state` makes it) in Caffe's HDF5 layout."""
    def fill(f):
        f.create_dataset("iter", data=np.array([state.iter], np.int32))
        _write_c_string(f, "learned_net", state.learned_net)
        f.create_dataset("current_step", data=np.array([state.current_step], np.int32))
        history = f.create_group("history")
        for i, blob in enumerate(state.history):
            history.create_dataset(str(i), data=blob_to_array(blob))
    _write(path, fill)


def read_state(path) -> "pb.SolverState":
    """A .solverstate.h5 as a SolverState message (its history as blobs); ``iter`` and
    ``current_step`` of shape (1,) or scalars, as Caffe's H5LTread_dataset_int reads both."""
    what = "Caffe HDF5 solver states"

    def integer(f, name: str) -> int:
        value = np.asarray(member(f, name, "Dataset", path, what)).reshape(-1)
        if value.size != 1:
            raise AllconvError(f"{path}: '{name}' holds {value.size} values, where Caffe "
                               "reads one integer")
        return int(value[0])

    def take(f):
        state = pb.SolverState(iter=integer(f, "iter"), current_step=integer(f, "current_step"))
        if "learned_net" in f:
            value = member(f, "learned_net", "Dataset", path, what)[()]
            state.learned_net = value.decode() if isinstance(value, bytes) else str(value)
        history = member(f, "history", "Group", path, what)
        for i in range(len(history)):
            blob = member(history, str(i), "Dataset", path, what)
            state.history.append(array_to_blob(np.asarray(blob, np.float32)))
        return state
    return _read(path, take)
