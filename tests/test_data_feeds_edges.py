"""Edges of the data feeds that a mutation round (mutants44) found unpinned: Data-layer
sources (.npz, CIFAR folders, LMDBs of encoded Datums), Datum records holding both pixel
fields, and the ImageNet tree's order, mean cache and DataTransformer mean. Each test writes
its own tiny files; expected values follow Caffe (data_layer.cpp, data_transformer.cpp,
io.cpp) and the documented formats, not allconv's output."""
import numpy as np
import pytest
import torch
from PIL import Image

from runtime.data import imagenet, open_source
from runtime.data.datum import DatumFeed
from runtime.data.source import read_npz_source, save_npz_source
from runtime.errors import AllconvError
from runtime.proto import pb
from test_data import fake_split, make_cifar10_bin, write_bin
from test_datum_source import Records, png


def _lmdb(folder, *records) -> str:
    """An LMDB of Datum records keyed 00000, 00001, ... as convert_imageset writes them."""
    lmdb = pytest.importorskip("lmdb")      # the [lmdb] extra
    env = lmdb.open(str(folder), map_size=1 << 22, subdir=True)
    with env.begin(write=True) as txn:
        for i, record in enumerate(records):
            txn.put(b"%05d" % i, record.SerializeToString())
    env.close()
    return str(folder)


# ---------------------------------------------------------------- Data layer sources

def test_force_color_and_force_gray_reach_an_lmdbs_encoded_records(tmp_path):
    """transform_param.force_color decodes a grey PNG record in colour (3 equal channels),
    force_gray a colour one in grey (DecodeDatumToCVMat)."""
    rng = np.random.default_rng(0)
    grey, rgb = rng.integers(0, 256, (4, 5), np.uint8), rng.integers(0, 256, (4, 5, 3), np.uint8)
    path = _lmdb(tmp_path / "db", pb.Datum(data=png(grey), encoded=True, label=1),
                 pb.Datum(data=png(rgb), encoded=True, label=2))
    colour = open_source(path, 0, transform=pb.TransformationParameter(force_color=True))
    images, labels = colour(2)
    assert images.shape == (2, 3, 4, 5) and labels.tolist() == [1, 2]
    assert all(torch.equal(images[0, c], torch.from_numpy(grey)) for c in range(3))
    assert torch.equal(images[1], torch.from_numpy(rgb[:, :, ::-1].copy()).permute(2, 0, 1))
    grey_feed = open_source(path, 0, transform=pb.TransformationParameter(force_gray=True))
    assert grey_feed(2)[0].shape == (2, 1, 4, 5)


def test_a_crop_size_lets_an_lmdbs_records_differ_in_size(tmp_path):
    """Caffe's Data layer transforms each record alone: with crop_size its records may have
    several sizes (all at least the crop); without one a batch must be one size."""
    small, large = (pb.Datum(channels=1, height=s, width=s, data=bytes(range(s * s)), label=s)
                    for s in (3, 4))
    path = _lmdb(tmp_path / "db", small, large)
    images, labels = open_source(path, 0, transform=pb.TransformationParameter(crop_size=3))(2)
    assert [tuple(i.shape) for i in images] == [(1, 3, 3), (1, 4, 4)]
    with pytest.raises(AllconvError, match="a 4x4 image in a batch of 3x3 images"):
        open_source(path, 0, transform=pb.TransformationParameter())(2)


def test_npz_source_label_counts_are_checked_both_ways(tmp_path):
    data = np.zeros((3, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"need data \(N, C, H, W\) and labels \(N,\)"):
        save_npz_source(tmp_path / "a.npz", data, np.arange(2))
    np.savez(tmp_path / "b.npz", data=data, labels=np.arange(2))
    with pytest.raises(AllconvError, match=r"need labels \(N,\) for its 3 images, got \(2,\)"):
        read_npz_source(tmp_path / "b.npz")


def test_an_npz_source_of_no_images_is_refused(tmp_path):
    np.savez(tmp_path / "e.npz", data=np.zeros((0, 3, 2, 2), np.float32),
             labels=np.zeros(0, np.int64))
    with pytest.raises(AllconvError, match=r"need data \(N, C, H, W\) with N > 0"):
        open_source(str(tmp_path / "e.npz"), 0)


def test_an_unknown_phase_is_refused_for_every_source(tmp_path):
    save_npz_source(tmp_path / "s.npz", np.zeros((2, 1, 2, 2)), np.arange(2))
    with pytest.raises(AllconvError, match=r"unknown phase 2 \(0=TRAIN, 1=TEST\)"):
        open_source(str(tmp_path / "s.npz"), 2)


def test_a_folder_holding_cifar10_and_cifar100_is_refused(tmp_path):
    """Which release a Data layer reads must not depend on a search order."""
    rng = np.random.default_rng(1)
    make_cifar10_bin(tmp_path, rng)
    x, y = fake_split(rng, 2, 100)
    for split in ("train", "test"):
        write_bin(tmp_path / "cifar-100-binary" / f"{split}.bin", x, y, coarse=y % 20)
    with pytest.raises(AllconvError, match=r"holds CIFAR-10 and CIFAR-100: point it at one"):
        open_source(str(tmp_path), 1)


# ---------------------------------------------------------------- Datum records

def test_a_datum_with_data_and_float_data_is_read_from_data():
    """DataTransformer: ``has_uint8 = data.size() > 0`` decides; float_data is read only when
    there are no data bytes."""
    record = pb.Datum(channels=1, height=2, width=2, data=b"\x01\x02\x03\x04",
                      float_data=[9.0, 9.0, 9.0, 9.0])
    images, _ = DatumFeed(Records(record), "db")(1)
    assert images.dtype == torch.uint8 and images.flatten().tolist() == [1, 2, 3, 4]


# ---------------------------------------------------------------- ImageNet

def test_scan_lists_each_class_folders_files_in_sorted_order(tmp_path):
    """The order of Caffe's train.txt / val.txt: per class, the file names sorted (TEST reads
    them in this order)."""
    folder = tmp_path / "val" / "n01"
    folder.mkdir(parents=True)
    for name in ("c.JPEG", "a.JPEG", "b.jpg"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in imagenet.scan(tmp_path, "val").paths] == ["a.JPEG", "b.jpg",
                                                                       "c.JPEG"]


def _image_file(path, pixels: np.ndarray):
    Image.fromarray(pixels).save(path, format="PNG")   # lossless; decoded whatever its name


def test_the_mean_cache_keeps_square_and_short_side_means_apart(tmp_path):
    """The cached mean of one resize mode is not served for the other."""
    folder = tmp_path / "train" / "n01"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    _image_file(folder / "a.JPEG", rng.integers(0, 256, (40, 120, 3), np.uint8))
    tree = imagenet.scan(tmp_path, "train")
    square = imagenet.mean_image(tree, threads=1, cache=tmp_path / "cache")
    short = imagenet.mean_image(tree, threads=1, resize_mode="short-side",
                                cache=tmp_path / "cache")
    fresh = imagenet.mean_image(tree, threads=1, resize_mode="short-side",
                                cache=tmp_path / "other")
    assert not torch.equal(square, short)
    torch.testing.assert_close(short, fresh)


def test_a_mirrored_crop_subtracts_the_mean_image_at_each_pixels_source():
    """DataTransformer with a mean_file: out[h, w'] = x[h_off + h, w_off + w] - mean[same],
    w' = crop - 1 - w when mirrored: the mean is cropped and mirrored with the image."""
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 8, 8), np.uint8))
    mean = torch.from_numpy(rng.uniform(0, 255, (3, 8, 8)).astype(np.float32))
    offsets, flips = torch.tensor([[1, 2], [3, 0]]), torch.tensor([True, False])
    got = imagenet.transformed(images, offsets, flips, mean, crop=5)
    less = images.float() - mean
    torch.testing.assert_close(got[0], less[0, :, 1:6, 2:7].flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(got[1], less[1, :, 3:8, 0:5], rtol=0, atol=0)


def test_test_image_is_the_centre_crop_less_the_mean_in_bgr(tmp_path):
    """One file as the TEST feed gives it: resized to 256 (already), the centre 227 crop at
    (256 - 227) // 2 = 14, unmirrored, BGR, less mean_value 104 117 123."""
    rgb = np.random.default_rng(4).integers(0, 256, (256, 256, 3), np.uint8)
    _image_file(tmp_path / "one.JPEG", rgb)
    got = imagenet.test_image(tmp_path / "one.JPEG")
    bgr = torch.from_numpy(rgb[14:241, 14:241, ::-1].copy()).permute(2, 0, 1).float()
    torch.testing.assert_close(got, bgr - torch.tensor([104.0, 117, 123])[:, None, None],
                               rtol=0, atol=0)


# ---------------------------------------------------------------- Large All-CNN augmentation

def test_the_x_and_y_stretches_are_drawn_independently():
    """SparseConvNet's distort(): aff(0,0) += U(-0.2, 0.2); aff(1,1) += U(-0.2, 0.2), two
    draws."""
    from runtime.data.large_augment import LargeAugment, draw_geometry
    cfg = LargeAugment(stretch=0.2, flip=False, alpha=0.0, max_shift=0)
    a, _ = draw_geometry(20_000, cfg, torch.Generator().manual_seed(1))
    sx, sy = a[:, 0, 0], a[:, 1, 1]
    assert sy.min() >= 0.8 and sy.max() <= 1.2
    assert sy.var().item() == pytest.approx(0.4 ** 2 / 12, rel=0.05)
    assert abs(torch.corrcoef(torch.stack([sx, sy]))[0, 1].item()) < 0.05


def test_the_flip_mirrors_left_right_only():
    """distort()'s flip negates x (aff(0,0)); y is never mirrored."""
    from runtime.data.large_augment import LargeAugment, draw_geometry
    cfg = LargeAugment(stretch=0.0, flip=True, alpha=0.0, max_shift=0)
    a, _ = draw_geometry(2_000, cfg, torch.Generator().manual_seed(2))
    assert torch.all(a[:, 1, 1] == 1)
    assert set(a[:, 0, 0].tolist()) == {-1.0, 1.0}
    assert (a[:, 0, 0] < 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("key", ["max_shift", "stretch"])
def test_a_spec_table_refuses_a_bool_for_a_number(key):
    from runtime.data.large_augment import LargeAugment
    with pytest.raises(AllconvError, match=rf"t.toml: '{key}' must be (int|float), not True"):
        LargeAugment.from_table({key: True}, "t.toml")


def test_the_colour_shift_is_drawn_per_channel():
    """ColorShiftLayer's shift: N(0, 0.2) for each channel of each image (our reading, as the
    module states): on image pixels of 0 (grey after scaling), with no mixing or gradient,
    the colour step leaves the shift alone."""
    from runtime.data.large_augment import LargeAugment, colour
    cfg = LargeAugment(0.0, False, 0.0, 0, colour_shift=0.2, colour_mix=0.0, colour_gradient=0.0)
    n = 5_000
    framed, mask = torch.zeros(n, 3, 2, 2), torch.ones(n, 1, 2, 2)
    out = colour(framed, mask, torch.zeros(n, 2, 2, 2), cfg, torch.Generator().manual_seed(3))
    shift = out[:, :, 0, 0]
    assert torch.equal(out, shift[:, :, None, None].expand(n, 3, 2, 2))
    assert shift.std(0).tolist() == pytest.approx([0.2] * 3, rel=0.05)
    assert abs(torch.corrcoef(shift.T)[0, 1].item()) < 0.05      # channels drawn apart


# ---------------------------------------------------------------- ImageData's list

def _png_file(path, h, w):
    Image.fromarray(np.full((h, w, 3), 7 * h, np.uint8)).save(path)


def test_root_folder_is_a_prefix_of_each_listed_path(tmp_path):
    """ImageData reads root_folder + path as one string: a root_folder without a trailing
    slash prefixes the file name."""
    from runtime.data.image_list import ImageList
    _png_file(tmp_path / "img_a.png", 2, 3)
    (tmp_path / "list.txt").write_text("a.png 4\n")
    feed = ImageList(str(tmp_path / "list.txt"), root_folder=str(tmp_path / "img_"))
    images, labels = feed(1)
    assert images.shape == (1, 3, 2, 3) and labels.tolist() == [4.0]


def test_a_line_without_a_space_is_its_path_and_atoi_of_it(tmp_path):
    """Caffe: pos = find_last_of(' ') is npos, so the path is the whole line and the label
    atoi(line.substr(npos + 1)) = atoi(the whole line): '12.png' is label 12."""
    from runtime.data.image_list import read_list
    (tmp_path / "list.txt").write_text("12.png\nb.png 3\nx.png\n")
    assert read_list(str(tmp_path / "list.txt")) == [("12.png", 12), ("b.png", 3), ("x.png", 0)]


def test_atoi_skips_only_cs_whitespace():
    """glibc's isspace (C locale) is space, \\t \\n \\v \\f \\r; Python's \\s adds \\x1c-\\x1f and
    Unicode spaces, which stop atoi: the label is 0."""
    from runtime.data.image_list import atoi
    assert atoi(" \t\v\f\r7") == 7
    assert [atoi(c + "7") for c in ("\x1c", "\x1f", "\x85", "\xa0", "\u2003")] == [0] * 5


def test_the_first_image_read_after_rand_skip_shapes_the_top(tmp_path):
    """DataLayerSetUp reads lines_[lines_id_] after the skip to shape the top."""
    from runtime.data.image_list import ImageList
    _png_file(tmp_path / "a.png", 4, 4)
    _png_file(tmp_path / "b.png", 6, 6)
    (tmp_path / "list.txt").write_text("a.png 0\nb.png 1\n")
    skipped = set()
    for seed in range(16):      # seeds that skip no line and seeds that skip one
        feed = ImageList(str(tmp_path / "list.txt"), root_folder=str(tmp_path) + "/",
                         rand_skip=2, generator=torch.Generator().manual_seed(seed))
        skipped.add(feed.passes.cursor)
        side = (4, 6)[feed.passes.cursor]
        assert feed.sample_shape == (3, side, side) == tuple(feed(1)[0].shape[1:])
    assert skipped == {0, 1}
