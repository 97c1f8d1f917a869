"""A read-only reader of LevelDB databases (LevelDB 1.x's file format), as Caffe's Data layer
opens them: every live key's newest value, in key order (the bytewise comparator), read into
memory at opening (up to 4 GiB of files). Nothing is written and no lock is taken.

The folder: CURRENT names the MANIFEST, a log of version edits naming the live table files
(.ldb or .sst) and the oldest write-ahead log still to replay (.log: write batches not yet in
a table). A table is blocks of prefix-compressed entries (raw or Snappy), an index block and a
footer; a key in it and in the logs is the user key, then its sequence number and kind
(value or deletion); the highest sequence number wins. Every log record and table block
carries a CRC-32C: one that fails is refused, where LevelDB refuses a MANIFEST's, skips a
.log's (Caffe then reads fewer records) and, as Caffe opens it, reads a table's unchecked.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

from runtime.data.crc32c import crc32c
from runtime.errors import AllconvError

MAX_BYTES = 4 << 30                 # the files of a database read whole into memory
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER = 48
BLOCK_TRAILER = 5                   # compression type, crc32c
LOG_BLOCK, LOG_HEADER = 32768, 7    # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
DELETION, VALUE = 0, 1
# version edit tags
LOG_NUMBER, PREV_LOG_NUMBER, NEW_FILE, DELETED_FILE = 2, 9, 7, 6
COMPARATOR, NEXT_FILE, LAST_SEQUENCE, COMPACT_POINTER = 1, 3, 4, 5


class LevelDbFile:
    """The live values of the LevelDB at ``folder``, in key order: ``len(db)``, ``db[i]``
    (bytes) and ``db.key(i)``. A damaged or unsupported database is an AllconvError naming the
    file and what failed."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._where = self.folder / "CURRENT"
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        if size > MAX_BYTES:
            raise AllconvError(f"{self.folder}: a LevelDB of {size / 2**30:.1f} GiB; this "
                               "reader holds one in memory (up to 4 GiB): convert it to an "
                               "LMDB, which is read page by page")
        manifest = _read(self._where).decode("ascii", "replace").strip()
        if not re.fullmatch(r"MANIFEST-\d+", manifest):
            self._fail(f"names no manifest ({manifest[:40]!r})")
        tables, log_number = self._version(self.folder / manifest)
        newest: dict[bytes, tuple[int, int, bytes | None]] = {}   # key -> (seq, kind, value)

        def add(key: bytes, sequence: int, kind: int, value: bytes | None) -> None:
            if key not in newest or newest[key][0] < sequence:
                newest[key] = (sequence, kind, value)
        for number in sorted(tables):
            self._table(number, add)
        for path in sorted(self.folder.glob("*.log"), key=lambda p: _number(p.name)):
            if _number(path.name) >= log_number:
                self._log_batches(path, add)
        live = sorted((k, v[2]) for k, v in newest.items() if v[1] == VALUE)
        self._keys = [k for k, _ in live]
        self._values = [v for _, v in live]

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> bytes:
        return self._values[i]

    def key(self, i: int) -> bytes:
        return self._keys[i]

    def check_unchanged(self) -> None:
        """The values are read at opening: what a writer does later is not seen."""

    def _fail(self, what: str):
        raise AllconvError(f"{self._where}: not a readable LevelDB file: {what}")

    # ------------------------------------------------------------------ the manifest
    def _version(self, path: Path) -> tuple[set[int], int]:
        """(the live table numbers, the number of the oldest log to replay) of a MANIFEST."""
        self._where = path
        tables, log_number, seen = set(), 0, set()
        for record in self._log_records(path):
            for tag, fields in _edit(record, self._fail):
                seen.add(tag)
                if tag == NEW_FILE:
                    tables.add(fields[1])
                elif tag == DELETED_FILE:
                    tables.discard(fields[1])
                elif tag == LOG_NUMBER:
                    log_number = fields[0]
        for tag, entry in ((NEXT_FILE, "meta-nextfile"), (LOG_NUMBER, "meta-lognumber"),
                           (LAST_SEQUENCE, "last-sequence-number")):
            if tag not in seen:     # VersionSet::Recover's refusal (an empty MANIFEST, say)
                self._fail(f"no {entry} entry in descriptor (damaged)")
        return tables, log_number

    # ------------------------------------------------------------------ logs
    def _log_records(self, path: Path):
        """The records of a log file (MANIFEST or .log), fragments joined; a record cut short
        at the end (a write the crash interrupted) is dropped, as LevelDB drops it."""
        self._where = path
        data = _read(path)
        fragments, pos = [], 0          # (byte offset, kind, body)
        while pos + LOG_HEADER <= len(data):
            left = LOG_BLOCK - pos % LOG_BLOCK
            if left < LOG_HEADER:       # the block's zero-filled tail
                pos += left
                continue
            length, kind = struct.unpack_from("<HB", data, pos + 4)
            if kind == 0 and length == 0:   # preallocated zeros
                pos += left
                continue
            body = data[pos + LOG_HEADER:pos + LOG_HEADER + length]
            if len(body) < length:
                break
            if kind not in (FULL, FIRST, MIDDLE, LAST):
                self._fail(f"the record at byte {pos} is of unknown kind {kind} (damaged)")
            fragments.append((pos, kind, body))
            pos += LOG_HEADER + length
        # each fragment's checksum covers its kind byte and its body
        self._check_sums([data[at + 6:at + LOG_HEADER + len(body)] for at, _, body in fragments],
                         [data[at:at + 4] for at, _, _ in fragments],
                         [f"the record at byte {at}" for at, _, _ in fragments])
        record = b""
        for _, kind, body in fragments:
            if kind == FULL:
                yield body
            elif kind == FIRST:
                record = body
            elif kind == MIDDLE:
                record += body
            else:
                yield record + body

    def _log_batches(self, path: Path, add) -> None:
        """The write batches of a .log: sequence (8), count (4), then each put or delete."""
        for batch in self._log_records(path):
            if len(batch) < 12:
                self._fail("a write batch shorter than its header")
            sequence, count = struct.unpack_from("<QI", batch, 0)
            pos = 12
            for n in range(count):
                if pos >= len(batch):
                    self._fail(f"a write batch holds {n} of its {count} entries")
                kind, pos = batch[pos], pos + 1
                key, pos = _bytes(batch, pos, self._fail)
                value = None
                if kind == VALUE:
                    value, pos = _bytes(batch, pos, self._fail)
                elif kind != DELETION:
                    self._fail(f"a write batch entry of kind {kind}")
                add(key, sequence + n, kind, value)

    # ------------------------------------------------------------------ tables
    def _table(self, number: int, add) -> None:
        """Every entry of table file ``number`` (.ldb, or .sst of older LevelDBs)."""
        path = self.folder / f"{number:06d}.ldb"
        if not path.exists():
            path = path.with_suffix(".sst")
        self._where = path
        data = _read(path)
        if len(data) < FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            self._fail("no table footer (cut short?)")
        _, pos = _handle(data, len(data) - FOOTER, self._fail)      # the metaindex block
        index, _ = _handle(data, pos, self._fail)
        blocks = [_handle(handle, 0, self._fail)[0]
                  for _, handle in self._entries(self._blocks(data, [index])[0])]
        for block in self._blocks(data, blocks):
            for internal, value in self._entries(block):
                if len(internal) < 8:
                    self._fail("a key shorter than its sequence number")
                tag = int.from_bytes(internal[-8:], "little")
                add(internal[:-8], tag >> 8, tag & 0xFF, value)

    def _blocks(self, data: bytes, handles: list[tuple[int, int]]) -> list[bytes]:
        """The blocks at ``handles`` (offset, size), their checksums checked, uncompressed."""
        for offset, size in handles:
            if offset + size + BLOCK_TRAILER > len(data):
                self._fail(f"a block at {offset} runs past the end of the file")
        # a block's checksum covers its bytes and its compression byte
        self._check_sums([data[offset:offset + size + 1] for offset, size in handles],
                         [data[offset + size + 1:offset + size + 5] for offset, size in handles],
                         [f"the block at byte {offset}" for offset, _ in handles])
        blocks = []
        for offset, size in handles:
            kind, block = data[offset + size], data[offset:offset + size]
            if kind == 1:
                block = snappy_decompress(block, self._fail)
            elif kind != 0:
                self._fail(f"a block compressed by method {kind}, which this reader does not "
                           "know")
            blocks.append(block)
        return blocks

    def _check_sums(self, covered: list[bytes], stored: list[bytes], names: list[str]) -> None:
        """Each ``covered`` span against its ``stored`` masked CRC-32C, as LevelDB keeps them;
        the first that differs is named."""
        for got, want, name in zip(crc32c(covered), stored, names):
            if _masked(got) != int.from_bytes(want, "little"):
                self._fail(f"{name} fails its checksum (damaged)")

    def _entries(self, block: bytes):
        """(key, value) of a block's entries: each key shares a prefix with the one before."""
        if len(block) < 4:
            self._fail("a block shorter than its restart count")
        restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
        end = len(block) - 4 - 4 * restarts
        if end < 0:
            self._fail("a block's restart array is longer than the block")
        key, pos = b"", 0
        while pos < end:
            shared, pos = _varint(block, pos, self._fail)
            unshared, pos = _varint(block, pos, self._fail)
            size, pos = _varint(block, pos, self._fail)
            if shared > len(key) or pos + unshared + size > end:
                self._fail("a block entry runs past its block")
            key = key[:shared] + block[pos:pos + unshared]
            pos += unshared
            yield key, block[pos:pos + size]
            pos += size


def _masked(crc: int) -> int:
    """LevelDB stores a CRC rotated and offset (crc32c::Mask)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise AllconvError(f"{path}: cannot read the LevelDB file: "
                           f"{err.strerror or err}") from None


def _number(name: str) -> int:
    return int(name.split(".")[0]) if name.split(".")[0].isdigit() else -1


def _varint(data: bytes, pos: int, fail) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            fail("a number runs past its record")
        byte, pos = data[pos], pos + 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _bytes(data: bytes, pos: int, fail) -> tuple[bytes, int]:
    size, pos = _varint(data, pos, fail)
    if pos + size > len(data):
        fail("a string runs past its record")
    return data[pos:pos + size], pos + size


def _handle(data: bytes, pos: int, fail) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos, fail)
    size, pos = _varint(data, pos, fail)
    return (offset, size), pos


def _edit(record: bytes, fail):
    """(tag, fields) of a version edit's entries (numbers as ints, keys as bytes)."""
    pos = 0
    while pos < len(record):
        tag, pos = _varint(record, pos, fail)
        if tag in (COMPARATOR,):
            name, pos = _bytes(record, pos, fail)
            if name != b"leveldb.BytewiseComparator":
                fail(f"keys ordered by {name.decode('utf-8', 'replace')}, not bytewise")
            yield tag, (name,)
        elif tag in (LOG_NUMBER, PREV_LOG_NUMBER, NEXT_FILE, LAST_SEQUENCE):
            value, pos = _varint(record, pos, fail)
            yield tag, (value,)
        elif tag == COMPACT_POINTER:
            level, pos = _varint(record, pos, fail)
            key, pos = _bytes(record, pos, fail)
            yield tag, (level, key)
        elif tag == DELETED_FILE:
            level, pos = _varint(record, pos, fail)
            number, pos = _varint(record, pos, fail)
            yield tag, (level, number)
        elif tag == NEW_FILE:
            level, pos = _varint(record, pos, fail)
            number, pos = _varint(record, pos, fail)
            size, pos = _varint(record, pos, fail)
            smallest, pos = _bytes(record, pos, fail)
            largest, pos = _bytes(record, pos, fail)
            yield tag, (level, number, size, smallest, largest)
        else:
            fail(f"a version edit of tag {tag}")


def snappy_decompress(data: bytes, fail) -> bytes:
    """Snappy's raw format: the length, then literals and copies of what came before."""
    try:
        return _snappy(data, fail)
    except IndexError:
        fail("a Snappy block cut short")


def _snappy(data: bytes, fail) -> bytes:
    size, pos = _varint(data, 0, fail)
    out = bytearray()
    while pos < len(data):
        tag, pos = data[pos], pos + 1
        kind = tag & 3
        if kind == 0:                                   # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > len(data):
                fail("a Snappy literal runs past its block")
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + width], "little")
            pos += width
        if not 0 < offset <= len(out):
            fail("a Snappy copy reaches before the block")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:                               # the source overlaps what is being written
            for i in range(length):
                out.append(out[start + i])
    if len(out) != size:
        fail(f"a Snappy block of {len(out)} bytes, its header says {size}")
    return bytes(out)
