"""Data layers on files the tests write, against Caffe's documented behaviour: the
DataTransformer (data_transformer.cpp), ImageData's decoding and list (its values are also
pinned against a real Caffe built with OpenCV), HDF5Data's shuffling and errors, HDF5Output, MemoryData's checks (pycaffe's),
DummyData, the Data layer's own transform, and an exact resume (WindowData:
test_window_data.py). Values of DummyData, HDF5Data, HDF5Output and MemoryData are also pinned against
real Caffe in test_caffe_fixtures.py (test_data_layer)."""
from __future__ import annotations

import io
import os
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from runtime import TEST, TRAIN, Net
from runtime.caffemodel import array_to_blob, write_binary
from runtime.data.image_list import ImageList
from runtime.data.transform import Transformer
from runtime.errors import AllconvError
from runtime.proto import pb
from runtime.prototxt import read_net
from fixture_format import png_file
from test_solver import Feed, _batches


def _transform(**fields) -> "pb.TransformationParameter":
    p = pb.TransformationParameter()
    for k, v in fields.items():
        if k == "mean_value":
            p.mean_value.extend(v)
        else:
            setattr(p, k, v)
    return p


def _images(n=3, c=3, h=6, w=7, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, c, h, w))
                            .astype(np.uint8))


# ----------------------------------------------------------------------- DataTransformer

def test_test_phase_is_the_centre_crop_minus_mean_values_times_scale():
    images = _images()
    t = Transformer(_transform(crop_size=4, mean_value=[10, 20, 30], scale=0.5), train=False)
    out = t(images)
    x = images.numpy().astype(np.float32)[:, :, 1:5, 1:5]       # (6-4)//2, (7-4)//2
    want = (x - np.float32([10, 20, 30])[:, None, None]) * np.float32(0.5)
    np.testing.assert_array_equal(out.numpy(), want)
    one = Transformer(_transform(mean_value=[7]), train=False)(images)   # one value: all
    np.testing.assert_array_equal(one.numpy(), images.numpy().astype(np.float32) - 7)


def test_mean_file_is_read_at_the_crop_and_mirrored_with_it(tmp_path):
    images = _images(n=40)
    mean = np.random.default_rng(1).uniform(0, 255, (1, 3, 6, 7)).astype(np.float32)
    write_binary(tmp_path / "mean.binaryproto", array_to_blob(mean))
    t = Transformer(_transform(crop_size=5, mirror=True, mean_file=str(tmp_path / "m"
                                                                      "ean.binaryproto")),
                    train=True, generator=torch.Generator().manual_seed(3))
    out = t(images).numpy()
    x = images.numpy().astype(np.float32) - mean        # (x - mean[data_index]) * 1
    seen = set()
    for i in range(len(images)):
        found = [(y, xo, flip) for y in range(2) for xo in range(3) for flip in (False, True)
                 if np.array_equal(out[i], (lambda a: a[..., ::-1] if flip else a)(
                     x[i, :, y:y + 5, xo:xo + 5]))]
        assert found, f"image {i} is no crop of (x - mean)"
        seen.update(found)
    assert {f[2] for f in seen} == {False, True} and len({f[:2] for f in seen}) == 6


def test_mirror_flips_at_test_too_as_caffe_draws_it():
    """Caffe's do_mirror = mirror && Rand(2) in both phases; only the crop is phase-bound."""
    images = _images(n=64)
    out = Transformer(_transform(mirror=True, crop_size=4), train=False,
                      generator=torch.Generator().manual_seed(0))(images).numpy()
    centre = images.numpy()[:, :, 1:5, 1:5].astype(np.float32)
    same = [np.array_equal(o, c) for o, c in zip(out, centre)]
    flipped = [np.array_equal(o, c[..., ::-1]) for o, c in zip(out, centre)]
    assert all(a or b for a, b in zip(same, flipped))
    assert 10 < sum(flipped) < 54


def test_train_crops_are_uniform_over_every_offset():
    images = torch.arange(4 * 8, dtype=torch.uint8).reshape(1, 1, 4, 8).expand(3000, 1, 4, 8)
    out = Transformer(_transform(crop_size=3), train=True,
                      generator=torch.Generator().manual_seed(5))(images)
    ys, xs = (out[:, 0, 0, 0] // 8).long(), (out[:, 0, 0, 0] % 8).long()
    counts = torch.bincount(ys * 6 + xs, minlength=12)
    assert counts.numel() == 12 and counts.min() > 3000 / 12 * 0.7   # 2 x 6 offsets, each


@pytest.mark.parametrize("fields, shape, message", [
    ({"mean_value": [1, 2]}, (3, 6, 6), "either 1 mean_value or as many as channels: 3"),
    ({"crop_size": 7}, (3, 6, 9), "crop_size 7 is larger than the 6x9 image"),
])
def test_transform_checks_name_the_field(fields, shape, message):
    with pytest.raises(AllconvError, match=message):
        Transformer(_transform(**fields), train=True).output_shape(shape)


def test_a_corrupt_mean_file_is_named(tmp_path):
    path = str(tmp_path / "mean.binaryproto")
    with open(path, "wb") as f:         # shape (1, 3, 4, 4) but 5 values
        f.write(pb.BlobProto(num=1, channels=3, height=4, width=4, data=[0.0] * 5)
                .SerializeToString())
    with pytest.raises(AllconvError, match=rf"^{re.escape(path)}: blob shape \(1, 3, 4, 4\) "
                                           "needs 48 values but it holds 5$"):
        Transformer(_transform(mean_file=path), True)
    # an empty one was read as the folder "." (".: is a directory, ..."; mutation fuzzer)
    with pytest.raises(AllconvError, match="^transform_param: mean_file is empty; give"):
        Transformer(_transform(mean_file=""), True)


def test_mean_file_and_mean_value_exclude_each_other(tmp_path):
    write_binary(tmp_path / "m.binaryproto", array_to_blob(np.zeros((1, 3, 4, 4), np.float32)))
    with pytest.raises(AllconvError, match="cannot specify mean_file and mean_value"):
        Transformer(_transform(mean_file=str(tmp_path / "m.binaryproto"), mean_value=[1]), True)
    t = Transformer(_transform(mean_file=str(tmp_path / "m.binaryproto")), True)
    with pytest.raises(AllconvError, match=rf"the mean_file {re.escape(str(tmp_path))}/"
                                           r"m.binaryproto is \(3, 4, 4\), the images "
                                           r"\(3, 5, 5\)"):
        t.output_shape((3, 5, 5))


def test_data_layer_transforms_what_its_own_source_reads(tmp_path):
    data = np.random.default_rng(2).uniform(0, 255, (6, 3, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", data=data, labels=np.arange(6, dtype=np.float32))
    text = f"""layer {{ name: "d" type: "Data" top: "data" top: "label"
      transform_param {{ crop_size: 3 mean_value: 100 scale: 0.25 }}
      data_param {{ source: "{tmp_path / 'd.npz'}" batch_size: 4 }} }}"""
    net = Net(text, TEST)
    assert net.blobs["data"].shape == (4, 3, 3, 3)
    out = net.forward()
    np.testing.assert_array_equal(out["data"].numpy(), (data[:4, :, 1:4, 1:4] - 100) * 0.25)
    with pytest.warns(UserWarning, match="transform_param is not applied to a given feed"):
        Net(text, TEST, feeds=lambda n: (torch.zeros(n, 3, 3, 3), torch.zeros(n)),
            input_shapes={"data": (3, 3, 3)})


# ----------------------------------------------------------------------- ImageData

COLOURS = [(250, 10, 20), (0, 128, 255), (33, 66, 99), (200, 200, 0), (5, 6, 7)]


def _image_tree(tmp_path, sizes=None):
    """root/a b/img<i>.png (a space in the folder name), flat colours; the list file."""
    folder = tmp_path / "root" / "a b"
    folder.mkdir(parents=True)
    lines = []
    for i, rgb in enumerate(COLOURS):
        h, w = (sizes or [(6, 8)] * len(COLOURS))[i]
        pixels = np.empty((h, w, 3), np.uint8)
        pixels[:] = rgb
        pixels[0, 0] = (255, 255, 255)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
        lines.append(f"a b/img{i}.png {i * 10}")
    (tmp_path / "list.txt").write_text("\r\n".join(lines) + "\r\n")   # Windows' ends
    return tmp_path / "list.txt"


def _image_net(tmp_path, phase=TEST, params="", transform="", sizes=None, batch_size=3,
               below=""):
    listing = _image_tree(tmp_path, sizes)
    return Net(f"""layer {{ name: "img" type: "ImageData" top: "data" top: "label"
        {transform}
        image_data_param {{ source: "{listing}" root_folder: "{tmp_path / 'root'}/"
                            batch_size: {batch_size} {params} }} }}{below}""", phase, seed=11)


def test_image_data_reads_bgr_images_and_labels_in_order_wrapping(tmp_path):
    net = _image_net(tmp_path)
    assert net.blobs["data"].shape == (3, 3, 6, 8)
    first, second = net.forward(), net.forward()
    assert first["label"].tolist() == [0, 10, 20] and second["label"].tolist() == [30, 40, 0]
    r, g, b = COLOURS[1]
    np.testing.assert_array_equal(first["data"][1, :, 2, 3].numpy(), [b, g, r])   # BGR
    np.testing.assert_array_equal(first["data"][1, :, 0, 0].numpy(), [255, 255, 255])


def test_image_data_resizes_greys_and_crops(tmp_path):
    net = _image_net(tmp_path, params="new_height: 4 new_width: 5 is_color: false",
                     transform="transform_param { crop_size: 3 scale: 0.5 }",
                     sizes=[(9, 9), (6, 8), (7, 3), (6, 8), (4, 4)])
    assert net.blobs["data"].shape == (3, 1, 3, 3)
    out = net.forward()["data"].numpy()
    r, g, b = COLOURS[2]
    grey = round(0.299 * r + 0.587 * g + 0.114 * b)
    assert abs(out[2, 0, 1, 1] - grey * 0.5) <= 0.5        # Pillow's L vs OpenCV: within 1


def test_image_data_batches_take_their_first_images_size(tmp_path):
    """As Caffe's ImageData: a crop makes images of several sizes one; without one each batch
    takes its first image's size (batch_size 1: any sizes), the layers below reshape in each
    forward, and another size within a batch is one line naming the image."""
    cropped = _image_net(tmp_path, transform="transform_param { crop_size: 3 }",
                         sizes=[(6, 8), (5, 5), (9, 4), (6, 8), (4, 4)])
    assert cropped.forward()["data"].shape == (3, 3, 3, 3)   # Caffe crops each image alone
    (tmp_path / "again").mkdir()
    plain = _image_net(tmp_path / "again", sizes=[(6, 8), (5, 5), (9, 4), (6, 8), (4, 4)])
    with pytest.raises(AllconvError, match=r"layer 'img' \(ImageData\): .*/root/a b/img1\.png: "
                                           r"a 5x5 image in a batch of 6x8 images \(its first "
                                           r"image's, as Caffe shapes a batch\): batch_size 1, "
                                           r"new_height/new_width or crop_size make a batch one "
                                           r"size"):
        plain.forward()
    (tmp_path / "one").mkdir()
    one = _image_net(tmp_path / "one", batch_size=1, sizes=[(6, 8), (5, 5)] * 3,
                     below='layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                           'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    outs = [one.forward() for _ in range(3)]
    assert [tuple(out["pool"].shape) for out in outs] == [(1, 3, 3, 4), (1, 3, 3, 3),
                                                          (1, 3, 3, 4)]
    one.forward()
    one.reshape()           # Caffe's data layer keeps its last batch's shape (real Caffe too)
    assert (one.blobs["data"].shape, one.blobs["pool"].shape) == ((1, 3, 5, 5), (1, 3, 3, 3))
    (tmp_path / "same").mkdir()    # batches of one size: the layers below reshape once
    same = _image_net(tmp_path / "same", batch_size=1,
                      below='layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    reshaped, pool = [], same.layer_dict["pool"]
    pool_reshape = pool.reshape_tops
    pool.reshape_tops = lambda shapes: reshaped.append(shapes) or pool_reshape(shapes)
    for _ in range(3):
        same.forward()
    assert reshaped == [[(1, 3, 6, 8)]]


def _colour_jpeg(path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(path, quality=90)


def test_a_colour_jpeg_read_grey_is_libjpegs_luma(tmp_path):
    """OpenCV's grey imread has libjpeg decode the Y plane; converting the decoded RGB to
    grey was up to 24 levels off."""
    from runtime.data.imread import read_image
    _colour_jpeg(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as image:
        image.draft("YCbCr", image.size)
        luma = np.asarray(image)[:, :, 0]
        converted = np.asarray(image.convert("RGB").convert("L"))
    grey = read_image(str(tmp_path / "c.jpg"), False, None)
    assert grey.shape == (1, 16, 24)
    np.testing.assert_array_equal(grey[0].numpy(), luma)
    assert np.abs(luma.astype(int) - converted).max() > 1


def test_a_16_bit_grey_png_keeps_its_high_byte(tmp_path):
    """As OpenCV's imread; Pillow's conversion clipped every value to 255."""
    from runtime.data.imread import read_image
    values = (np.arange(12) * 5400 + 77).astype(np.uint16).reshape(3, 4)
    Image.fromarray(values).save(tmp_path / "g.png")
    grey = read_image(str(tmp_path / "g.png"), False, None)
    np.testing.assert_array_equal(grey[0].numpy(), values >> 8)
    colour = read_image(str(tmp_path / "g.png"), True, None)
    np.testing.assert_array_equal(colour.numpy(), np.stack([values >> 8] * 3))


def _png16_rgb(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of ``values`` (H, W, 3), which Pillow cannot write."""
    return png_file(values, 16, [])


def test_a_png_is_checked_as_libpng_checks_it(tmp_path):
    """libpng refuses a critical chunk whose CRC fails or that runs past the file's end, and
    passes over faults in ancillary chunks, where Pillow failed (a bad CRC in tEXt, an empty
    cHRM: "not a usable path", which misnamed the fault) or took the last of two eXIf chunks."""
    from runtime.data.imread import read_image
    values = np.random.default_rng(5).integers(0, 256, (3, 4, 3))
    plain = read_image(io.BytesIO(png_file(values, 8, [])), True, name="plain")
    faults = [["tEXt", "6b00", "bad crc"], ["cHRM", ""]]
    np.testing.assert_array_equal(
        read_image(io.BytesIO(png_file(values, 8, faults)), True, name="faults"), plain)
    exif = "4d4d002a000000080001011200030000000100{:02x}000000000000"   # orientation
    turned = png_file(values, 8, [["eXIf", exif.format(6)], ["eXIf", exif.format(3)]])
    np.testing.assert_array_equal(read_image(io.BytesIO(turned), True, name="turned"),
                                  plain.transpose(1, 2).flip(2))        # 6: a quarter right
    data = bytearray(png_file(values, 8, []))
    data[-13] ^= 1                                          # IDAT's CRC, before IEND's 12 bytes
    with pytest.raises(AllconvError, match=r"^bad: could not load the image: the CRC of its "
                                           r"'IDAT' chunk is wrong, which libpng refuses$"):
        read_image(io.BytesIO(bytes(data)), True, name="bad")
    data[33:37] = (10 ** 6).to_bytes(4, "big")              # IDAT runs past the end
    with pytest.raises(AllconvError, match=r"^cut: could not load the image: a PNG cut short"):
        read_image(io.BytesIO(bytes(data)), True, name="cut")


def _png_of(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of the (type, body) ``chunks``, in order, with their CRCs."""
    import struct
    import zlib
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c[:3] + [(b"tEXt", b"k\0v")] + c[3:], "not enough image data"),  # IDAT split
    (lambda c: c[:1] + [(b"QQQQ", b"")] + c[1:], "an unknown critical chunk 'QQQQ'"),
    (lambda c: c[:1] + c[:1] + c[1:], "a second IHDR chunk"),
    (lambda c: c[:1] + c[1:2][:0] + [(b"IDAT", b"".join(b for k, b in c if k == b"IDAT"))]
     + c[-1:], "no PLTE chunk before the image data"),
    (lambda c: c[:1] + [c[1], c[1]] + c[2:], "a second PLTE chunk"),
    (lambda c: c[:2] + [(b"IDAT", c[2][1][:-6])] + c[-1:], "not enough image data"),
    (lambda c: c[:2] + [(b"IDAT", b"\0garbage")] + c[-1:], "damaged image data"),
])
def test_a_png_libpng_refuses_for_its_structure_is_refused(edit, message):
    """libpng (OpenCV 4.6) refuses these; Pillow decoded them (a tEXt between two halves of
    the image data: the halves were joined)."""
    import zlib
    from runtime.data.imread import read_image
    rows = b"".join(b"\0" + bytes([y, y + 1, y + 2, y + 3]) for y in range(3))
    stream = zlib.compress(rows)
    chunks = [(b"IHDR", bytes.fromhex("000000040000000308030000 00".replace(" ", ""))),
              (b"PLTE", bytes(range(24))),
              (b"IDAT", stream[:len(stream) // 2]), (b"IDAT", stream[len(stream) // 2:]),
              (b"IEND", b"")]
    assert read_image(io.BytesIO(_png_of(chunks)), True, name="p").shape == (3, 3, 4)
    with pytest.raises(AllconvError, match=r"^bad: could not load the image: "
                                           + re.escape(message) + r".*, which libpng refuses$"):
        read_image(io.BytesIO(_png_of(edit(chunks))), True, name="bad")


def test_a_trns_libpng_drops_is_dropped():
    """An encoded Datum's PNG read unchanged: a tRNS longer than the palette, or before it,
    libpng ignores (3 channels, as OpenCV); Pillow kept it (BGRA)."""
    import zlib
    from runtime.data.imread import decode_unchanged
    body = zlib.compress(b"\0\0\1")
    header = (b"IHDR", bytes.fromhex("00000002000000010803000000"))
    palette, data, end = (b"PLTE", bytes(range(6))), (b"IDAT", body), (b"IEND", b"")
    assert decode_unchanged(_png_of([header, palette, (b"tRNS", b"\x80"), data, end]),
                            "ok").shape == (4, 1, 2)
    for chunks in ([header, palette, (b"tRNS", b"\x80\x80\x80"), data, end],
                   [header, (b"tRNS", b"\x80"), palette, data, end]):
        assert decode_unchanged(_png_of(chunks), "dropped").shape == (3, 1, 2)


def _tiff(samples: np.ndarray, extra: int | None = None) -> bytes:
    """A little-endian RGB(A) TIFF of ``samples`` (H, W, 3 or 4; uint8 or uint16), one strip;
    ``extra``: its ExtraSamples (1 associated alpha, 2 unassociated)."""
    import struct
    height, width, channels = samples.shape
    pixels = samples.astype("<u2" if samples.dtype == np.uint16 else np.uint8).tobytes()
    bits = 16 if samples.dtype == np.uint16 else 8
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, channels, None), (259, 3, 1, 1),
            (262, 3, 1, 2), (273, 4, 1, None), (277, 3, 1, channels), (278, 3, 1, height),
            (279, 4, 1, len(pixels)), (284, 3, 1, 1)] + ([(338, 3, 1, extra)] if extra else [])
    ifd = 8
    after = ifd + 2 + 12 * len(tags) + 4
    bits_at, pixels_at = after, after + 2 * channels
    entries = b"".join(struct.pack("<HHI", tag, kind, count) + struct.pack(
        "<I", bits_at if tag == 258 else pixels_at if tag == 273 else value)
        if tag in (258, 273) or kind == 4 else struct.pack("<HHIHH", tag, kind, count, value, 0)
        for tag, kind, count, value in tags)
    return (b"II*\0" + struct.pack("<I", ifd) + struct.pack("<H", len(tags)) + entries
            + b"\0\0\0\0" + struct.pack(f"<{channels}H", *[bits] * channels) + pixels)


def test_a_tiff_reads_as_libtiff_hands_it_to_opencv():
    """Associated alpha's colour as stored (Pillow divided it out, 1 off); 16-bit colour
    rounded, (v + 128) // 257 (the high byte was 1 off); unassociated alpha multiplied in."""
    from runtime.data.imread import read_image
    rgba = np.array([[[200, 100, 50, 128], [255, 3, 0, 7]]], np.uint8)
    got = read_image(io.BytesIO(_tiff(rgba, extra=1)), True, name="t")
    assert got[:, 0].T.tolist() == rgba[0, :, 2::-1].tolist()
    got = read_image(io.BytesIO(_tiff(rgba, extra=2)), True, name="t")
    assert got[:, 0].T.tolist() == ((rgba[0, :, 2::-1].astype(int) * rgba[0, :, 3:] + 127)
                                    // 255).tolist()
    deep = np.array([[[65535, 32895, 128], [383, 384, 0]]], np.uint16)
    got = read_image(io.BytesIO(_tiff(deep)), True, name="t")
    assert got[:, 0].T.tolist() == [[0, 128, 255], [0, 1, 1]]     # B, G, R


def test_an_image_past_opencvs_size_limits_is_refused_before_it_is_decoded():
    """OpenCV refuses a side past 2^20 (or 2^30 pixels) from the header; a damaged TIFF of
    3x50,331,648 took 11 s and gigabytes here before."""
    from runtime.data.imread import read_image
    with pytest.raises(AllconvError, match=r"^wide: could not load the image: 1048577x1 "
                                           r"pixels, past OpenCV's limits of 1,048,576 a side"):
        read_image(io.BytesIO(b"P5\n1048577 1\n255\n" + bytes(1048577)), True, name="wide")


def test_a_text_pbm_reads_a_digit_at_a_time():
    """OpenCV reads each digit of a P1 as a sample, any but 0 black; Pillow refused a 2 (with
    its own bytes repr in the message)."""
    from runtime.data.imread import read_image
    got = read_image(io.BytesIO(b"P1\n3 2\n0 2 1\n010"), False, name="pbm")
    assert got[0].tolist() == [[255, 0, 0], [255, 0, 255]]


def _bmp16(pixels: list[int], green_bits: int) -> bytes:
    """A one-row 16-bit BMP of ``pixels``: 555, or 565 through BI_BITFIELDS masks."""
    import struct
    row = struct.pack(f"<{len(pixels)}H", *pixels)
    row += bytes(-len(row) % 4)
    masks = struct.pack("<III", 0xF800, 0x07E0, 0x001F) if green_bits == 6 else b""
    info = struct.pack("<IiiHHIIiiII", 40, len(pixels), 1, 1, 16, 3 if masks else 0, len(row),
                       0, 0, 0, 0) + masks
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(row), 0, 0, offset) + info + row


def test_a_16_bit_bmp_keeps_its_fields_shifted_up():
    """OpenCV's BMP reader shifts each 5- or 6-bit field up (low bits 0); Pillow repeats the
    field's top bits below it (31 became 255, OpenCV's 248)."""
    from runtime.data.imread import read_image
    fields = [(31, 31, 31), (1, 2, 3), (16, 9, 30)]
    for green_bits, green_shift in ((5, 3), (6, 2)):
        pixels = [r << (5 + green_bits) | g << 5 | b for r, g, b in fields]
        bgr = read_image(io.BytesIO(_bmp16(pixels, green_bits)), True, name="bmp")
        assert bgr[:, 0].T.tolist() == [[b << 3, g << green_shift, r << 3] for r, g, b in fields]


@pytest.mark.parametrize("data, message", [
    (b"P5\n2 1\n0\n\x01\x02", "a PNM header of 2x1, maxval 0, which OpenCV refuses"),
    (b"P2\n2 1\n255\n1 x\n", "byte 13 of the PNM file is b'x', where OpenCV reads a number"),
    (b"P2\n2 1\n255\n1 2", "a PNM cut short"),                   # no byte after the last
    (b"P6\n2 1\n255\n\x01\x02\x03", "a PNM cut short (3 of its 6 bytes of samples)"),
])
def test_a_pnm_opencv_cannot_read_is_one_line(data, message):
    """OpenCV's ReadNumber fails where these did not in Pillow, or failed otherwise."""
    from runtime.data.imread import read_image
    with pytest.raises(AllconvError, match=r"^bad: could not load the image: " + re.escape(message)):
        read_image(io.BytesIO(data), True, name="bad")


def test_formats_opencv_cannot_read_are_refused_and_16_bits_unchanged_too(tmp_path):
    """Caffe's OpenCV 4.6 reads no GIF (ImageData aborts on one), and an encoded 16-bit PNG
    decoded unchanged fails Caffe's DataTransformer, colour or grey."""
    import warnings
    from runtime.data.imread import decode_unchanged, read_image
    Image.new("RGB", (4, 3), (10, 20, 30)).save(tmp_path / "a.gif")
    with pytest.raises(AllconvError, match=r"a.gif: could not load the image: a GIF file, "
                                           r"which OpenCV \(Caffe's decoder\) cannot read"):
        read_image(str(tmp_path / "a.gif"), True)
    with pytest.raises(AllconvError, match=r"rgb16: Image data type must be unsigned byte "
                                           r"\(a 16-bit image"):
        decode_unchanged(_png16_rgb(np.full((3, 4, 3), 300, np.uint16)), "rgb16")
    with pytest.raises(AllconvError, match=r"ppm16: Image data type must be unsigned byte"):
        decode_unchanged(b"P6\n1 1\n1000\n" + bytes(6), "ppm16")
    assert read_image(io.BytesIO(_png16_rgb(np.full((3, 4, 3), 300, np.uint16))), True,
                      name="rgb16").unique().tolist() == [1]        # 300's high byte
    palette = Image.new("P", (4, 3))
    palette.info["transparency"] = b"\x00" * 256
    palette.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # Pillow's palette warning stays inside
        assert read_image(str(tmp_path / "p.png"), True).shape == (3, 3, 4)


def test_image_data_shuffles_each_pass_and_skips_at_random(tmp_path):
    """rand_skip: the first pass starts at a drawn line below it; shuffle: every pass is a
    fresh order of all lines."""
    net = _image_net(tmp_path, TRAIN, params="shuffle: true rand_skip: 4")
    passes = net.layers[0].feed.feed.passes
    skip, order = passes.cursor, [int(i) * 10 for i in passes.order]
    assert 0 <= skip < 4
    labels = [int(v) for _ in range(6) for v in net.forward()["label"].tolist()]
    first = 5 - skip
    assert labels[:first] == order[skip:]
    rest = [labels[i:i + 5] for i in range(first, first + 10, 5)]
    assert all(sorted(p) == [0, 10, 20, 30, 40] for p in rest)
    assert len({tuple(p) for p in rest + [order]}) > 1
    (tmp_path / "plain").mkdir()
    plain = _image_net(tmp_path / "plain", TRAIN, params="rand_skip: 5")
    skip = plain.layers[0].feed.feed.passes.cursor
    assert plain.forward()["label"].tolist() == [(skip + i) % 5 * 10 for i in range(3)]


def test_image_data_errors_name_the_file(tmp_path):
    listing = _image_tree(tmp_path)
    (tmp_path / "bad.txt").write_text("missing.png 1\n")
    with pytest.raises(AllconvError, match=r"missing\.png: could not load the image: .* "
                                           rf"\(listed in {tmp_path}/bad.txt, line 1\)$"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{tmp_path / 'bad.txt'}" }} }}""", TEST)
    # found by fuzzing: a later line's image was named without the list and the line
    (tmp_path / "later.txt").write_text(listing.read_text().replace("\r", "") + "gone.png 0\n")
    net = Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
        image_data_param {{ source: "{tmp_path / 'later.txt'}" root_folder: "{tmp_path / 'root'}/"
                            batch_size: {len(COLOURS)} }} }}""", TEST)
    net.forward()
    with pytest.raises(AllconvError, match=r"gone\.png: could not load the image: .* \(listed "
                                           rf"in {tmp_path}/later.txt, line {len(COLOURS) + 1}\)$"):
        net.forward()
    with pytest.raises(AllconvError, match="new_height and new_width must be set together"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{listing}" new_height: 4 }} }}""", TEST)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(AllconvError, match="empty.txt: the image list is empty"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{tmp_path / 'empty.txt'}" }} }}""", TEST)
    # lines end at \n alone, as getline's (a lone \r split one line in two)
    from runtime.data.image_list import read_list
    (tmp_path / "cr.txt").write_bytes(b"a.png 1\rb.png 2\r\nc.png 3\n")
    assert read_list(str(tmp_path / "cr.txt")) == [("a.png 1\rb.png", 2), ("c.png", 3)]
    # a label as glibc's atoi reads it, (int) strtol: past a long clamped, then cut to 32 bits
    # (the label 99999999999999999999 was -2**63); digits of other scripts are no digits
    (tmp_path / "big.txt").write_text("a.png 99999999999999999999\nb.png -99999999999999999999\n"
                                      "c.png 4294967297\nd.png 2147483648\ne.png \u0663\n")
    assert [label for _, label in read_list(str(tmp_path / "big.txt"))] == \
        [-1, 0, 1, -2**31, 0]
    # a blank line was skipped: Caffe lists it as an image of a blank path, then aborts
    good = listing.read_text()
    for text, number in (("\n", 1), (good + "\n" + good, good.count("\n") + 1),
                         (good + "  \n", good.count("\n") + 1)):
        (tmp_path / "blank.txt").write_text(text)
        with pytest.raises(AllconvError, match=rf"blank.txt:{number}: a blank line, which Caffe "
                                               r"reads as an image with a blank path"):
            Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
                image_data_param {{ source: "{tmp_path / 'blank.txt'}" }} }}""", TEST)
    # a NUL written into the source (an escape of the text format): no such path
    with pytest.raises(AllconvError, match=r"cannot open the image list: embedded null"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{listing}\\000x" }} }}""", TEST)
    # ... or into root_folder, which prefixes each listed name (found by tools/fuzz.py)
    with pytest.raises(AllconvError, match=r"'a\\x00b.*': not a usable path: embedded null"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{listing}" root_folder: "a\\000b" }} }}""", TEST)



@pytest.mark.parametrize("size, message", [
    ("new_height: 4294967295 new_width: 6", "new_height/new_width 4294967295 is out of range"),
    ("new_height: 60000 new_width: 60000", r"new_height/new_width: shape \(3, 3, 60000, 60000\)")])
def test_image_data_new_size_is_checked_before_any_resize(tmp_path, size, message):
    """Found by tools/fuzz.py: a huge new_height/new_width went to the resize (a 77 GB
    allocation) before any check."""
    listing = _image_tree(tmp_path)
    with pytest.raises(AllconvError, match=f"layer 'i' \\(ImageData\\): image_data_param.{message}"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{listing}" batch_size: 3 {size} }} }}""", TEST)


def test_list_files_name_paths_by_their_bytes_as_caffe_reads_them(tmp_path):
    """Found by tools/fuzz.py: a list file that is not UTF-8 (here a path in Latin-1) raised
    UnicodeDecodeError; Caffe reads the names as bytes, so the image loads."""
    _image_tree(tmp_path)
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / "root" / "a b" / "img0.png").rename(tmp_path / name)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9.png 7\n")
    net = Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
        image_data_param {{ source: "{tmp_path / 'latin1.txt'}" root_folder: "{tmp_path}/"
                            batch_size: 1 }} }}""", TEST)
    assert net.forward()["l"].tolist() == [7]
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\xff\xfe 1\n")
    with pytest.raises(AllconvError, match="could not load the image"):
        Net(f"""layer {{ name: "i" type: "ImageData" top: "d" top: "l"
            image_data_param {{ source: "{tmp_path / 'binary.txt'}" }} }}""", TEST)
    _h5_files(tmp_path)
    (tmp_path / "f0.h5").rename(tmp_path / os.fsdecode(b"f\xe9.h5"))
    (tmp_path / "list.txt").write_bytes(str(tmp_path).encode() + b"/f\xe9.h5\n")
    assert _h5_net(tmp_path, batch=4).forward()["label"].tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------- HDF5Data, HDF5Output

def _h5_files(tmp_path, rows=(4, 3)):
    h5py = pytest.importorskip("h5py", reason="HDF5 layers need h5py (the hdf5 extra)")
    names, start = [], 0
    for i, n in enumerate(rows):
        with h5py.File(tmp_path / f"f{i}.h5", "w") as f:
            f["data"] = np.arange(start, start + n, dtype=np.float32)[:, None] * [1, -1]
            f["label"] = np.arange(start, start + n, dtype=np.int64)
        names.append(str(tmp_path / f"f{i}.h5"))
        start += n
    (tmp_path / "list.txt").write_text("\n".join(names))
    return h5py


def _h5_net(tmp_path, params="", extra="", batch=7):
    return Net(f"""layer {{ name: "h" type: "HDF5Data" top: "data" top: "label" {extra}
        hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: {batch} {params} }} }}""",
               TRAIN, seed=3)


def test_hdf5_data_shuffles_files_and_rows_every_pass(tmp_path):
    _h5_files(tmp_path)
    net = _h5_net(tmp_path, "shuffle: true")
    passes = [[int(v) for v in net.forward()["label"].tolist()] for _ in range(12)]
    for p in passes:                       # one file's rows, then the other's, each shuffled
        a, b = (p[:4], p[4:]) if p[0] < 4 else (p[:3], p[3:])
        assert sorted(a) in ([0, 1, 2, 3], [4, 5, 6]) and sorted(a + b) == list(range(7))
    assert len({tuple(p) for p in passes}) > 1
    assert {p[0] < 4 for p in passes} == {True, False}       # both file orders occur
    data = net.blobs["data"].data.numpy()
    np.testing.assert_array_equal(data[:, 1], -data[:, 0])
    np.testing.assert_array_equal(data[:, 0], net.blobs["label"].data.numpy())


def test_hdf5_data_refusals_are_one_line(tmp_path, monkeypatch):
    f1 = r"f1\.h5 \(listed in [^)]*list\.txt\): "      # a file, and the list that names it
    h5py = _h5_files(tmp_path)
    with pytest.raises(AllconvError, match="HDF5Data does not transform data"):
        _h5_net(tmp_path, extra="transform_param { scale: 2 }")
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        del f["label"]
    net = _h5_net(tmp_path, batch=5)
    with pytest.raises(AllconvError, match=f1 + r"no dataset 'label' \(found: data\)"):
        net.forward()
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        f.create_group("label")
    with pytest.raises(AllconvError, match=f1 + r"'label' is a group, not a dataset"):
        _h5_net(tmp_path, batch=5).forward()
    # a link to nothing, and no rows, were h5py's KeyError and an IndexError, tracebacks
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        del f["label"]
        f["label"] = h5py.SoftLink("/gone")
    with pytest.raises(AllconvError, match=f1 + r"'label' is a link to /gone, which does "
                                           r"not exist$"):
        _h5_net(tmp_path, batch=5).forward()
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        del f["label"], f["data"]
        f["label"] = h5py.ExternalLink("other.h5", "/label")
        f.create_dataset("data", data=np.zeros((0, 2), np.float32))
    with pytest.raises(AllconvError, match=f1 + r"'label' is a link to /label in other\.h5"):
        _h5_net(tmp_path, batch=5).forward()
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        del f["label"]
        f.create_dataset("label", data=np.zeros((0,), np.float32))
    with pytest.raises(AllconvError, match=f1 + r"the datasets \['data', 'label'\] hold no "
                                           r"rows$"):
        _h5_net(tmp_path, batch=5).forward()
    # found by fuzzing: a damaged object header was "a link to ?, which does not exist"
    import struct
    with h5py.File(tmp_path / "f1.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((37, 2), np.float32), maxshape=(37, 2),
                         chunks=(37, 2))
        f.create_dataset("label", data=np.zeros(37, np.float32))
    data = (tmp_path / "f1.h5").read_bytes()
    sizes = struct.pack("<QQQQ", 37, 2, 37, 2)          # its dataspace's dims, then maxdims
    assert data.count(sizes) == 1
    (tmp_path / "f1.h5").write_bytes(data.replace(sizes, struct.pack("<QQQQ", 37, 2, 0, 2)))
    with pytest.raises(AllconvError, match=f1 + r"'data' cannot be read: .*dataspace dim 0 "
                                           r"size of 37 is greater than maxdim size of 0"):
        _h5_net(tmp_path, batch=5).forward()
    # a damaged file: HDF5's errors reach h5py's callers as these (a fuzzer's bit flips: "bad
    # heap free list", "Python int too large to convert to C ssize_t"), tracebacks before
    for error in (RuntimeError("bad heap free list"), OverflowError("int too large")):
        def damaged(*_, error=error, **__):
            raise error
        with monkeypatch.context() as patched:
            patched.setattr(h5py, "File", damaged)
            with pytest.raises(AllconvError, match=f1.replace("f1", "f0") +
                               f"cannot read as HDF5: {error}$"):
                _h5_net(tmp_path, batch=5).forward()
    # a listed name holding a control character: escaped wherever the line says it
    (tmp_path / "list.txt").write_text("\x1bgone.h5\n")
    with pytest.raises(AllconvError) as err:
        _h5_net(tmp_path, batch=5).forward()
    assert "\\x1bgone.h5 (listed in" in str(err.value) and "\x1b" not in str(err.value)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(AllconvError, match=r"HDF5Data needs h5py, which is not installed: "
                                           r"pip install -e \"\.\[hdf5\]\""):
        _h5_net(tmp_path)
    (tmp_path / "none.txt").write_text(" \n")
    with pytest.raises(AllconvError, match="none.txt: must list at least 1 HDF5 file"):
        Net(f"""layer {{ name: "h" type: "HDF5Data" top: "data"
            hdf5_data_param {{ source: "{tmp_path / 'none.txt'}" batch_size: 1 }} }}""", TEST)
    with pytest.raises(AllconvError, match="cannot open the HDF5 file list: embedded null byte"):
        Net("""layer { name: "h" type: "HDF5Data" top: "data"
            hdf5_data_param { source: "list\\000.txt" batch_size: 1 } }""", TEST)


def test_hdf5_output_writes_one_batch_per_file(tmp_path):
    h5py = pytest.importorskip("h5py", reason="HDF5 layers need h5py (the hdf5 extra)")
    out = tmp_path / "out.h5"
    net = Net(f"""layer {{ name: "in" type: "Input" top: "x" top: "y"
        input_param {{ shape {{ dim: 2 dim: 5 }} shape {{ dim: 2 }} }} }}
        layer {{ name: "o" type: "HDF5Output" bottom: "x" bottom: "y"
        hdf5_output_param {{ file_name: "{out}" }} }}""", TEST)
    with h5py.File(out, "r") as f:
        assert list(f) == []                       # created empty at setup, as Caffe does
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    net.forward(x=x, y=np.array([3, 4], np.float32))
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data"][()], x.reshape(2, 5, 1, 1))
        assert f["label"].shape == (2, 1, 1, 1) and f["label"].dtype == np.float32
    with pytest.raises(AllconvError, match=r"out\.h5 already holds a batch: Caffe's HDF5Output "
                                           "writes one forward pass per file"):
        net.forward(x=x, y=np.zeros(2, np.float32))
    with pytest.raises(AllconvError, match=r"layer 'o' \(HDF5Output\): bottom 'x' has 5 axes "
                                           r"\(1, 1, 1, 1, 2\), more than the 4 of Caffe's"):
        Net(f"""layer {{ name: "in" type: "Input" top: "x" top: "y"
            input_param {{ shape {{ dim: 1 dim: 1 dim: 1 dim: 1 dim: 2 }} shape {{ dim: 1 }} }} }}
            layer {{ name: "o" type: "HDF5Output" bottom: "x" bottom: "y"
            hdf5_output_param {{ file_name: "{out}" }} }}""", TEST)


# ----------------------------------------------------------------------- MemoryData, DummyData

def test_a_data_layer_without_tops_is_one_line():
    """Found by tools/fuzz.py: a feed-taking layer with no top raised IndexError."""
    with pytest.raises(AllconvError, match=r"layer 'm' \(MemoryData\): needs 2 top blob\(s\), "
                                           "got 0"):
        Net("""layer { name: "m" type: "MemoryData"
            memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }""", TEST)


MEMORY = """layer { name: "m" type: "MemoryData" top: "data" top: "label"
    memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
    inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }"""


def test_memory_data_serves_the_arrays_in_batches_wrapping_around():
    net = Net(MEMORY + """
layer { name: "p" type: "Power" bottom: "label" top: "p" }""", TRAIN, seed=1)
    assert net.blobs["label"].shape == net.blobs["p"].shape == (2,)    # Caffe's set-up shape
    with pytest.raises(AllconvError, match=r"call net.set_input_arrays\(data, labels\) first"):
        net.forward()
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    net.set_input_arrays(data, np.array([5, 6, 7, 8], np.float32))
    got = [net.forward() and net.blobs["label"].data.reshape(-1).tolist() for _ in range(3)]
    assert got == [[5, 6], [7, 8], [5, 6]]
    # Caffe's Forward gives it this shape, and the layers above follow
    assert net.blobs["label"].shape == net.blobs["p"].shape == (2, 1, 1, 1)
    net.reshape()
    assert net.blobs["p"].shape == (2, 1, 1, 1)
    np.testing.assert_array_equal(net.blobs["data"].data.numpy(), data[:2])


@pytest.mark.parametrize("data, labels, message", [
    (np.zeros((2, 1, 2, 3)), np.zeros(2, np.float32), "data array must be float32"),
    (np.zeros((2, 2, 2, 3), np.float32), np.zeros(2, np.float32),
     r"data array must be \(N, 1, 2, 3\), got \(2, 2, 2, 3\)"),
    (np.zeros((3, 1, 2, 3), np.float32), np.zeros(3, np.float32),
     "positive multiple of batch size 2"),
    (np.zeros((2, 1, 2, 3), np.float32), np.zeros(4, np.float32), "same first dimension"),
])
def test_memory_data_checks_the_arrays_as_pycaffe(data, labels, message):
    with pytest.raises(AllconvError, match=message):
        Net(MEMORY, TEST).set_input_arrays(data, labels)


def test_labels_given_as_a_table_column_are_taken_as_pycaffe_takes_them():
    """pycaffe's wrapper makes 1-D labels contiguous itself: a column of a table (a strided
    view) is taken; 4-D labels or data must be contiguous (helper fuzz39)."""
    data = np.arange(12, dtype=np.float32).reshape(2, 1, 2, 3)
    table = np.array([[0, 5], [1, 6]], np.float32)
    net = Net(MEMORY, TEST)
    net.set_input_arrays(data, table[:, 1])
    net.forward()
    assert net.blobs["label"].data.flatten().tolist() == [5, 6]
    with pytest.raises(AllconvError, match="labels array must be float32 and C contiguous"):
        net.set_input_arrays(data, table[:, 1][:, None, None, None])


def test_set_input_arrays_needs_a_memory_data_first_layer():
    net = Net('layer { name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 1 '
              '} } }', TEST)
    with pytest.raises(AllconvError, match="first layer is a MemoryData layer"):
        net.set_input_arrays(np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))


@pytest.mark.parametrize("param, message", [
    ("shape { dim: 1 } shape { dim: 2 } shape { dim: 3 }",
     r"must specify 'shape' once, or once per top blob \(2\); specified 3"),
    ("shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1",
     "both shape and legacy fields were specified"),
    ("shape { dim: 1 } data_filler { } data_filler { } data_filler { }",
     "number of data fillers must be 0, 1 or equal to the number of tops: 2"),
    ("num: 1 channels: 1 height: 1", r"must specify 'width' once, or once per top blob"),
])
def test_dummy_data_checks_are_caffes(param, message):
    with pytest.raises(AllconvError, match=message):
        Net(f'layer {{ name: "d" type: "DummyData" top: "a" top: "b" dummy_data_param '
            f'{{ {param} }} }}', TEST)


# ----------------------------------------------------------------------- exact resume

def test_a_snapshot_resumes_image_data_crops_and_dummy_draws_exactly(tmp_path):
    """Shuffled ImageData with random crops and mirrors, and a random DummyData top: the
    .rngstate keeps their positions and generators, so a restored solver sees what an
    uninterrupted one sees."""
    from runtime.solver import make_solver

    listing = _image_tree(tmp_path)
    net = f"""layer {{ name: "img" type: "ImageData" top: "data" top: "label"
        transform_param {{ crop_size: 4 mirror: true mean_value: 100 scale: 0.01 }}
        image_data_param {{ source: "{listing}" root_folder: "{tmp_path / 'root'}/"
                            batch_size: 3 shuffle: true }} }}
      layer {{ name: "noise" type: "DummyData" top: "noise" dummy_data_param {{
        shape {{ dim: 3 dim: 3 dim: 4 dim: 4 }} data_filler {{ type: "gaussian" std: 0.1 }} }} }}
      layer {{ name: "sum" type: "Eltwise" bottom: "data" bottom: "noise" top: "sum" }}
      layer {{ name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"
        inner_product_param {{ num_output: 50 weight_filler {{ type: "xavier" }} }} }}
      layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}"""
    param = pb.SolverParameter(base_lr=0.01, momentum=0.9, lr_policy="fixed", max_iter=9,
                               random_seed=4, snapshot_prefix=str(tmp_path / "s"),
                               solver_mode=pb.SolverParameter.CPU, snapshot_after_train=False)
    param.net_param.CopyFrom(read_net(net))
    full = make_solver(param)
    full.step(5)
    first = make_solver(param)
    first.step(2)
    _, state = first.snapshot()
    resumed = make_solver(param)
    resumed.restore(state)
    resumed.step(3)
    for a, b in zip(full.net.learnable_params, resumed.net.learnable_params):
        assert torch.equal(a, b)


# ------------------------------------------------ Transformer, from mutation testing

def test_a_train_crop_draws_rows_when_only_the_height_exceeds_it():
    """8x4 images, crop 4: the column offset is 0, the row offset uniform in 0..4 (it was
    centred when only the height exceeded the crop)."""
    images = torch.arange(8.)[None, None, :, None].expand(64, 1, 8, 4)   # value = row index
    t = Transformer(_transform(crop_size=4), train=True, generator=torch.Generator().manual_seed(0))
    assert set(t(images)[:, 0, 0, 0].tolist()) == {0., 1., 2., 3., 4.}


@pytest.mark.parametrize("fields,train,random", [
    ({"crop_size": 4}, False, False), ({"crop_size": 4}, True, True),
    ({"mirror": True}, False, True), ({}, True, False)])
def test_only_a_train_crop_or_a_mirror_draws(fields, train, random):
    assert Transformer(_transform(**fields), train=train).random is random


def test_scale_zero_zeroes_the_data():
    """As Caffe's DataTransformer multiplies by scale (0 left the data unscaled)."""
    out = Transformer(_transform(scale=0.0), train=False)(torch.full((1, 1, 2, 2), 7.))
    assert not out.any()


def test_a_data_layers_batch_size_0_is_refused():
    # datalayer-01: Caffe's ImageData CHECK_GT(batch_size, 0); Data's CHECK(data_.count())
    with pytest.raises(AllconvError, match="batch_size"):
        Net('layer { name: "data" type: "Data" top: "data" top: "label" '
            'data_param { batch_size: 0 } }', TRAIN, feeds=Feed(_batches(1)))


def test_a_feed_giving_fewer_tensors_than_tops_is_refused():
    # datalayer-04: the label top would be left unfilled
    class DataOnly(Feed):
        def __call__(self, batch_size):
            return super().__call__(batch_size)[:1]
    net = Net('layer { name: "data" type: "Data" top: "data" top: "label" '
              'data_param { batch_size: 4 } }', TRAIN, feeds=DataOnly(_batches(1)))
    with pytest.raises(AllconvError, match="returned 1 tensor"):
        net.forward()


def test_a_mean_file_of_several_images_subtracts_its_first(tmp_path):
    # transform-11: Caffe's DataTransformer reads data_mean_ from offset 0
    mean = np.stack([np.full((3, 6, 7), 10, np.float32), np.full((3, 6, 7), 99, np.float32)])
    write_binary(tmp_path / "mean.binaryproto", array_to_blob(mean))
    images = _images()
    out = Transformer(_transform(mean_file=str(tmp_path / "mean.binaryproto")), train=False)(images)
    np.testing.assert_array_equal(out.numpy(), images.numpy().astype(np.float32) - 10)


def test_mirror_without_a_crop_flips_whole_images():
    # transform-21: Caffe's do_mirror = mirror && Rand(2), with or without crop_size
    images = _images(n=64)
    out = Transformer(_transform(mirror=True), train=True,
                      generator=torch.Generator().manual_seed(0))(images).numpy()
    x = images.numpy().astype(np.float32)
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)]
    assert all(f or np.array_equal(o, i) for f, o, i in zip(flipped, out, x))
    assert 10 < sum(flipped) < 54


def test_image_data_crops_each_image_of_a_mixed_size_batch_from_itself(tmp_path):
    # transform-23: images of several sizes that a crop makes one are transformed one by one
    net = _image_net(tmp_path, transform="transform_param { crop_size: 3 }",
                     sizes=[(6, 8), (5, 5), (9, 4), (6, 8), (4, 4)])
    out = net.forward()["data"].numpy()
    for i in range(3):
        assert (out[i] == np.float32(COLOURS[i][::-1])[:, None, None]).all()   # BGR


def test_rand_skip_1_skips_nothing(tmp_path):
    # imagelist-03: Caffe's skip = caffe_rng_rand() % rand_skip, below rand_skip
    listing = _image_tree(tmp_path)
    for seed in range(16):
        images = ImageList(str(listing), str(tmp_path / "root") + "/", rand_skip=1,
                           generator=torch.Generator().manual_seed(seed))
        assert images.passes.cursor == 0


def test_rand_skip_drawing_the_line_count_is_refused(tmp_path):
    # imagelist-04: Caffe's CHECK_GT(lines_.size(), skip); seed 1 draws 5 % 6 = 5 of 5 lines
    listing = _image_tree(tmp_path)
    with pytest.raises(AllconvError, match="rand_skip drew 5"):
        ImageList(str(listing), str(tmp_path / "root") + "/", rand_skip=6,
                  generator=torch.Generator().manual_seed(1))


def test_image_data_resizes_to_one_pixel(tmp_path):
    """io.cpp's ReadImageToCVMat resizes whenever new_height > 0 and new_width > 0: 1 x 1 too."""
    net = _image_net(tmp_path, params="new_height: 1 new_width: 1")
    assert net.blobs["data"].shape == (3, 3, 1, 1)
    assert net.forward()["data"].shape == (3, 3, 1, 1)
