"""Caffe's HDF5 data files (src/caffe/util/hdf5.cpp, hdf5_data_layer.cpp,
hdf5_output_layer.cpp): the one module that reads and writes them.

Reading (HDF5Data): ``source`` is a text file of .h5 paths (whitespace-separated); each file
holds one dataset per top, named like the top, float or integer (read as float32), with the
same first dimension. Rows are served in order, file after file, wrapping around; with
``shuffle`` the file order is shuffled at the start and at each wrap, and each file's rows
when it is loaded and at each wrap of its rows (Caffe draws these with std::random_shuffle;
here a generator of the layer's own, saved with the feed's state).

Writing (HDF5Output): datasets ``data`` and ``label``, float32, each of its bottom's legacy
4-d shape (num, channels, height, width; missing axes are 1).

h5py is optional: ``pip install -e ".[hdf5]"`` (or ``pip install h5py``).
"""
from __future__ import annotations

import numpy as np
import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError, printable

INSTALL = 'pip install -e ".[hdf5]" (or pip install h5py)'
# what h5py raises for a damaged file: HDF5's errors map onto these (a bad B-tree signature is
# a RuntimeError, an address past the file's end an OverflowError)
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError)
DATA, LABEL = "data", "label"       # HDF5_DATA_DATASET_NAME, HDF5_DATA_LABEL_NAME


def h5py(layer: str):
    """The h5py module, or a one-line error saying how to install it."""
    try:
        import h5py as module
    except ImportError:
        raise AllconvError(f"{layer} needs h5py, which is not installed: {INSTALL}") from None
    return module


def read_source(source: str) -> list[str]:
    """The .h5 file names listed in ``source``."""
    try:
        with open(source, errors="surrogateescape") as f:
            names = f.read().split()
    except (OSError, ValueError) as err:        # ValueError: a NUL in the name
        raise AllconvError(f"{source!r}: cannot open the HDF5 file list: "
                           f"{getattr(err, 'strerror', None) or err}") from None
    if not names:
        raise AllconvError(f"{source}: must list at least 1 HDF5 file")
    return names


def load(path: str, names, listed_in: str) -> list[np.ndarray]:
    """The datasets ``names`` of ``path`` (a file ``listed_in`` names) as float32 arrays
    (hdf5_load_nd_dataset)."""
    module = h5py("HDF5Data")
    where = f"{printable(path)} (listed in {listed_in})"
    try:
        with module.File(path, "r") as f:
            arrays = []
            for name in names:
                dataset = member(f, name, "Dataset", where)
                if dataset.dtype.kind not in "fiu":
                    raise AllconvError(f"{where}: dataset {name!r} has the unsupported type "
                                       f"{dataset.dtype} (float or integer only)")
                if dataset.ndim < 1:
                    raise AllconvError(f"{where}: dataset {name!r} needs at least 1 axis")
                arrays.append(np.asarray(dataset[()], dtype=np.float32))
    except READ_ERRORS as err:
        raise AllconvError(f"{where}: cannot read as HDF5: {printable(str(err))}") from None
    rows = {len(a) for a in arrays}
    if len(rows) != 1:
        raise AllconvError(f"{where}: the datasets {list(names)} have different numbers of "
                           f"rows {[len(a) for a in arrays]}")
    if rows == {0}:
        raise AllconvError(f"{where}: the datasets {list(names)} hold no rows")
    return arrays


def member(node, name: str, kind: str, path, what: str = ""):
    """``node[name]``, an h5py ``kind`` ("Group" or "Dataset"), else one line naming the file
    and the member: missing (with what ``node`` holds), a link to nothing, or of the other
    kind (``what``: the files' kind, such as "Caffe HDF5 weights", said beside it)."""
    module = h5py("HDF5 files")
    full = f"{node.name.rstrip('/')}/{name}".lstrip("/")
    link = node.get(name, getlink=True)
    if link is None:
        raise AllconvError(f"{path}: no {kind.lower()} {full!r} (found: "
                           f"{', '.join(sorted(node)) or 'none'})")
    try:
        child = node[name]
    except KeyError as err:
        if isinstance(link, module.HardLink):     # its object's header is damaged
            raise AllconvError(f"{path}: {full!r} cannot be read: "
                               f"{err.args[0] if err.args else err}") from None
        where = f" in {link.filename}" if isinstance(link, module.ExternalLink) else ""
        raise AllconvError(f"{path}: {full!r} is a link to {link.path}{where}, which does not "
                           "exist") from None
    if not isinstance(child, getattr(module, kind)):
        other = "group" if kind == "Dataset" else "dataset"
        raise AllconvError(f"{path}: {full!r} is a {other}, not a {kind.lower()}"
                           + (f" ({what} hold a {kind.lower()} there)" if what else ""))
    return child


class HDF5Feed:
    """HDF5Data's rows: ``feed(batch_size)`` -> one float32 tensor per top, (batch_size,
    *dataset shape[1:]); ``sample_shapes`` from the first file; resumable."""

    def __init__(self, source: str, tops, shuffle: bool = False,
                 generator: torch.Generator | None = None):
        self.files, self.tops, self.shuffle = read_source(source), tuple(tops), shuffle
        self.source = source
        self.generator = generator if generator is not None else torch.Generator()
        self.file_order = self._order(len(self.files))
        self.file_index = 0
        self._load()
        self.sample_shapes = [a.shape[1:] for a in self.arrays]

    def _order(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def _load(self, row_order=None) -> None:
        path = self.files[int(self.file_order[self.file_index])]
        self.arrays = load(path, self.tops, self.source)
        if hasattr(self, "sample_shapes"):
            for top, a, shape in zip(self.tops, self.arrays, self.sample_shapes):
                if a.shape[1:] != shape:
                    raise AllconvError(f"{path}: dataset {top!r} has rows of shape "
                                       f"{a.shape[1:]}, the first file's {shape}")
        self.row_order = self._order(len(self.arrays[0])) if row_order is None else row_order
        self.row = 0

    def _next(self) -> None:
        """Caffe's HDF5DataLayer::Next."""
        self.row += 1
        if self.row < len(self.arrays[0]):
            return
        if len(self.files) > 1:
            self.file_index += 1
            if self.file_index == len(self.files):
                self.file_index = 0
                if self.shuffle:
                    self.file_order = self._order(len(self.files))
            self._load()
        self.row = 0
        if self.shuffle:
            self.row_order = self._order(len(self.arrays[0]))

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        rows = [[] for _ in self.tops]
        for _ in range(batch_size):
            index = int(self.row_order[self.row])
            for out, array in zip(rows, self.arrays):
                out.append(array[index])
            self._next()
        return tuple(torch.from_numpy(np.stack(r)) for r in rows)

    def state_dict(self) -> dict:
        return {"file_order": self.file_order.clone(), "file_index": self.file_index,
                "row_order": self.row_order.clone(), "row": self.row,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.file_order = state["file_order"].clone()
        self.file_index = int(state["file_index"])
        self._load(state["row_order"].clone())
        self.row = int(state["row"])
        self.generator.set_state(state["generator"])


def create(path: str) -> None:
    """An empty HDF5 file at ``path`` (truncated), as HDF5OutputLayer's setup makes it."""
    module = h5py("HDF5Output")
    try:
        module.File(path, "w").close()
    except OSError as err:
        raise AllconvError(f"{path}: cannot create the HDF5 output file: {err}") from None


def write(path: str, data: np.ndarray, label: np.ndarray) -> None:
    """Datasets ``data`` and ``label`` into the file `create` made; a file that already holds
    them is refused (Caffe's H5LTmake_dataset fails there too: one batch per file)."""
    module = h5py("HDF5Output")
    if len(data) != len(label):
        raise AllconvError(f"data and label must have the same batch size ({len(data)} vs "
                           f"{len(label)})")
    data = np.ascontiguousarray(data, np.float32).reshape(legacy_shape(data.shape, "data"))
    label = np.ascontiguousarray(label, np.float32).reshape(legacy_shape(label.shape, "label"))
    try:
        with module.File(path, "a") as f:
            if DATA in f or LABEL in f:
                raise AllconvError(f"{path} already holds a batch: Caffe's HDF5Output writes "
                                   "one forward pass per file")
            f.create_dataset(DATA, data=data)
            f.create_dataset(LABEL, data=label)
    except OSError as err:
        raise AllconvError(f"{path}: cannot write the HDF5 output: {err}") from None

