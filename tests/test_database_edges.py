"""LMDB and LevelDB cases the mutation round of lmdb_file.py and leveldb_file.py found
untested. The LMDBs are written by liblmdb (the lmdb package), then
damaged where a case needs it; the LevelDBs by a writer here that follows LevelDB 1.x's
log::Writer, VersionEdit::EncodeTo and TableBuilder byte for byte (uncompressed or Snappy
blocks), so that each case holds exactly the files LevelDB would leave."""
import struct

import numpy as np
import pytest

from runtime.data.crc32c import crc32c
from runtime.data.leveldb_file import LevelDbFile
from runtime.data.lmdb_file import LmdbFile, write_datum_lmdb
from runtime.errors import AllconvError
from runtime.proto import pb

lmdb = pytest.importorskip("lmdb")


# ------------------------------------------------------------------------------ LMDB

def _lmdb(folder, records: dict) -> None:
    env = lmdb.open(str(folder), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key, value)
    env.close()


def test_a_record_of_64_kib_or_more_is_read_whole(tmp_path):
    """A node's data size is 32 bits (lo | hi << 16): an ImageNet Datum (256x256x3 = 196,608
    bytes) is past 16 bits."""
    big = np.random.default_rng(0).integers(0, 256, 196_700, dtype=np.uint8).tobytes()
    _lmdb(tmp_path, {b"a": b"small", b"b": big, b"c": b"x" * 70_000})
    db = LmdbFile(tmp_path)
    assert [len(db[i]) for i in range(3)] == [5, 196_700, 70_000]
    assert db[1] == big


def _meta_field(path, offset: int, fmt: str, value) -> None:
    """Set the field at ``offset`` of both meta pages (4096 bytes each)."""
    data = bytearray(path.read_bytes())
    for page in (0, 1):
        struct.pack_into(fmt, data, page * 4096 + offset, value)
    path.write_bytes(bytes(data))


def test_a_tree_holding_fewer_records_than_its_meta_page_says_is_refused(tmp_path):
    _lmdb(tmp_path, {b"%03d" % i: b"v" for i in range(5)})
    _meta_field(tmp_path / "data.mdb", 16 + 24 + 48 + 32, "<Q", 6)      # main db's entries
    with pytest.raises(AllconvError, match="its tree holds 5 records, its meta page says 6"):
        LmdbFile(tmp_path)


def test_a_main_database_of_duplicate_keys_is_refused(tmp_path):
    _lmdb(tmp_path, {b"k": b"v"})
    _meta_field(tmp_path / "data.mdb", 16 + 24 + 48 + 4, "<H", 0x04)    # main db's flags
    with pytest.raises(AllconvError, match=r"duplicate keys \(MDB_DUPSORT\)"):
        LmdbFile(tmp_path)


def test_a_named_sub_database_is_refused_not_read_as_a_record(tmp_path):
    """Its node in the main database holds the sub-database's MDB_db record (48 bytes), not
    a value."""
    env = lmdb.open(str(tmp_path), map_size=1 << 26, max_dbs=1)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v", db=env.open_db(b"named", txn=txn))
        txn.put(b"a", b"b")
    env.close()
    with pytest.raises(AllconvError, match="holds a sub-database or duplicate values"):
        LmdbFile(tmp_path)


def test_a_value_whose_size_runs_past_its_page_is_refused(tmp_path):
    """A node's size damaged: the bytes past the page are other pages', not the record's."""
    _lmdb(tmp_path, {b"a": b"small", b"b": b"other"})
    start, _ = LmdbFile(tmp_path)._values[0]            # the value's offset; its node's
    path = tmp_path / "data.mdb"                        # header is 8 + 1 (key) bytes before
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, int(start) - 9, 5000)  # lo: 5000 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(AllconvError, match="a value on page .* runs past the page"):
        LmdbFile(tmp_path)


def test_an_overflow_value_cut_by_the_files_end_is_refused(tmp_path):
    """liblmdb's reader would fault past the mapped file; a shorter record was served."""
    _lmdb(tmp_path, {b"a": b"small", b"c": b"x" * 9000})
    db = LmdbFile(tmp_path)
    start, size = db._values[1]
    del db
    path = tmp_path / "data.mdb"
    path.write_bytes(path.read_bytes()[:int(start) + int(size) - 100])
    with pytest.raises(AllconvError, match="a 9000-byte value from overflow page .* runs past "
                                           "the end of the file"):
        LmdbFile(tmp_path)


def test_the_writer_keeps_every_record_across_its_commits_and_keys_past_100000(tmp_path):
    """1,000 records a transaction, and keys as wide as the count needs, so that key order is
    the order written (a 5-digit key 100000 sorted between 10000 and 10001)."""
    n = 100_001
    write_datum_lmdb(tmp_path / "db", np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1),
                     np.arange(n) % 10)
    db = LmdbFile(tmp_path / "db")
    assert len(db) == n
    keys = [db.key(i) for i in range(n)]
    assert keys == sorted(keys) and keys[-1] == b"100000"
    for i in (0, 999, 1000, 1001, 99_999, 100_000):
        datum = pb.Datum.FromString(db[i])
        assert (datum.float_data[0], datum.label) == (i, i % 10)


# ------------------------------------------------------------------------------ LevelDB

BLOCK = 32768
MASK_DELTA = 0xA282EAD8


def _mask(data: bytes) -> bytes:
    crc = crc32c([data])[0]
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def _slice(b: bytes) -> bytes:
    return _varint(len(b)) + b


def _log(records: list[bytes], tail: bytes = b"") -> bytes:
    """log::Writer::AddRecord of each record: fragments (FULL, FIRST, MIDDLE, LAST) within
    32 KiB blocks, a block's last 1-6 bytes zero-filled, a header fitting exactly (7 bytes)
    written with an empty fragment."""
    out = bytearray()
    for record in records:
        left, begin = record, True
        while True:
            leftover = BLOCK - len(out) % BLOCK
            if leftover < 7:
                out += bytes(leftover)
            avail = BLOCK - len(out) % BLOCK - 7
            fragment, left = left[:avail], left[avail:]
            end = not left
            kind = 1 if begin and end else 2 if begin else 4 if end else 3
            out += (_mask(bytes([kind]) + fragment) + struct.pack("<H", len(fragment))
                    + bytes([kind]) + fragment)
            begin = False
            if end:
                break
    return bytes(out) + tail


def _batch(sequence: int, ops: list[tuple[bytes, bytes | None]]) -> bytes:
    """WriteBatch: sequence, count, then each put (value) or delete (None)."""
    body = b"".join(bytes([0]) + _slice(k) if v is None else bytes([1]) + _slice(k) + _slice(v)
                    for k, v in ops)
    return struct.pack("<QI", sequence, len(ops)) + body


def _internal(key: bytes, sequence: int, value: bool = True) -> bytes:
    return key + struct.pack("<Q", sequence << 8 | int(value))


def _snappy_literal(data: bytes, claimed: int | None = None) -> bytes:
    """Snappy's raw format as one literal (lengths up to 2^32), header ``claimed`` or the
    length."""
    n = len(data) - 1
    tag = bytes([n << 2]) if n < 60 else bytes([(59 + (n.bit_length() + 7) // 8) << 2]) \
        + n.to_bytes((n.bit_length() + 7) // 8, "little")
    return _varint(len(data) if claimed is None else claimed) + tag + data


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A block of one restart: each key whole (shared 0), then the restart array."""
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)


def _table(entries: list[tuple[bytes, bytes]], snappy_claims: int | None = None,
           snappy: bool = False) -> bytes:
    """TableBuilder's file of one data block (raw, or Snappy with its header's length
    ``snappy_claims``), an empty metaindex block, the index block and the footer."""
    out = bytearray()

    def write(contents: bytes, kind: int = 0) -> bytes:
        handle = _varint(len(out)) + _varint(len(contents))
        out.extend(contents + bytes([kind]) + _mask(contents + bytes([kind])))
        return handle
    data = _block(sorted(entries, key=lambda e: (e[0][:-8], -int.from_bytes(e[0][-8:],
                                                                             "little"))))
    if snappy or snappy_claims is not None:
        data_handle = write(_snappy_literal(data, snappy_claims), 1)
    else:
        data_handle = write(data)
    meta_handle = write(_block([]))
    index_handle = write(_block([(max(k for k, _ in entries), data_handle)]))
    footer = meta_handle + index_handle
    return bytes(out) + footer + bytes(40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)


def _edit(*, log_number=None, last_sequence=None, next_file=None, comparator=None,
          new_files=(), deleted=()) -> bytes:
    """VersionEdit::EncodeTo."""
    out = b""
    if comparator is not None:
        out += _varint(1) + _slice(comparator)
    if log_number is not None:
        out += _varint(2) + _varint(log_number)
    if next_file is not None:
        out += _varint(3) + _varint(next_file)
    if last_sequence is not None:
        out += _varint(4) + _varint(last_sequence)
    for level, number in deleted:
        out += _varint(6) + _varint(level) + _varint(number)
    for level, number, size, smallest, largest in new_files:
        out += (_varint(7) + _varint(level) + _varint(number) + _varint(size)
                + _slice(smallest) + _slice(largest))
    return out


def _leveldb(folder, *, tables=None, logs=None, edits=None, log_number=None,
             comparator=b"leveldb.BytewiseComparator", last_sequence=100):
    """A LevelDB folder: ``tables`` {number: (level, entries[, table bytes])}, ``logs``
    {number: bytes}; its MANIFEST-000002 of a first edit (comparator, log number, next file,
    last sequence, every table added) and ``edits`` after it."""
    folder.mkdir(exist_ok=True)
    new_files = []
    for number, (level, entries, *data) in (tables or {}).items():
        data = data[0] if data else _table(entries)
        (folder / f"{number:06d}.ldb").write_bytes(data)
        keys = sorted(k for k, _ in entries)
        new_files.append((level, number, len(data), keys[0], keys[-1]))
    logs = logs or {}
    if log_number is None:
        log_number = max(logs, default=3)
    for number, data in logs.items():
        (folder / f"{number:06d}.log").write_bytes(data)
    first = _edit(comparator=comparator, log_number=log_number, next_file=100,
                  last_sequence=last_sequence, new_files=new_files)
    (folder / "MANIFEST-000002").write_bytes(_log([first] + list(edits or [])))
    (folder / "CURRENT").write_bytes(b"MANIFEST-000002\n")
    return folder


def _read(folder) -> dict[bytes, bytes]:
    db = LevelDbFile(folder)
    return {db.key(i): db[i] for i in range(len(db))}


def test_leveldb_helpers_round_trip(tmp_path):
    """The writer here: raw and Snappy tables and a log, read back."""
    entries = [(_internal(b"a", 1), b"1"), (_internal(b"b", 2), b"2")]
    folder = _leveldb(tmp_path / "db", tables={5: (1, entries), 6: (1, [
        (_internal(b"c", 3), b"3")], _table([(_internal(b"c", 3), b"3")], snappy=True))},
        logs={7: _log([_batch(4, [(b"d", b"4")])])})
    assert _read(folder) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}


def test_a_table_the_manifest_deleted_is_not_read(tmp_path):
    """A compaction's input stays on disk until it is removed: its keys, dropped by the
    compaction (a deletion reaching the last level takes its value with it), do not come
    back."""
    folder = _leveldb(tmp_path / "db", tables={
        5: (0, [(_internal(b"ghost", 1), b"boo"), (_internal(b"kept", 2), b"old")]),
        7: (1, [(_internal(b"kept", 2), b"old")])},
        edits=[_edit(deleted=[(0, 5)])])
    assert _read(folder) == {b"kept": b"old"}


def test_a_deletion_in_a_table_hides_the_older_value(tmp_path):
    folder = _leveldb(tmp_path / "db", tables={
        5: (1, [(_internal(b"a", 1), b"old"), (_internal(b"b", 2), b"kept")]),
        6: (0, [(_internal(b"a", 3, value=False), b"")])})
    assert _read(folder) == {b"b": b"kept"}


def test_logs_older_than_the_manifests_log_number_are_not_replayed(tmp_path):
    """Their writes are in the tables (or were compacted away): a log left behind by a crash
    before its removal brought a dropped key back."""
    folder = _leveldb(tmp_path / "db", tables={5: (1, [(_internal(b"a", 1), b"1")])},
                      logs={3: _log([_batch(2, [(b"ghost", b"boo")])]),
                            8: _log([_batch(5, [(b"b", b"2")])])}, log_number=8)
    assert _read(folder) == {b"a": b"1", b"b": b"2"}


def test_a_batch_writing_one_key_twice_keeps_its_last_write(tmp_path):
    """Each entry of a batch takes the batch's sequence plus its index (WriteBatch's
    InsertInto): the later write wins, a later delete deletes."""
    folder = _leveldb(tmp_path / "db", logs={4: _log([
        _batch(10, [(b"a", b"first"), (b"a", b"second"), (b"b", b"x"), (b"b", None)])])})
    assert _read(folder) == {b"a": b"second"}


def test_records_longer_than_two_log_blocks_are_joined(tmp_path):
    """FIRST, MIDDLE(s), LAST fragments: a record of 100,000 bytes spans four blocks."""
    big = np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    folder = _leveldb(tmp_path / "db", logs={4: _log([_batch(1, [(b"big", big)]),
                                                      _batch(2, [(b"small", b"s")])])})
    assert _read(folder) == {b"big": big, b"small": b"s"}


def test_a_record_starting_seven_bytes_before_a_block_end_is_read(tmp_path):
    """log::Writer writes a header that fits exactly (7 bytes left) with an empty FIRST
    fragment, the record going on in the next block: those 7 bytes are no padding. Before
    it, a record over two blocks, whose fragments must not leak into it."""
    first = _batch(1, [(b"first", b"F" * 40_000)])
    # the second record's header to start 7 bytes before the second block's end
    used = len(_log([first]))
    filler_size = 2 * BLOCK - 7 - used - 7                      # the filler record's body
    size = filler_size - len(_batch(2, [(b"filler", b"")]))
    filler_value = b"f" * (size - len(_varint(size)) + 1)      # its length's varint: 3 bytes
    filler = _batch(2, [(b"filler", filler_value)])
    assert len(filler) == filler_size, len(filler)
    last = _batch(3, [(b"last", b"L" * 100)])
    data = _log([first, filler, last])
    assert data[2 * BLOCK - 7 + 6] == 2                         # an empty FIRST fragment there
    folder = _leveldb(tmp_path / "db", logs={4: data})
    assert _read(folder) == {b"first": b"F" * 40_000, b"filler": filler_value,
                             b"last": b"L" * 100}


def test_a_log_whose_last_record_was_cut_by_a_crash_reads_the_records_before(tmp_path):
    """log::Reader drops a record cut short at the file's end (a write the crash stopped),
    silently: the database opens with the writes before it."""
    data = _log([_batch(1, [(b"a", b"1")]), _batch(2, [(b"b", b"2" * 50)])])
    folder = _leveldb(tmp_path / "db", logs={4: data[:-20]})
    assert _read(folder) == {b"a": b"1"}


def test_a_logs_zero_filled_preallocation_is_passed_over(tmp_path):
    """The mmap writer of LevelDB's env_posix preallocates: zeros after the last record are
    no record (log::Reader skips a zero header)."""
    folder = _leveldb(tmp_path / "db", logs={4: _log([_batch(1, [(b"a", b"1")])],
                                                     tail=bytes(4096))})
    assert _read(folder) == {b"a": b"1"}


def test_a_snappy_block_of_another_length_than_its_header_says_is_refused(tmp_path):
    """Snappy's Uncompress fails where the output's length is not the header's, and
    LevelDB with it ("corrupted compressed block contents")."""
    entries = [(_internal(b"a", 1), b"1")]
    claimed = len(_block(entries)) + 3
    folder = _leveldb(tmp_path / "db", tables={5: (1, entries, _table(entries, claimed))})
    with pytest.raises(AllconvError, match=f"a Snappy block of {claimed - 3} bytes, its header "
                                           f"says {claimed}"):
        LevelDbFile(folder)


def test_a_leveldb_of_another_comparator_is_refused(tmp_path):
    """Caffe opens it with the bytewise comparator; LevelDB refuses a database made with
    another ("does not match existing comparator")."""
    folder = _leveldb(tmp_path / "db", logs={4: _log([_batch(1, [(b"a", b"1")])])},
                      comparator=b"leveldb.ReverseComparator")
    with pytest.raises(AllconvError, match="keys ordered by leveldb.ReverseComparator, not "
                                           "bytewise"):
        LevelDbFile(folder)
