"""LMDB environments as Caffe's Data layer reads them, and Datum records written to one.

The reader (``LmdbFile``) is read-only, of liblmdb 0.9's file format (64-bit little-endian):
the unnamed database of ``FOLDER/data.mdb``, its values in key order, from the newest
committed transaction. No reader slot is taken in lock.mdb: a writer may reuse the pages
read, so ``check_unchanged`` after each read says so (Caffe's reader keeps its snapshot; here
the run stops in one line). The writer (``write_datum_lmdb``) goes through liblmdb itself, the
``lmdb`` package, as Caffe's convert tools do.

The file: two meta pages (0 and 1, the one with the larger transaction id is current) naming
the page size and the root page of the B+tree; branch pages hold (key, child page) nodes, leaf
pages (key, value) nodes, and a value too large for its leaf lives in overflow pages.
"""
from __future__ import annotations

import mmap
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from runtime.errors import AllconvError
from runtime.files import remove_dead_writers, replace_folder, temporary_prefix

MAGIC, VERSION = 0xBEEFC0DE, 1
PAGE_HEADER = 16                    # page number (8), pad (2), flags (2), lower/upper (2+2)
NODE_HEADER = 8                     # lo, hi, flags, key size: four uint16
P_BRANCH, P_LEAF, P_LEAF2 = 0x01, 0x02, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
MDB_DUPSORT = 0x04
NO_ROOT = 2**64 - 1                 # an empty database's root
MAX_DEPTH = 64                      # far beyond any real tree (2 keys a page: 2**64 records)
_DB = struct.Struct("<IHHQQQQQ")    # pad (page size in the free DB), flags, depth, ..., root
_META = struct.Struct("<II8xQ")     # magic, version, address, map size


class LmdbFile:
    """The values of an LMDB environment's main database, in key order: ``len(db)``,
    ``db[i]`` (bytes) and ``db.key(i)``. A corrupt or unsupported file is an AllconvError
    naming its path and what failed."""

    def __init__(self, folder):
        self.path = Path(folder) / "data.mdb"
        try:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:        # ValueError: an empty file
            raise AllconvError(f"{self.path}: cannot read the LMDB file: "
                               f"{getattr(err, 'strerror', None) or err}") from None
        self.txnid, self.page_size, root, entries = self._current_meta()
        keys, values, self._seen = [], [], set()
        if root != NO_ROOT:
            self._walk(root, keys, values, depth=1)
        if len(values) != entries:
            self._fail(f"its tree holds {len(values)} records, its meta page says {entries}")
        self._keys = keys
        self._values = np.array(values, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> bytes:
        start, size = self._values[i]
        return self._map[start:start + size]

    def key(self, i: int) -> bytes:
        start, size = self._keys[i]
        return self._map[start:start + size]

    def check_unchanged(self) -> None:
        """Refuse to go on once a writer has committed to the file since it was opened: the
        pages read may have been reused for other records."""
        if max(self._meta(page * self.page_size) for page in (0, 1))[0] != self.txnid:
            raise AllconvError(f"{self.path}: the LMDB was written to while it was read (a "
                               "transaction committed); the records read may be others: run "
                               "again once nothing writes to it")

    def _fail(self, what: str):
        raise AllconvError(f"{self.path}: not a readable LMDB file: {what}")

    def _current_meta(self) -> tuple[int, int, int, int]:
        """(transaction id, page size, main database root, entries) of the newer of the two
        meta pages."""
        size = len(self._map)
        if size < PAGE_HEADER + _META.size + 2 * _DB.size + 16:
            self._fail(f"{size} bytes, too short for its meta page")
        magic, version, _ = _META.unpack_from(self._map, PAGE_HEADER)
        if magic != MAGIC:
            if struct.unpack_from("<I", self._map, 12)[0] == MAGIC:
                self._fail("written by a 32-bit liblmdb, which this reader does not read")
            self._fail(f"no LMDB magic number (found {magic:#010x})")
        if version != VERSION:
            self._fail(f"data format version {version}, this reader reads {VERSION}")
        page_size = _DB.unpack_from(self._map, PAGE_HEADER + _META.size)[0]
        if page_size < 512 or page_size & (page_size - 1) or 2 * page_size > size:
            self._fail(f"page size {page_size} for a file of {size} bytes")
        return max(self._meta(page * page_size) for page in (0, 1))

    def _meta(self, offset: int) -> tuple[int, int, int, int]:
        """(transaction id, page size, main root, entries) of the meta page at ``offset``."""
        magic, version, _ = _META.unpack_from(self._map, offset + PAGE_HEADER)
        if magic != MAGIC or version != VERSION:
            self._fail(f"meta page at byte {offset} is damaged")
        free_db = offset + PAGE_HEADER + _META.size
        page_size = _DB.unpack_from(self._map, free_db)[0]
        _, flags, _, _, _, _, entries, root = _DB.unpack_from(self._map, free_db + _DB.size)
        if flags & MDB_DUPSORT:
            self._fail("its main database keeps duplicate keys (MDB_DUPSORT), which Caffe's "
                       "convert tools never write")
        txnid = struct.unpack_from("<Q", self._map, free_db + 2 * _DB.size + 8)[0]
        return txnid, page_size, root, entries

    def _page(self, number: int) -> tuple[int, int, int]:
        """(offset, flags, node count) of page ``number``, checked, and seen only once."""
        offset = number * self.page_size
        if offset + PAGE_HEADER > len(self._map):
            self._fail(f"page {number} lies past the end of the file")
        if number in self._seen:
            self._fail(f"page {number} is reached twice in its tree")
        self._seen.add(number)
        _, _, flags, lower = struct.unpack_from("<QHHH", self._map, offset)   # (liblmdb reads
        if flags & P_LEAF2:                                  # no page's own number either)
            self._fail(f"page {number} is a LEAF2 page of a duplicate-key database")
        if not flags & (P_BRANCH | P_LEAF):
            self._fail(f"page {number} is neither a branch nor a leaf page (flags {flags:#x})")
        if not PAGE_HEADER <= lower <= self.page_size:
            self._fail(f"page {number}'s header is damaged (its node count)")
        return offset, flags, (lower - PAGE_HEADER) >> 1

    def _walk(self, number: int, keys: list, values: list, depth: int) -> None:
        """Append the (offset, size) of the keys and values under page ``number``, in order."""
        if depth > MAX_DEPTH:
            self._fail(f"its tree is deeper than {MAX_DEPTH} levels")
        offset, flags, count = self._page(number)
        end = min(offset + self.page_size, len(self._map))     # a last page may be cut short
        if offset + PAGE_HEADER + 2 * count > end:
            self._fail(f"page {number} is cut short")
        pointers = struct.unpack_from(f"<{count}H", self._map, offset + PAGE_HEADER)
        for pointer in pointers:
            node = offset + pointer
            lo, hi, node_flags, key_size = struct.unpack_from("<4H", self._map, node) \
                if PAGE_HEADER <= pointer and node + NODE_HEADER <= end else (0, 0, 0, end)
            key = node + NODE_HEADER
            if key + key_size > end:
                self._fail(f"page {number} has a node outside it")
            if flags & P_BRANCH:
                self._walk(lo | hi << 16 | node_flags << 32, keys, values, depth + 1)
                continue
            size = lo | hi << 16
            data = key + key_size
            if node_flags & (F_SUBDATA | F_DUPDATA):
                self._fail(f"page {number} holds a sub-database or duplicate values")
            if node_flags & F_BIGDATA:
                if data + 8 > end:
                    self._fail(f"page {number} has a node outside it")
                data = self._overflow(struct.unpack_from("<Q", self._map, data)[0], size)
            elif data + size > end:
                self._fail(f"a value on page {number} runs past the page")
            keys.append((key, key_size))
            values.append((data, size))

    def _overflow(self, number: int, size: int) -> int:
        """The offset of a ``size``-byte value stored from overflow page ``number``."""
        offset = number * self.page_size
        if offset + PAGE_HEADER > len(self._map):
            self._fail(f"overflow page {number} lies past the end of the file")
        if offset + PAGE_HEADER + size > len(self._map):    # (liblmdb reads the value from
            self._fail(f"a {size}-byte value from overflow page {number} runs past the "
                       "end of the file")                     # there, its header unread)
        return offset + PAGE_HEADER


LMDB_MAP_SIZE = 2**40               # Caffe's (db_lmdb.hpp): 1 TiB of address space, sparse
COMMIT_EVERY = 1000                 # records a transaction, as convert_cifar_data commits


def lmdb_package():
    """The lmdb package, or an AllconvError saying how to install it."""
    try:
        import lmdb
    except ImportError:
        raise AllconvError("writing an LMDB needs the lmdb package: "
                           "pip install -e \".[lmdb]\"") from None
    return lmdb


def check_lmdb_target(folder: Path) -> None:
    """Refuse ``folder`` as where an LMDB goes when something other than an LMDB (a folder of
    nothing but data.mdb and lock.mdb) is there already."""
    if folder.exists() and not (folder.is_dir() and {p.name for p in folder.iterdir()}
                                <= {"data.mdb", "lock.mdb"}):
        raise AllconvError(f"{folder}: there already, and not an LMDB to replace; remove it "
                           "or write elsewhere")


def write_datum_lmdb(folder, images: np.ndarray, labels: np.ndarray) -> None:
    """Write float32 ``images`` (N, C, H, W) and their integer ``labels`` (N,) as Caffe's
    Datum records (``float_data``) into a new LMDB at ``folder``, keyed ``00000``, ``00001``,
    ... as convert_cifar_data keys them; an LMDB already at ``folder`` (a folder of nothing
    but data.mdb and lock.mdb) is replaced once the new one is complete, anything else there
    is refused."""
    lmdb = lmdb_package()
    from runtime.proto import pb

    folder = Path(folder)
    check_lmdb_target(folder)
    remove_dead_writers(folder)
    try:
        partial = Path(tempfile.mkdtemp(prefix=temporary_prefix(folder), suffix=".partial",
                                        dir=folder.parent))
        partial.chmod(0o755)                # mkdtemp's 0700 would keep others from reading
    except OSError as err:
        raise AllconvError(f"{folder}: cannot write the LMDB: {err.strerror or err}") from None
    digits = max(5, len(str(len(images) - 1)))
    _, channels, height, width = images.shape
    try:
        env = lmdb.open(os.fsencode(partial), map_size=LMDB_MAP_SIZE, subdir=True)
        try:
            for start in range(0, len(images), COMMIT_EVERY):
                with env.begin(write=True) as txn:
                    for i in range(start, min(start + COMMIT_EVERY, len(images))):
                        datum = pb.Datum(channels=channels, height=height, width=width,
                                         label=int(labels[i]))
                        datum.float_data.extend(images[i].ravel())
                        txn.put(f"{i:0{digits}d}".encode(), datum.SerializeToString())
        finally:
            env.close()
        replace_folder(partial, folder)
    except BaseException as err:             # Ctrl-C too: no half-written LMDB is left
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, (OSError, lmdb.Error)):
            raise AllconvError(f"{folder}: cannot write the LMDB: "
                               f"{getattr(err, 'strerror', None) or err}") from None
        raise
