"""Edges of the data readers that a mutation round (mutants44) found unpinned: the CIFAR
release search and checks, OpenCV's decoding limits, the short-side ImageNet resize, and
pylearn2's GCN details. Each test writes its own tiny files; the expected values come from the
file formats, OpenCV's / pylearn2's documented behaviour, not from allconv's output."""
import io
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.data import cifar, jpeg, preprocess
from runtime.data.imread import decode_unchanged, read_image
from runtime.errors import AllconvError
from test_data import fake_split, make_cifar10_bin, write_bin


# ---------------------------------------------------------------- CIFAR releases

def test_a_negative_label_in_a_python_pickle_names_the_file_and_record(tmp_path):
    """CIFAR labels are 0..classes-1; a hand-made pickle with -1 is refused, not served."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x, _ = fake_split(np.random.default_rng(0), 3)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": x.reshape(3, -1), "labels": [1, -1, 2]}, f)
    with pytest.raises(AllconvError, match=r"test_batch: record 1 has label -1, outside"):
        cifar.load(cifar.CIFAR10_RELEASES, "test", tmp_path, verify=False)


def test_an_empty_binary_file_is_refused(tmp_path):
    """A 0-byte test_batch.bin holds no record: an error naming it, never an empty split."""
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(AllconvError, match=r"test_batch.bin is not a cifar-10-batches-bin file: "
                                           r"its 0 bytes are not a whole number of 3073-byte"):
        cifar.load(cifar.CIFAR10_RELEASES, "test", tmp_path, verify=False)


def test_the_binary_release_is_read_before_the_python_one(tmp_path):
    """A folder holding both official releases is read from the binary one (nothing is
    unpickled), as the module documents."""
    rng = np.random.default_rng(1)
    _, (bin_x, bin_y) = make_cifar10_bin(tmp_path, rng)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    py_x, py_y = fake_split(rng, 2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": py_x.reshape(2, -1), "labels": list(py_y)}, f)
    images, labels = cifar.load(cifar.CIFAR10_RELEASES, "test", tmp_path, verify=False)
    np.testing.assert_array_equal(images, bin_x)
    np.testing.assert_array_equal(labels, bin_y)


def test_the_release_folder_is_searched_before_the_folder_given(tmp_path):
    """root/cifar-10-batches-bin comes first, then root itself (``_folders``)."""
    rng = np.random.default_rng(2)
    _, (inner_x, _) = make_cifar10_bin(tmp_path, rng)
    outer_x, outer_y = fake_split(rng, 2)
    write_bin(tmp_path / "test_batch.bin", outer_x, outer_y)
    for i in range(1, 6):
        write_bin(tmp_path / f"data_batch_{i}.bin", outer_x, outer_y)
    images, _ = cifar.load(cifar.CIFAR10_RELEASES, "test", tmp_path, verify=False)
    np.testing.assert_array_equal(images, inner_x)


def test_cifar100_binary_is_verified_by_its_size_alone(tmp_path):
    """No md5 of cifar-100-binary's members is published: verify accepts a test.bin of the
    official 30,740,000 bytes (10,000 records of 2 + 3072 bytes) and refuses one record more."""
    path = tmp_path / "cifar-100-binary" / "test.bin"
    path.parent.mkdir()
    path.write_bytes(bytes(30_740_000))
    images, labels = cifar.load(cifar.CIFAR100_RELEASES, "test", tmp_path, verify=True)
    assert images.shape == (10_000, 3, 32, 32) and labels.shape == (10_000,)
    path.write_bytes(bytes(30_740_000 + 3074))
    with pytest.raises(AllconvError, match=r"test.bin is not the official file: 30743074 bytes, "
                                           r"expected 30740000"):
        cifar.load(cifar.CIFAR100_RELEASES, "test", tmp_path, verify=True)


def test_an_unknown_split_is_refused_by_name(tmp_path):
    with pytest.raises(AllconvError, match=r"unknown split 'val': expected one of train, test"):
        cifar.load(cifar.CIFAR10_RELEASES, "val", tmp_path, verify=False)


# ---------------------------------------------------------------- OpenCV decoding

def test_a_side_of_exactly_2_to_the_20_pixels_is_read():
    """OpenCV's validateInputImageSize asserts width <= CV_IO_MAX_IMAGE_WIDTH (1 << 20):
    the limit itself is allowed; one more is refused."""
    side = 1 << 20
    got = read_image(io.BytesIO(b"P5\n%d 1\n255\n" % side + bytes(range(256)) * (side // 256)),
                     False, name="wide")
    assert got.shape == (1, 1, side) and got[0, 0, 255].item() == 255


def _bmp24(pixels: np.ndarray) -> bytes:
    """An uncompressed 24-bit BMP of RGB ``pixels`` (H, W, 3), rows bottom-up, each padded to
    4 bytes."""
    h, w, _ = pixels.shape
    rows = b"".join(pixels[y, :, ::-1].tobytes() + bytes(-3 * w % 4) for y in range(h - 1, -1, -1))
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(rows), 0, 0, 54) + info + rows


def test_a_bmp_cut_in_its_last_rows_padding_is_refused():
    """OpenCV's BMP reader reads each row with its padding to 4 bytes: a file one padding
    byte short is cut short (Caffe fails on it), whole it reads."""
    pixels = np.arange(2 * 1 * 3, dtype=np.uint8).reshape(2, 1, 3) * 40
    data = _bmp24(pixels)
    assert len(data) == 54 + 2 * 4
    got = read_image(io.BytesIO(data), True, name="bmp")
    assert got[:, :, 0].T.tolist() == [[2 * 40, 40, 0], [5 * 40, 4 * 40, 3 * 40]]   # BGR
    with pytest.raises(AllconvError, match=r"^bmp: could not load the image: a BMP cut short "
                                           r"\(61 of 62 bytes\)"):
        read_image(io.BytesIO(data[:-1]), True, name="bmp")


def test_a_1_bit_png_decodes_unchanged_as_one_grey_channel():
    """imdecode(IMREAD_UNCHANGED) of a 1-bit grey PNG is CV_8UC1, libpng expanding 1 to 255."""
    image = Image.new("1", (3, 2))
    image.putpixel((1, 0), 1)
    image.putpixel((2, 1), 1)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    got = decode_unchanged(buffer.getvalue(), "bits")
    assert got.dtype == torch.uint8 and got.tolist() == [[[0, 255, 0], [0, 0, 255]]]


# ---------------------------------------------------------------- ImageNet resize

def test_short_side_resize_scales_the_short_side_to_256_and_keeps_the_centre():
    """'short-side': the short side to 256, the long one round(long * 256 / short), then the
    centre 256 x 256 (the left offset floor((515 - 256) / 2) = 129), in BGR."""
    rgb = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 100, 201), np.uint8))
    got = jpeg.resize(rgb, 256, "short-side")
    big = jpeg.interpolate(rgb, 256, 515)               # round(201 * 2.56) = round(514.56)
    assert got.shape == (3, 256, 256)
    assert torch.equal(got, big[:, :, 129:129 + 256].flip(0))
    tall = jpeg.resize(rgb.transpose(1, 2).contiguous(), 256, "short-side")
    assert torch.equal(tall, jpeg.interpolate(rgb.transpose(1, 2).contiguous(), 515, 256)
                       [:, 129:129 + 256].flip(0))


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0)])
def test_resizing_to_no_pixels_is_refused(height, width):
    with pytest.raises(AllconvError, match=rf"cannot resize a 4x6 image to {height}x{width}"):
        jpeg.interpolate(torch.zeros(3, 4, 6, dtype=torch.uint8), height, width)


# ---------------------------------------------------------------- pylearn2 GCN / ZCA

def test_gcn_replaces_a_divisor_below_min_divisor_by_one():
    """pylearn2: ``normalizers[normalizers < min_divisor] = 1.``: a row whose norm / scale is
    below 1e-8 is only centred, not blown up to norm 55."""
    row = torch.tensor([[1.0 + 1e-9, 1.0 - 1e-9, 1.0, 1.0]], dtype=torch.float64)
    got = preprocess.global_contrast_normalize(row)
    torch.testing.assert_close(got, row - row.mean(), rtol=0, atol=1e-15)
    assert got.abs().max() < 1e-8


def test_a_saved_whitening_loads_with_every_setting(tmp_path):
    w = preprocess.Whitening(np.arange(3.0), np.eye(3), scale=2.0, sqrt_bias=10.0,
                             min_divisor=0.5, filter_bias=0.25)
    w.save(tmp_path / "w.npz")
    back = preprocess.Whitening.load(tmp_path / "w.npz")
    assert (back.scale, back.sqrt_bias, back.min_divisor, back.filter_bias) == (2.0, 10.0, 0.5,
                                                                                0.25)
    np.testing.assert_array_equal(back.mean, w.mean)
    np.testing.assert_array_equal(back.matrix, w.matrix)
