"""runtime.data: CIFAR readers, md5 checks, download, GCN+ZCA, cache, sources, augmentation."""
import hashlib
import io
import pickle
import re
import struct
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.data import augment, cifar, preprocess
from runtime.data import get_dataset, open_source, prepared_cifar
from runtime.data.datasets import Dataset, register
from runtime.data.preprocess import Whitening, gcn_zca
from runtime.data.source import save_npz_source
from runtime.errors import AllconvError

SHARED_CIFAR10 = Path(__file__).resolve().parents[1] / ".." / "shared/data/cifar-10-batches-bin"


# ---- tiny files in the official formats ----

def fake_split(rng, n, classes=10):
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, classes, n)


def write_bin(path, images, labels, coarse=None):
    """Official binary records: [coarse byte,] label byte, 3072 pixel bytes (R, G, B planes)."""
    heads = [labels] if coarse is None else [coarse, labels]
    records = np.concatenate([np.stack(heads, 1).astype(np.uint8),
                              images.reshape(len(images), -1)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())


def py2_pickle(entry):
    """The bytes Python 2's cPickle (protocol 2) writes for a dict of str -> str / uint8 array /
    list of small ints, as in the official python release."""
    def string(s):
        b = s if isinstance(s, bytes) else s.encode("latin1")
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def array(a):
        rows, cols = a.shape
        return (b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85"
                + string("b") + b"\x87R(K\x01J" + struct.pack("<i", rows) + b"J"
                + struct.pack("<i", cols) + b"\x86cnumpy\ndtype\nq\x03" + string("u1")
                + b"K\x00K\x01\x87R(K\x03" + string("|")
                + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                + b"\x89" + string(a.tobytes()) + b"tb")

    out = b"\x80\x02}("
    for key, value in entry.items():
        out += string(key)
        if isinstance(value, str):
            out += string(value)
        elif isinstance(value, np.ndarray):
            out += array(value)
        else:
            out += b"](" + b"".join(b"K" + bytes([int(v)]) for v in value) + b"e"
    return out + b"u."


def make_cifar10_bin(root, rng, per_batch=3, test=4):
    folder = root / "cifar-10-batches-bin"
    train = [fake_split(rng, per_batch) for _ in range(5)]
    for i, (x, y) in enumerate(train, 1):
        write_bin(folder / f"data_batch_{i}.bin", x, y)
    test_x, test_y = fake_split(rng, test)
    write_bin(folder / "test_batch.bin", test_x, test_y)
    train_x, train_y = (np.concatenate(parts) for parts in zip(*train))
    return (train_x, train_y), (test_x, test_y)


def test_cifar10_binary_reads_back_exactly(tmp_path):
    (train_x, train_y), (test_x, test_y) = make_cifar10_bin(tmp_path, np.random.default_rng(0))
    images, labels = get_dataset("cifar10").load("train", tmp_path, verify=False)
    assert images.dtype == np.uint8 and labels.dtype == np.int64 and images.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(images, train_x)
    np.testing.assert_array_equal(labels, train_y)
    # the release folder itself works as data_dir too
    images, labels = get_dataset("cifar10").load("test", tmp_path / "cifar-10-batches-bin",
                                                 verify=False)
    np.testing.assert_array_equal(images, test_x)
    np.testing.assert_array_equal(labels, test_y)


def test_cifar100_binary_returns_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    x, fine = fake_split(rng, 5, 100)
    coarse = rng.integers(0, 20, 5)
    write_bin(tmp_path / "cifar-100-binary" / "test.bin", x, fine, coarse)
    images, labels = get_dataset("cifar100").load("test", tmp_path, verify=False)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, fine)


def test_cifar10_python_pickles_from_python2_read_back_exactly(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    parts = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = fake_split(rng, 2)
        entry = {"batch_label": "training batch", "labels": list(y), "data": x.reshape(2, -1)}
        (folder / name).write_bytes(py2_pickle(entry))
        parts.append((x, y))
    images, labels = get_dataset("cifar10").load("train", tmp_path, verify=False)
    np.testing.assert_array_equal(images, np.concatenate([p[0] for p in parts[:5]]))
    np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts[:5]]))
    images, labels = get_dataset("cifar10").load("test", tmp_path, verify=False)
    np.testing.assert_array_equal(images, parts[5][0])
    np.testing.assert_array_equal(labels, parts[5][1])


def test_cifar100_python_reads_fine_labels_from_py2_and_py3_pickles(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x, fine = fake_split(rng, 3, 100)
    coarse = list(rng.integers(0, 20, 3))
    (folder / "train").write_bytes(py2_pickle(
        {"data": x.reshape(3, -1), "coarse_labels": coarse, "fine_labels": list(fine)}))
    test_x, test_fine = fake_split(rng, 2, 100)
    (folder / "test").write_bytes(pickle.dumps(
        {b"data": test_x.reshape(2, -1), b"coarse_labels": [0, 1],
         b"fine_labels": [int(v) for v in test_fine]}, protocol=2))
    images, labels = get_dataset("cifar100").load("train", tmp_path, verify=False)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, fine)
    images, labels = get_dataset("cifar100").load("test", tmp_path, verify=False)
    np.testing.assert_array_equal(images, test_x)
    np.testing.assert_array_equal(labels, test_fine)


def test_pickle_with_other_objects_is_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "test").write_bytes(b"\x80\x02cos\nsystem\nU\x04trueq\x00\x85R.")
    with pytest.raises(AllconvError, match="refusing to load os.system"):
        get_dataset("cifar100").load("test", tmp_path, verify=False)


def test_a_pickle_naming_an_unknown_encoding_is_refused_naming_the_file(tmp_path):
    """A byte flipped in the encoding a protocol-2 pickle gives _codecs.encode ('latin1' as
    'lati1') was a LookupError, a traceback."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = pickle.dumps({b"data": b"x"}, protocol=2)
    assert data.count(b"latin1") == 1
    (folder / "test").write_bytes(data.replace(b"latin1", b"lati1x"))
    with pytest.raises(AllconvError, match="test is not a cifar-100-python file: unknown "
                                           "encoding: lati1x"):
        get_dataset("cifar100").load("test", tmp_path, verify=False)

def test_a_label_past_int64_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x, _ = fake_split(np.random.default_rng(4), 1)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": x.reshape(1, -1),
                                                      "labels": [2 ** 70]}, protocol=2))
    with pytest.raises(AllconvError, match="test_batch is not a cifar-10-batches-py file"):
        get_dataset("cifar10").load("test", tmp_path, verify=False)


@pytest.mark.parametrize("entry, said", [
    ({"data": "x"}, "it has no 'fine_labels' entry"),
    ({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [1]},
     "1 fine_labels for 2 images"),
    ({"data": np.zeros((2, 30), np.uint8), "fine_labels": [1, 2]},
     "its data is uint8 (2, 30), expected uint8 (N, 3072)"),
])
def test_a_cifar100_file_of_another_form_says_what_differs(tmp_path, entry, said):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "test").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(AllconvError, match=re.escape(
            f"{folder / 'test'} is not a cifar-100-python file: {said}")):
        get_dataset("cifar100").load("test", tmp_path, verify=False)


@pytest.mark.parametrize("name, classes, label", [("cifar10", 10, 10), ("cifar100", 100, 100)])
def test_a_label_outside_the_classes_names_the_file_and_record(tmp_path, name, classes, label):
    images, labels = fake_split(np.random.default_rng(5), 3, classes)
    labels[1] = label
    if name == "cifar10":
        path = tmp_path / "test_batch.bin"
        write_bin(path, images, labels)
    else:
        path = tmp_path / "test.bin"
        write_bin(path, images, labels, coarse=np.zeros(3, np.int64))
    with pytest.raises(AllconvError, match=rf"test(_batch)?.bin: record 1 has label {label}, "
                                           rf"outside CIFAR-{classes}'s {classes} classes"):
        get_dataset(name).load("test", tmp_path, verify=False)


def test_truncated_binary_file_is_reported(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(bytes(3073 + 10))
    with pytest.raises(AllconvError, match="not a whole number of 3073-byte records"):
        get_dataset("cifar10").load("test", tmp_path, verify=False)


# ---- verification and missing files ----

def test_corrupt_file_names_path_and_both_md5s(tmp_path):
    make_cifar10_bin(tmp_path, np.random.default_rng(4))
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(bytes(30_730_000))         # the official size, other bytes
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(AllconvError) as err:
        get_dataset("cifar10").load("test", tmp_path)
    message = str(err.value)
    assert str(path) in message and actual in message
    assert "803d5f7f4d78ea53de84dbe85f74fb6d" in message and "\n" not in message
    assert message.endswith("delete it and fetch it again; data made by hand: give --no-verify")


def test_a_file_cut_short_is_named_by_its_size_before_any_hashing(tmp_path, monkeypatch):
    """Found by a new user: replicate counted a cut-short release's images and refused the
    run's length ("0.003 epochs of 50 images is less than one iteration") before the md5
    check said the files were not the official ones."""
    from harness.datasets import train_size
    from harness.specs import load_tables
    make_cifar10_bin(tmp_path, np.random.default_rng(4))
    monkeypatch.setattr(cifar, "file_md5", lambda path: pytest.fail("hashed"))
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    with pytest.raises(AllconvError, match=f"^{path} is not the official file: "
                                           f"{path.stat().st_size} bytes, expected 30730000 "
                                           r"\(official cifar-10-binary.tar.gz\); a corrupt"):
        get_dataset("cifar10").load("test", tmp_path)
    spec = load_tables()["table3"][0]
    with pytest.raises(AllconvError, match="data_batch_1.bin is not the official file: "):
        train_size(spec, str(tmp_path))
    assert train_size(spec, str(tmp_path), verify=False) == 15


def test_cifar100_binary_without_published_md5_is_checked_by_size(tmp_path):
    x, y = fake_split(np.random.default_rng(5), 2, 100)
    write_bin(tmp_path / "cifar-100-binary" / "test.bin", x, y, y // 5)
    with pytest.raises(AllconvError, match="6148 bytes, expected 30740000"):
        get_dataset("cifar100").load("test", tmp_path)


def test_missing_files_message_lists_files_and_folders(tmp_path):
    with pytest.raises(AllconvError) as err:
        get_dataset("cifar10").load("train", tmp_path / "nowhere")
    message = str(err.value)
    assert ", ".join(f"data_batch_{i}.bin" for i in range(1, 6)) in message
    assert ", ".join(f"data_batch_{i}" for i in range(1, 6)) + " (from" in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-bin") in message
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message
    assert "\n" not in message


def test_a_release_folder_missing_a_file_names_it_for_replicate_and_a_data_layer(tmp_path):
    """Four of five train files: the message listed all five to put somewhere, and a Data
    layer over the folder said it held no CIFAR files at all (mutation fuzzer)."""
    from test_harness import write_cifar10_bin
    from runtime.net import Net
    from runtime.proto import pb
    folder = write_cifar10_bin(tmp_path, 10, 5) / "cifar-10-batches-bin"
    (folder / "data_batch_3.bin").unlink()
    lacks = re.escape(f"{folder} lacks data_batch_3.bin (from https://www.cs.toronto.edu/"
                      "~kriz/cifar-10-binary.tar.gz); or put data_batch_1")
    with pytest.raises(AllconvError, match=lacks):
        get_dataset("cifar10").load("train", folder)
    with pytest.raises(AllconvError, match=r"^layer 'd' \(Data\): CIFAR-10 train files not "
                                           rf"found in {re.escape(str(folder))}: {lacks}"):
        Net(f'layer {{ name: "d" type: "Data" top: "x" top: "y" data_param {{ source: '
            f'"{folder}" batch_size: 2 }} }}', pb.TRAIN)

    # train/ and test/ subfolders (a common database layout) are not part of CIFAR-100's
    # python release, whose files have those names (before: "not a file but a folder")
    other = tmp_path / "db"
    for name in ("train", "test"):
        (other / name).mkdir(parents=True)
    with pytest.raises(AllconvError, match=r"^layer 'd' \(Data\): data source .*db is a folder "
                                           r"holding no database"):
        Net(f'layer {{ name: "d" type: "Data" top: "x" top: "y" data_param {{ source: '
            f'"{other}" batch_size: 2 }} }}', pb.TRAIN)


def test_a_folder_of_the_other_release_is_named(tmp_path):
    """Found by a new user: `replicate table4 --data .../cifar-10-batches-bin` was told to
    put CIFAR-100's files into CIFAR-10's folder; it now hears what the folder holds."""
    from test_harness import write_cifar10_bin
    folder = write_cifar10_bin(tmp_path, 10, 5)
    with pytest.raises(AllconvError, match=re.escape(
            f"CIFAR-100 train files not found in {folder} (it holds the CIFAR-10 release; for "
            "rows of both, give a folder that holds cifar-10-batches-bin and cifar-100-binary)")):
        get_dataset("cifar100").load("train", folder)


@pytest.mark.parametrize("make, kind", [(lambda p: p.mkdir(), "a folder"),
                                         (lambda p: p.symlink_to("/dev/null"),
                                          "a device or other special file")])
def test_a_split_file_that_is_not_a_file_is_named(tmp_path, make, kind):
    """Found by mutation: a batch file that is a folder, or a link to /dev/null, was "not
    found", with the advice to download the release."""
    from test_harness import write_cifar10_bin
    folder = write_cifar10_bin(tmp_path, 10, 5)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.unlink()
    make(path)
    with pytest.raises(AllconvError, match=re.escape(
            f"{path}: not a file but {kind}; the CIFAR-10 train files must be files")):
        get_dataset("cifar10").load("train", folder)


def test_no_data_dir_reads_the_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _, (test_x, _) = make_cifar10_bin(tmp_path / "allconv", np.random.default_rng(6))
    images, _ = get_dataset("cifar10").load("test", verify=False)
    np.testing.assert_array_equal(images, test_x)


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="no shared CIFAR-10 copy")
def test_shared_cifar10_is_the_official_release():
    counts = {}
    for split in ("train", "test"):
        release, paths = get_dataset("cifar10").find(split, SHARED_CIFAR10)
        assert [cifar.checked_md5(release, p) for p in paths] == \
            [cifar.OFFICIAL[f"cifar-10-batches-bin/{p.name}"][0] for p in paths]
        images, labels = cifar.read_release(release, paths)
        assert images.shape[1:] == (3, 32, 32)
        counts[split] = np.bincount(labels, minlength=10)
    assert (counts["train"] == 5000).all() and (counts["test"] == 1000).all()
    names = (SHARED_CIFAR10 / "batches.meta.txt").read_text().split()
    assert list(get_dataset("cifar10").class_names) == names
    source = open_source(str(SHARED_CIFAR10), 1)
    assert source.num_samples == 10000 and source.sample_shape == (3, 32, 32)


# ---- download ----

def tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_from_file_url_extracts_the_release(tmp_path):
    source = tmp_path / "src"
    (train_x, train_y), _ = make_cifar10_bin(source, np.random.default_rng(7))
    folder = source / "cifar-10-batches-bin"
    md5 = tarball(tmp_path / "c10.tar.gz",
                  {f"cifar-10-batches-bin/{p.name}": p.read_bytes() for p in folder.iterdir()})
    dest = tmp_path / "cache"
    cifar.download(get_dataset("cifar10").releases, dest, url=(tmp_path / "c10.tar.gz").as_uri(),
                   md5=md5)
    images, labels = get_dataset("cifar10").load("train", dest, verify=False)
    np.testing.assert_array_equal(images, train_x)
    np.testing.assert_array_equal(labels, train_y)
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-bin"]   # archive removed


def test_download_with_wrong_md5_is_refused(tmp_path):
    md5 = tarball(tmp_path / "a.tar.gz", {"cifar-10-batches-bin/x": b"x"})
    with pytest.raises(AllconvError) as err:
        cifar.download(get_dataset("cifar10").releases, tmp_path / "d",
                       url=(tmp_path / "a.tar.gz").as_uri())
    assert md5 in str(err.value) and "c32a1d4ab5d03f1284b67883e8d87530" in str(err.value)


def test_archive_escaping_its_folder_is_refused(tmp_path):
    md5 = tarball(tmp_path / "evil.tar.gz", {"../evil.txt": b"x"})
    with pytest.raises(AllconvError, match="cannot extract"):
        cifar.download(get_dataset("cifar10").releases, tmp_path / "d",
                       url=(tmp_path / "evil.tar.gz").as_uri(), md5=md5)
    assert not (tmp_path / "d" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_offline_without_data_names_url_and_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar, "urlopen", offline)
    with pytest.raises(AllconvError) as err:
        get_dataset("cifar10").load("test")
    message = str(err.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message
    assert str(tmp_path / "allconv" / "cifar-10-batches-bin") in message
    assert "test_batch.bin" in message and "data_batch_5.bin" in message and "--data" in message


def test_class_names():
    assert get_dataset("cifar10").class_names[3] == "cat"
    names = get_dataset("cifar100").class_names
    assert len(names) == 100 == len(set(names)) and list(names) == sorted(names)
    with pytest.raises(AllconvError, match="unknown dataset 'mnist': expected one of cifar10, "
                                           "cifar100, imagenet"):
        get_dataset("mnist")


def test_the_registry_refuses_a_second_entry_of_a_name():
    with pytest.raises(AllconvError, match="^dataset 'cifar10' is already registered$"):
        register(Dataset("cifar10", "another", 10, ("train", "test")))
    assert get_dataset("cifar10").title == "CIFAR-10"


def test_imagenet_has_no_cifar_reader_and_no_whitening(tmp_path):
    with pytest.raises(AllconvError, match="imagenet is an ImageFolder tree, not a CIFAR release"):
        get_dataset("imagenet").load("train", tmp_path)
    with pytest.raises(AllconvError, match="imagenet has no GCN\\+ZCA whitening; the whitened "
                                           "datasets: cifar10, cifar100"):
        prepared_cifar("imagenet", tmp_path)


# ---- GCN + ZCA ----

def reference_gcn_zca(train, test, scale=55.0, filter_bias=0.1):
    """pylearn2's formulas written out in numpy, float64."""
    def gcn(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        norms = np.sqrt((x ** 2).sum(axis=1)) / scale
        norms[norms < 1e-8] = 1.0
        return x / norms[:, None]

    x = gcn(train)
    mean = x.mean(axis=0)
    cov = (x - mean).T @ (x - mean) / len(x) + filter_bias * np.eye(x.shape[1])
    eigs, vecs = np.linalg.eigh(cov)
    matrix = vecs @ np.diag(1 / np.sqrt(eigs)) @ vecs.T
    return (x - mean) @ matrix, (gcn(test) - mean) @ matrix, mean, matrix


def test_gcn_matches_hand_computation():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]], dtype=torch.float64)
    out = preprocess.global_contrast_normalize(x)
    # row 0: mean 2.5, centred (-1.5, -0.5, 0.5, 1.5), norm sqrt(5)
    # row 1: centred to 0, norm 0 < min_divisor 1e-8 -> divisor 1
    expected = torch.tensor([[-1.5, -0.5, 0.5, 1.5], [0, 0, 0, 0]], dtype=torch.float64)
    expected *= 55 / 5 ** 0.5
    torch.testing.assert_close(out, expected)
    assert x[0, 0] == 1.0   # input untouched


def test_zca_whitens_correlated_data():
    gen = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(4000, 6, generator=gen, dtype=torch.float64) @ mixing + 3.0
    mean, matrix = preprocess.fit_zca(x, filter_bias=1e-9)
    white = (x - mean) @ matrix
    torch.testing.assert_close(white.T @ white / len(x), torch.eye(6, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(matrix, matrix.T)


def test_gcn_zca_matches_numpy_reference():
    rng = np.random.default_rng(8)
    base = rng.integers(0, 256, (300, 3, 4, 4))
    train = np.clip(base + rng.integers(-20, 20, (300, 1, 1, 1)), 0, 255).astype(np.uint8)
    test = rng.integers(0, 256, (7, 3, 4, 4), dtype=np.uint8)
    stages = []
    train_w, test_w, whitening = preprocess.gcn_zca(train, test, device="cpu",
                                                    stage=stages.append)
    assert stages == ["global contrast normalisation", "fitting ZCA", "whitening"]
    ref_train, ref_test, ref_mean, ref_matrix = reference_gcn_zca(train, test)
    assert train_w.dtype == test_w.dtype == np.float32 and train_w.shape == train.shape
    np.testing.assert_allclose(train_w.reshape(300, -1), ref_train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test_w.reshape(7, -1), ref_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whitening.mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whitening.matrix, ref_matrix, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(whitening(train, device="cpu"), train_w)


def test_prepared_cifar_cache_hit_skips_recomputation(tmp_path, monkeypatch):
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(9))
    calls = []

    def fake_gcn_zca(train, test, device=None, stage=None):
        calls.append(len(train))
        return (train / 255).astype(np.float32), (test / 255).astype(np.float32), \
            preprocess.Whitening(np.zeros(2), np.eye(2))

    monkeypatch.setattr(preprocess, "gcn_zca", fake_gcn_zca)
    kwargs = dict(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", verify=False)
    first = prepared_cifar("cifar10", **kwargs)
    second = prepared_cifar("cifar10", **kwargs)
    assert calls == [15]
    for a, b in zip(first[:4], second[:4]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.whitening.matrix, second.whitening.matrix)
    assert first.train_labels.dtype == np.int64 and first.test_images.shape == (4, 3, 32, 32)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    write_bin(tmp_path / "data" / "cifar-10-batches-bin" / "test_batch.bin",
              *fake_split(np.random.default_rng(10), 4))
    prepared_cifar("cifar10", **kwargs)
    assert calls == [15, 15]   # changed input file -> new cache entry


@pytest.mark.parametrize("name, size", [("test_images.npy", 1000), ("train_labels.npy", 50),
                                        ("test_labels.npy", 0), ("whitening.npz", 30)])
def test_a_damaged_cache_entry_is_one_line_saying_to_delete_it(tmp_path, monkeypatch, name,
                                                               size):
    """Before: numpy's ValueError as a traceback (a file cut short), or no advice."""
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(9))
    monkeypatch.setattr(preprocess, "gcn_zca", lambda train, test, device=None, stage=None: (
        (train / 255).astype(np.float32), (test / 255).astype(np.float32),
        preprocess.Whitening(np.zeros(2), np.eye(2))))
    kwargs = dict(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", verify=False)
    prepared_cifar("cifar10", **kwargs)
    entry = preprocess.prepared_entry("cifar10", **kwargs)
    damaged = entry / name
    if size:
        damaged.write_bytes(damaged.read_bytes()[:size])
    else:
        damaged.unlink()
    advice = f"; delete the cache entry {entry} to make it again from the CIFAR files"
    with pytest.raises(AllconvError, match=f"^{re.escape(str(damaged))}: .*{re.escape(advice)}$"):
        prepared_cifar("cifar10", **kwargs)
    if name == "test_images.npy":           # memory-mapped, as visualize reads it
        with pytest.raises(AllconvError, match=re.escape(advice)):
            preprocess.prepared_images(entry, "test")


# ---- Data-layer sources ----

def test_npz_source_reads_in_order_and_wraps(tmp_path):
    data = np.arange(5 * 2 * 1 * 1, dtype=np.float64).reshape(5, 2, 1, 1)
    save_npz_source(tmp_path / "s.npz", data, [4, 3, 2, 1, 0])
    source = open_source(str(tmp_path / "s.npz"), 0)
    assert source.sample_shape == (2, 1, 1) and source.num_samples == 5
    batches = [source(3) for _ in range(3)]
    assert [b[1].tolist() for b in batches] == [[4, 3, 2], [1, 0, 4], [3, 2, 1]]
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.float32
    torch.testing.assert_close(batches[1][0], torch.tensor(data[[3, 4, 0]], dtype=torch.float32))


def test_cifar_folder_source_serves_raw_pixels_by_phase(tmp_path):
    (train_x, train_y), (test_x, _) = make_cifar10_bin(tmp_path, np.random.default_rng(11))
    train = open_source(str(tmp_path), 0)
    data, labels = train(4)
    assert train.num_samples == 15
    torch.testing.assert_close(data, torch.tensor(train_x[:4], dtype=torch.float32))
    torch.testing.assert_close(labels, torch.tensor(train_y[:4], dtype=torch.float32))
    assert open_source(str(tmp_path), 1).num_samples == len(test_x)


def test_bad_sources_name_the_source(tmp_path):
    for source in (tmp_path / "missing.npz", tmp_path / "x.lmdb"):
        with pytest.raises(AllconvError, match=str(source)):
            open_source(str(source), 0)
    with pytest.raises(AllconvError, match=f"{tmp_path} is a folder holding no database "
                       r"\(an LMDB's data.mdb, a LevelDB's CURRENT and MANIFEST\) and no CIFAR "
                       "train files"):
        open_source(str(tmp_path), 0)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(AllconvError, match="bad.npz"):
        open_source(str(tmp_path / "bad.npz"), 1)
    # found by a new user: gen-prototxt's default source of Large All-CNN, which nothing writes
    with pytest.raises(AllconvError, match="cifar10_large_train.npz: no such file; no command "
                                           "writes Large All-CNN's data: `replicate large-all"):
        open_source(str(tmp_path / "cifar10_large_train.npz"), 0)


def test_a_folder_with_a_current_file_alone_is_no_leveldb(tmp_path):
    """Nor is the folder and LOCK file that Caffe's failed LevelDB open leaves behind."""
    (tmp_path / "CURRENT").write_bytes(b"")
    (tmp_path / "LOCK").write_bytes(b"")
    with pytest.raises(AllconvError, match=f"^data source {tmp_path} is a folder holding no "
                       "database .* and no CIFAR test files"):
        open_source(str(tmp_path), 1)


# ---- augmentation ----

def shifted(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape[1:]
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[:, y, x] = image[:, y - dy, x - dx]
    return out


def test_flips_are_exact_mirrors():
    images = torch.randn(4, 3, 8, 6)
    flips = torch.tensor([1, 0, 1, 0]).bool()
    out = augment.apply(images, torch.zeros(4, 2, dtype=torch.long), flips)
    torch.testing.assert_close(out[0::2], images[0::2].flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(out[1::2], images[1::2], rtol=0, atol=0)


def test_translations_shift_content_by_the_drawn_amounts():
    images = torch.randn(6, 2, 7, 9)
    shifts = torch.tensor([[0, 0], [5, -5], [-3, 2], [1, 4], [-5, -5], [9, 0]])
    flips = torch.tensor([0, 0, 1, 0, 1, 0]).bool()
    out = augment.apply(images, shifts, flips).numpy()
    for i, ((dy, dx), flip) in enumerate(zip(shifts.tolist(), flips.tolist())):
        source = images[i].flip(-1).numpy() if flip else images[i].numpy()
        np.testing.assert_array_equal(out[i], shifted(source, dy, dx))
    assert not out[5].any()   # shifted beyond the image: all fill


def test_augment_draws_flips_and_shifts_up_to_five():
    images = torch.randn(1000, 3, 32, 32)
    out = augment.augment(images, torch.Generator().manual_seed(1))
    shifts, flips = augment.draw(1000, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    torch.testing.assert_close(out, augment.apply(images, shifts, flips), rtol=0, atol=0)
    assert shifts.min() == -5 and shifts.max() == 5 and 400 < int(flips.sum()) < 600


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    images = torch.randn(64, 3, 32, 32)
    shifts, flips = augment.draw(64, torch.Generator(device="cuda").manual_seed(0))
    on_gpu = augment.apply(images.cuda(), shifts, flips)
    torch.testing.assert_close(on_gpu.cpu(), augment.apply(images, shifts.cpu(), flips.cpu()),
                               rtol=0, atol=0)
    rng = np.random.default_rng(12)
    train, test = (rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8) for n in (200, 5))
    for a, b in zip(preprocess.gcn_zca(train, test, device="cuda")[:2],
                    preprocess.gcn_zca(train, test, device="cpu")[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cifar100_python_release_goes_through_the_cifar10_whitening_path(tmp_path, monkeypatch):
    """A tiny official CIFAR-100 python release (train, test, meta) -> prepared_cifar: GCN on
    every image, the ZCA fit on the training split, fine labels kept."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    splits = {name: fake_split(rng, n, 100) for name, n in (("train", 5), ("test", 3))}
    for name, (x, fine) in splits.items():
        (folder / name).write_bytes(pickle.dumps(
            {b"filenames": [b"x.png"] * len(x), b"batch_label": name.encode(),
             b"fine_labels": [int(v) for v in fine],
             b"coarse_labels": [int(v) // 5 for v in fine], b"data": x.reshape(len(x), -1)}))
    (folder / "meta").write_bytes(pickle.dumps(
        {b"fine_label_names": [n.encode() for n in get_dataset("cifar100").class_names],
         b"coarse_label_names": [b"c%d" % i for i in range(20)]}))
    fitted = []

    def identity_zca(x, filter_bias=preprocess.FILTER_BIAS):   # the 3072x3072 eigh is slow
        fitted.append(x.shape)
        return torch.zeros(x.shape[1], dtype=x.dtype), torch.eye(x.shape[1], dtype=x.dtype)

    monkeypatch.setattr(preprocess, "fit_zca", identity_zca)
    prepared = prepared_cifar("cifar100", tmp_path, cache_dir=tmp_path / "cache", verify=False,
                              device="cpu")
    assert fitted == [(5, 3072)]
    np.testing.assert_array_equal(prepared.train_labels, splits["train"][1])
    np.testing.assert_array_equal(prepared.test_labels, splits["test"][1])
    flat = prepared.test_images.reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), preprocess.GCN_SCALE, rtol=1e-5)
    np.testing.assert_allclose(flat.mean(1), 0, atol=1e-4)


def test_prepared_cifar_reports_its_stages_in_order(tmp_path, monkeypatch):
    """allconv-prep-cifar's progress: every stage of a cache miss (gcn_zca reports its own
    three, see test_gcn_zca_matches_numpy_reference), then only the cheap ones on a hit."""
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(9))
    seen, given = [], []

    def fake_gcn_zca(train, test, device=None, stage=None):
        given.append(stage)
        return (train / 255).astype(np.float32), (test / 255).astype(np.float32), \
            preprocess.Whitening(np.zeros(2), np.eye(2))

    monkeypatch.setattr(preprocess, "gcn_zca", fake_gcn_zca)
    kwargs = dict(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", verify=False,
                  stage=seen.append)
    prepared_cifar("cifar10", **kwargs)
    assert seen == ["md5 sums of the files", "reading the release", "writing the cache",
                    "loading the cache"] and given == [seen.append]
    seen.clear()
    prepared_cifar("cifar10", **kwargs)
    assert seen == ["md5 sums of the files", "loading the cache"]


def test_prepared_cifar_shows_its_stages_on_a_terminal_by_default(tmp_path, monkeypatch,
                                                                   capsys):
    """Every caller (replicate, export-onnx --with-preprocessing, visualize) sat silent for
    the minute a cold cache's whitening takes; a log still gets nothing."""
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(9))
    kwargs = dict(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", verify=False)
    prepared_cifar("cifar10", **kwargs)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    prepared_cifar("cifar10", **kwargs)
    err = capsys.readouterr().err
    assert "md5 sums of the files" in err and "loading the cache" in err
    assert f"{len(preprocess.STAGES)}/{len(preprocess.STAGES)} stages" in err


def test_a_data_folder_that_is_a_file_or_lacks_the_files_says_where_they_go(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(AllconvError, match=r"data_batch_1.bin is a file: give the folder that "
                                           r"holds the CIFAR-10 files, or the folder above it"):
        get_dataset("cifar10").load("train", tmp_path / "data_batch_1.bin")
    with pytest.raises(AllconvError) as err:
        get_dataset("cifar10").load("test", tmp_path)
    assert f"test_batch.bin (from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) into " \
           f"{tmp_path} or {tmp_path / 'cifar-10-batches-bin'}" in str(err.value)


def test_prep_cifar_writes_lmdbs_that_the_data_layer_reads_as_the_npz(tmp_path, monkeypatch,
                                                                       capsys):
    """allconv-prep-cifar --lmdb: the whitened splits as Caffe Datum records (float_data,
    keys 00000...), read back equal to the .npz sources; a second run replaces them."""
    from runtime.cli_support import run_cli
    from runtime.data import cli as prep_cli
    from runtime.data.lmdb_file import LmdbFile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(4))
    args = ["--data", str(tmp_path / "data"), "--no-verify", "--out", str(tmp_path / "out"),
            "--lmdb"]
    for _ in range(2):
        assert run_cli(prep_cli.main, "allconv-prep-cifar", args) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out' / 'cifar10_gcn_zca_test_lmdb'}: 4 Datum records" in out
    for split, phase in (("train", 0), ("test", 1)):
        npz = open_source(str(tmp_path / "out" / f"cifar10_gcn_zca_{split}.npz"), phase)
        db = tmp_path / "out" / f"cifar10_gcn_zca_{split}_lmdb"
        lmdb = open_source(str(db), phase, backend=1)
        (images, labels), (read, read_labels) = npz(npz.num_samples), lmdb(npz.num_samples)
        assert torch.equal(read, images) and torch.equal(read_labels, labels)
        assert LmdbFile(db).key(0) == b"00000"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cifar10_gcn_zca_test.npz", "cifar10_gcn_zca_test_lmdb",
        "cifar10_gcn_zca_train.npz", "cifar10_gcn_zca_train_lmdb"]


def test_an_lmdb_replaces_only_an_lmdb(tmp_path):
    from runtime.data.lmdb_file import write_datum_lmdb
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "notes.txt").write_text("mine")
    with pytest.raises(AllconvError, match=r"db: there already, and not an LMDB to replace"):
        write_datum_lmdb(tmp_path / "db", np.zeros((1, 3, 2, 2), np.float32), [0])
    assert (tmp_path / "db" / "notes.txt").read_text() == "mine"


def test_writing_an_lmdb_without_the_package_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    """Before the whitening: allconv-prep-cifar --lmdb writes nothing without it."""
    from runtime.cli_support import run_cli
    from runtime.data import cli as prep_cli
    from runtime.data.lmdb_file import write_datum_lmdb
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(AllconvError, match=r"needs the lmdb package: pip install -e \".\[lmdb\]\""):
        write_datum_lmdb(tmp_path / "db", np.zeros((1, 3, 2, 2), np.float32), [0])
    make_cifar10_bin(tmp_path / "data", np.random.default_rng(4))
    assert run_cli(prep_cli.main, "allconv-prep-cifar", [
        "--data", str(tmp_path / "data"), "--no-verify", "--out", str(tmp_path / "out"),
        "--lmdb"]) == 2
    assert "needs the lmdb package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()          # no whitening, nothing written
    with pytest.raises(AllconvError, match=r"allconv-prep-cifar --lmdb writes it"):
        open_source(str(tmp_path / "cifar10_gcn_zca_train_lmdb"), 0, backend=1)


def test_an_lmdb_goes_to_a_path_of_any_bytes(tmp_path):
    """Found by mutation: a folder name that is not UTF-8 gave a traceback from lmdb.open."""
    import os
    from runtime.data.lmdb_file import LmdbFile, write_datum_lmdb
    folder = tmp_path / os.fsdecode(b"out_\xff")
    write_datum_lmdb(folder, np.ones((2, 3, 2, 2), np.float32), [1, 2])
    assert len(LmdbFile(folder)) == 2


def test_an_lmdb_write_clears_dead_writers_partial_folders_and_others_may_read_it(
        tmp_path, monkeypatch):
    """A killed writer's partial LMDB (its pid in the name) goes at the next write of the
    folder; the new one is readable by others (mkdtemp's own mode is 0700)."""
    import os
    from runtime.data import lmdb_file
    dead = 2**22 + 1
    left = tmp_path / f".db.{dead}.k2.partial"
    left.mkdir()
    (left / "data.mdb").write_bytes(b"half")
    seen = []
    real_open = lmdb_file.lmdb_package().open

    def open_(path, **options):      # the writer's own partial folder, as it writes
        seen.append((os.fsdecode(path), os.stat(path).st_mode & 0o777))
        return real_open(path, **options)
    monkeypatch.setattr(lmdb_file.lmdb_package(), "open", open_)
    lmdb_file.write_datum_lmdb(tmp_path / "db", np.ones((2, 3, 2, 2), np.float32), [1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
    assert Path(seen[0][0]).name.startswith(f".db.{os.getpid()}.") and seen[0][1] == 0o755
    assert (tmp_path / "db").stat().st_mode & 0o777 == 0o755


def test_a_whitening_normalises_to_its_own_scale():
    # preprocess-08: GCN at the Whitening's scale (pylearn2's scale), not the default 55
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 2, 2)).astype(np.uint8)
    out = Whitening(np.zeros(12), np.eye(12), scale=10.0)(images)
    assert np.allclose(np.sqrt((out.reshape(4, -1).astype(np.float64) ** 2).sum(1)), 10.0)


def test_gcn_zca_whitens_test_images_as_its_train_images():
    # preprocess-09: the returned Whitening keeps gcn_zca's scale, so the test set (and any
    # image later) is whitened as the train set was
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (40, 3, 2, 2)).astype(np.uint8)
    test = rng.integers(0, 256, (5, 3, 2, 2)).astype(np.uint8)
    white_train, white_test, whitening = gcn_zca(train, test, scale=10.0)
    assert whitening.scale == 10.0
    np.testing.assert_allclose(whitening(train), white_train, atol=1e-5)
