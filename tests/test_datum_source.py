"""The Data layer over an LMDB of Caffe Datum records (runtime.data.lmdb_file, .datum): the
reader against the committed LMDBs of the Caffe fixtures (written by liblmdb; Caffe's tops for
them are checked in test_caffe_fixtures.py), damaged copies of them, the records' decoding,
and the backend and LevelDB refusals."""
import io
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.data import open_source
from runtime.data.datum import DatumFeed
from runtime.data.leveldb_file import LevelDbFile
from runtime.data.lmdb_file import LmdbFile
from runtime.errors import AllconvError
from runtime.proto import pb

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_lmdb(tmp_path, case="data_lmdb_sizes", name="sizes") -> Path:
    """The case's LMDB ``name`` written out from its fixture, as a folder."""
    with np.load(FIXTURES / f"{case}.npz") as z:
        data = z[f"file:lmdb:{name}"].tobytes()
    (tmp_path / name).mkdir()
    (tmp_path / name / "data.mdb").write_bytes(data)
    return tmp_path / name


def test_the_reader_gives_the_records_in_key_order(tmp_path):
    """30 records written in a shuffled order over a branch page, leaves and overflow pages:
    all read back, sorted by key, each a Datum of its record's shape."""
    db = LmdbFile(fixture_lmdb(tmp_path))
    keys = [db.key(i) for i in range(len(db))]
    assert keys == [b"%08d_image" % i for i in range(30)]
    for i in range(len(db)):
        datum = pb.Datum.FromString(db[i])
        assert (datum.channels, datum.height, datum.width) == ((3, 27, 27) if i % 2 else
                                                               (3, 9, 9))
        assert datum.label == i % 10 and len(datum.data) == 3 * datum.height * datum.width


def test_damaged_lmdb_files_give_one_line_naming_the_file(tmp_path):
    """Truncations and byte flips of a real LMDB: each is read, or refused as an AllconvError
    naming data.mdb; never another exception, never a hang."""
    folder = fixture_lmdb(tmp_path)
    good = (folder / "data.mdb").read_bytes()
    rng = random.Random(5)
    refused = 0
    for trial in range(300):
        damaged = bytearray(good[:rng.randrange(len(good))] if trial % 5 == 0 else good)
        for _ in range(0 if trial % 5 == 0 else rng.randint(1, 4)):
            # the meta pages, the branch page and the first leaves hold the structure
            place = rng.randrange(min(len(damaged), 4 * 4096))
            damaged[place] = rng.randrange(256)
        (folder / "data.mdb").write_bytes(bytes(damaged))
        try:
            LmdbFile(folder)
        except AllconvError as err:
            assert str(err).startswith(f"{folder / 'data.mdb'}: ") and "\n" not in str(err)
            refused += 1
    assert refused > 50


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:100], "100 bytes, too short for its meta page"),
    (lambda b: b[:16] + b"\0" * 4 + b[20:], "no LMDB magic number"),
    (lambda b: b[:4096 * 2], "lies past the end of the file"),
    (lambda b: b"", "cannot read the LMDB file"),
])
def test_a_damaged_lmdb_says_what_failed(tmp_path, damage, message):
    folder = fixture_lmdb(tmp_path)
    (folder / "data.mdb").write_bytes(damage((folder / "data.mdb").read_bytes()))
    with pytest.raises(AllconvError, match=message):
        LmdbFile(folder)


def test_a_commit_while_the_lmdb_is_read_stops_the_feed(tmp_path):
    """No reader slot is taken in lock.mdb, so a writer may reuse the pages read: a helper's
    writer rewrote every record and the feed served other records' images with no error.
    A commit since opening (a newer transaction id in a meta page) now stops it."""
    folder = fixture_lmdb(tmp_path)
    feed = DatumFeed(LmdbFile(folder), folder, cropped=True)
    feed(4)
    db, size = feed.db, feed.db.page_size
    newer = max((db._meta(page * size)[0], page) for page in (0, 1))
    older_page = 1 - newer[1]
    with open(folder / "data.mdb", "r+b") as f:         # as a writer's commit: the other meta
        f.seek(older_page * size + 144)                  # page gets the next transaction id
        f.write((newer[0] + 1).to_bytes(8, "little"))
    with pytest.raises(AllconvError, match=r"data.mdb: the LMDB was written to while it was "
                                           r"read \(a transaction committed\)"):
        feed(4)


class Records:
    """An in-memory database: what DatumFeed reads, as LmdbFile gives it."""

    def __init__(self, *datums):
        self.values = [d if isinstance(d, bytes) else d.SerializeToString() for d in datums]

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        return self.values[i]

    def key(self, i):
        return b"%05d" % i

    def check_unchanged(self):
        pass


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_encoded_records_decode_as_opencv_imdecode():
    """A PNG record: grey stays one channel and colour comes as BGR unless forced (Caffe's
    DecodeDatumToCVMatNative / DecodeDatumToCVMat), exactly, PNG being lossless."""
    rng = np.random.default_rng(0)
    grey, rgb = (rng.integers(0, 256, s, dtype=np.uint8) for s in ((4, 5), (4, 5, 3)))
    db = Records(pb.Datum(data=png(grey), encoded=True, label=3),
                 pb.Datum(data=png(rgb), encoded=True, label=4))
    images, labels = DatumFeed(Records(*db.values[:1]), "db")(2)
    assert images.shape == (2, 1, 4, 5) and torch.equal(images[0, 0], torch.from_numpy(grey))
    assert labels.tolist() == [3, 3]
    images, _ = DatumFeed(Records(*db.values[1:]), "db")(1)
    assert torch.equal(images[0], torch.from_numpy(rgb[:, :, ::-1].copy()).permute(2, 0, 1))
    images, labels = DatumFeed(db, "db", force_color=True)(2)
    assert images.shape == (2, 3, 4, 5) and labels.tolist() == [3, 4]
    assert all(torch.equal(images[0, c], torch.from_numpy(grey)) for c in range(3))
    images, _ = DatumFeed(db, "db", force_gray=True)(2)
    assert images.shape == (2, 1, 4, 5)
    with pytest.raises(AllconvError, match="cannot set both force_color and force_gray"):
        DatumFeed(db, "db", force_color=True, force_gray=True)


@pytest.mark.parametrize("mode, channels", [("L", 1), ("RGB", 3), ("RGBA", 4), ("LA", 4)])
def test_an_encoded_record_decodes_unchanged_without_force(mode, channels):
    """Caffe's DecodeDatumToCVMatNative is imdecode(data, -1): the file's channels, alpha
    kept (BGRA; grey with alpha too, as OpenCV's PNG reader gives it). RGBA came out BGR."""
    from PIL import Image
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    image = Image.fromarray(rgba).convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    got = DatumFeed(Records(pb.Datum(data=out.getvalue(), encoded=True)), "db").sample_shape
    assert got == (channels, 3, 4)
    if mode == "RGBA":
        images, _ = DatumFeed(Records(pb.Datum(data=out.getvalue(), encoded=True)), "db")(1)
        assert torch.equal(images[0], torch.from_numpy(rgba[:, :, [2, 1, 0, 3]].copy())
                           .permute(2, 0, 1))


def test_a_16_bit_encoded_record_is_refused_as_caffe_refuses_it():
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(np.full((2, 2), 40000, np.uint16)).save(out, format="PNG")
    with pytest.raises(AllconvError, match="record 00000: Image data type must be unsigned "
                                           "byte"):
        DatumFeed(Records(pb.Datum(data=out.getvalue(), encoded=True)), "db")


def test_float_records_and_the_read_position():
    values = np.arange(2 * 2 * 3, dtype=np.float32)
    db = Records(*(pb.Datum(channels=2, height=2, width=3, float_data=values + i, label=i)
                   for i in range(3)))
    feed = DatumFeed(db, "db")
    assert feed.sample_shape == (2, 2, 3)
    feed(2)
    state = feed.state_dict()
    images, labels = feed(2)          # records 2, 0: wrapping around
    assert labels.tolist() == [2, 0] and images.dtype == torch.float32
    assert torch.equal(images[0].flatten(), torch.from_numpy(values + 2))
    feed.load_state_dict(state)
    assert feed(2)[1].tolist() == [2, 0]


@pytest.mark.parametrize("record, message", [
    (pb.Datum(channels=1, height=2, width=2, data=b"abc"),
     "record 00000: 3 data bytes for its 1x2x2 = 4 pixels"),
    (pb.Datum(channels=1, height=2, width=2, float_data=[1.0]),
     "record 00000: 1 float_data values for its 1x2x2 = 4 pixels"),
    (pb.Datum(channels=0, height=2, width=2), "channels, height and width must be positive"),
    (b"\xff\xff\xff", "record 00000: not a Caffe Datum"),
    (pb.Datum(data=b"not an image", encoded=True), "record 00000: could not load the image"),
])
def test_a_bad_record_is_one_line_naming_it(record, message):
    with pytest.raises(AllconvError, match=message):
        DatumFeed(Records(record), "db")


def test_data_longer_than_its_shape_is_read_as_caffe_reads_it():
    """Caffe's DataTransformer reads the first C x H x W bytes of a longer ``data``."""
    images, _ = DatumFeed(Records(pb.Datum(channels=1, height=2, width=2, data=b"abcdef")),
                          "db")(1)
    assert images[0, 0].flatten().tolist() == list(b"abcd")


def test_each_batch_takes_its_first_records_size():
    """Caffe reshapes its top to each batch's first record: batches of one size each may
    differ; another size within a batch is refused without a crop that fits them all, and
    another channel count always."""
    small, large = (pb.Datum(channels=1, height=s, width=s, data=bytes(s * s)) for s in (3, 4))
    feed = DatumFeed(Records(small, small, large, large), "db")
    assert feed.sizes_vary
    assert [tuple(feed(2)[0].shape) for _ in range(3)] == [(2, 1, 3, 3), (2, 1, 4, 4),
                                                           (2, 1, 3, 3)]
    with pytest.raises(AllconvError, match=r"record 00001: a 4x4 image in a batch of 3x3 "
                                           r"images \(its first image's, as Caffe shapes a "
                                           r"batch\): a batch's records must be one size"):
        DatumFeed(Records(small, large), "db")(2)
    images, _ = DatumFeed(Records(small, large), "db", cropped=True)(2)
    assert [tuple(i.shape) for i in images] == [(1, 3, 3), (1, 4, 4)]
    colour = pb.Datum(channels=3, height=3, width=3, data=bytes(27))
    with pytest.raises(AllconvError, match="record 00001: a 3x3x3 image in a batch of 1x3x3 "
                                           "images"):
        DatumFeed(Records(small, colour), "db", cropped=True)(2)


def test_an_empty_database_is_refused():
    with pytest.raises(AllconvError, match="data source db: the database holds no records"):
        DatumFeed(Records(), "db")


def fixture_leveldb(tmp_path, name="sizes") -> Path:
    """The data_leveldb case's LevelDB ``name`` written out from its fixture, as a folder."""
    folder = tmp_path / name
    folder.mkdir()
    with np.load(FIXTURES / "data_leveldb.npz") as z:
        for key in z.files:
            if key.startswith(f"file:leveldb:{name}/"):
                (folder / key.rsplit("/", 1)[1]).write_bytes(z[key].tobytes())
    return folder


def test_the_leveldb_reader_gives_the_newest_live_records_in_key_order(tmp_path):
    """Records written twice (the older in table files, half the newer in the log) and keys
    deleted: the newest version of each live key, sorted (Caffe's tops for them are in
    test_caffe_fixtures.py)."""
    db = LevelDbFile(fixture_leveldb(tmp_path))
    assert [db.key(i) for i in range(len(db))] == [b"%05d" % i for i in range(40)]
    assert [pb.Datum.FromString(db[i]).label for i in range(len(db))] == list(range(40))


def test_damaged_leveldb_files_give_one_line_naming_the_file(tmp_path):
    """Truncations and byte flips of each file of a real LevelDB: read, or refused as an
    AllconvError naming the file; never another exception."""
    folder = fixture_leveldb(tmp_path)
    rng = random.Random(7)
    refused = 0
    for path in sorted(p for p in folder.iterdir() if p.name != "CURRENT"):
        good = path.read_bytes()
        for trial in range(60):
            damaged = bytearray(good[:rng.randrange(len(good))] if trial % 4 == 0 else good)
            for _ in range(0 if trial % 4 == 0 else rng.randint(1, 3)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            path.write_bytes(bytes(damaged))
            try:
                LevelDbFile(folder)
            except AllconvError as err:
                assert str(err).startswith(f"{folder}/") and "\n" not in str(err), err
                refused += 1
        path.write_bytes(good)
    assert refused > 30


def test_a_manifest_without_its_version_entries_is_refused(tmp_path):
    """An emptied MANIFEST (or one of no records) served the .log's records alone: LevelDB's
    VersionSet::Recover refuses it, and Caffe with it."""
    folder = fixture_leveldb(tmp_path)
    manifest = next(folder.glob("MANIFEST-*"))
    manifest.write_bytes(b"")
    with pytest.raises(AllconvError, match=re.escape(f"{manifest}: not a readable LevelDB file: "
                                                     "no meta-nextfile entry in descriptor")):
        LevelDbFile(folder)

def test_crc32c_of_many_messages_is_each_ones_byte_by_byte():
    """The chunked CRC-32C against the textbook loop, at every length across the first chunks
    (shorter than its 4 initial bytes, one chunk, several) and the standard check value."""
    from runtime.data.crc32c import TABLE, crc32c

    def one(message: bytes) -> int:
        register = 0xFFFFFFFF
        for byte in message:
            register = int(TABLE[(register ^ byte) & 0xFF]) ^ (register >> 8)
        return register ^ 0xFFFFFFFF
    rng = np.random.default_rng(3)
    messages = [rng.bytes(n) for n in range(0, 700, 7)] + [b"", b"a", rng.bytes(513)]
    assert crc32c(messages) == [one(m) for m in messages]
    assert crc32c([b"123456789"]) == [0xE3069283]


def test_a_flipped_bit_in_a_leveldb_record_or_block_is_refused_never_served(tmp_path):
    """Every log record and table block carries a masked CRC-32C, as LevelDB writes it: a bit
    flipped in a .log record's body was served as data (a pixel 191 read as 63), and in a
    table it could be. Now each is refused naming the file; the clean files (real LevelDB's)
    pass the check."""
    folder = fixture_leveldb(tmp_path)
    clean = LevelDbFile(folder)
    values = [clean[i] for i in range(len(clean))]
    log, table = folder / "000004.log", folder / "000005.ldb"
    bodies, pos, good = [], 0, log.read_bytes()
    while pos + 7 <= len(good):                  # the clean log's records: header, then body
        length = int.from_bytes(good[pos + 4:pos + 6], "little")
        bodies += range(pos + 7, pos + 7 + length, 41)
        pos += 7 + length
    tried = 0
    for path, spots in ((log, bodies), (table, range(0, len(table.read_bytes()) - 48, 53))):
        good = path.read_bytes()
        for at in spots:
            damaged = bytearray(good)
            damaged[at] ^= 1 << (at % 8)
            path.write_bytes(bytes(damaged))
            try:
                db = LevelDbFile(folder)
            except AllconvError as err:
                assert str(err).startswith(f"{path}: not a readable LevelDB file: "), err
                tried += 1
                continue
            # a flip outside every block (the table's index padding) changes nothing read
            assert path == table and [db[i] for i in range(len(db))] == values, at
        path.write_bytes(good)
    assert tried > 300


def test_the_backend_must_name_the_database(tmp_path):
    """Caffe opens the source with data_param.backend (LEVELDB by default) and fails on the
    other kind."""
    folder = fixture_lmdb(tmp_path)
    with pytest.raises(AllconvError, match=r"is an LMDB database, but data_param.backend is "
                                           r"LEVELDB \(Caffe's default\): set backend: LMDB"):
        open_source(str(folder), pb.TEST, pb.DataParameter.LEVELDB)
    assert open_source(str(folder), pb.TEST, pb.DataParameter.LMDB).sample_shape == (3, 9, 9)
    (tmp_path / "level").mkdir()
    leveldb = fixture_leveldb(tmp_path / "level")
    with pytest.raises(AllconvError, match="is a LevelDB database, but data_param.backend is "
                                           "LMDB: set backend: LEVELDB"):
        open_source(str(leveldb), pb.TEST, pb.DataParameter.LMDB)
    assert len(open_source(str(leveldb), pb.TEST, pb.DataParameter.LEVELDB,
                           pb.TransformationParameter(crop_size=6)).db) == 40
    with pytest.raises(AllconvError, match=f"name the LMDB's folder, {folder}, as Caffe does"):
        open_source(str(folder / "data.mdb"), pb.TEST)
