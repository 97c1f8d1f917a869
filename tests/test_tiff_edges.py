"""runtime/data/tiff.py (a mutation round). Values that tell libtiff's
roundings apart: 16-bit (v + 128) // 257, where the high byte or (v + 127) // 257 differ; alpha
(v·a + 127) // 255 where + 128 differs; CMYK's (255 − c)(255 − k) // 255 and its opaque alpha;
a big-endian 16-bit file; and an RGBA file's orientation tag in a colour read (OpenCV's TIFF
decoder turns it; not checked against OpenCV here, which the reference build lacks. With Pillow 13 the
turn is Pillow's own TiffImagePlugin.load_end, so this last test does not depend on tiff.py's
exif_transpose)."""
import io
import struct

import numpy as np

from runtime.data.imread import decode_unchanged, read_image


def _tiff(samples, extra=None, photometric=2, orientation=None, big=False):
    """A one-strip TIFF of ``samples`` (H, W, C; uint8 or uint16)."""
    e = ">" if big else "<"
    height, width, channels = samples.shape
    pixels = samples.astype(f"{e}u2" if samples.dtype == np.uint16 else np.uint8).tobytes()
    bits = 16 if samples.dtype == np.uint16 else 8
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, channels, None), (259, 3, 1, 1),
            (262, 3, 1, photometric), (273, 4, 1, None)] \
        + ([(274, 3, 1, orientation)] if orientation else []) \
        + [(277, 3, 1, channels), (278, 3, 1, height), (279, 4, 1, len(pixels)), (284, 3, 1, 1)] \
        + ([(338, 3, 1, extra)] if extra else [])
    ifd = 8
    after = ifd + 2 + 12 * len(tags) + 4
    bits_at, pixels_at = after, after + 2 * channels

    def entry(tag, kind, count, value):
        if tag in (258, 273) or kind == 4:
            return struct.pack(f"{e}HHII", tag, kind, count,
                               bits_at if tag == 258 else pixels_at if tag == 273 else value)
        return struct.pack(f"{e}HHIHH", tag, kind, count, value, 0)
    return ((b"MM\0*" if big else b"II*\0") + struct.pack(f"{e}I", ifd)
            + struct.pack(f"{e}H", len(tags)) + b"".join(entry(*t) for t in tags)
            + b"\0\0\0\0" + struct.pack(f"{e}{channels}H", *[bits] * channels) + pixels)


def test_16_bit_colour_rounds_as_libtiff_in_either_byte_order():
    deep = np.array([[[65280, 129, 200], [32895, 383, 65535]]], np.uint16)
    want = (deep.astype(np.int64) + 128) // 257                    # [254, 1, 1], [128, 1, 255]
    assert want[0, 0].tolist() == [254, 1, 1]
    for big in (False, True):
        got = read_image(io.BytesIO(_tiff(deep, big=big)), True, name="t")
        assert got[:, 0].T.tolist() == want[0, :, ::-1].tolist(), big      # B, G, R


def test_unassociated_alpha_rounds_with_127():
    rgba = np.array([[[127, 1, 128, 1], [255, 254, 3, 128]]], np.uint8)
    got = read_image(io.BytesIO(_tiff(rgba, extra=2)), True, name="t")
    want = (rgba[0, :, 2::-1].astype(int) * rgba[0, :, 3:] + 127) // 255
    assert want[0].tolist() == [1, 0, 0]                            # 127·1: 0, not 1
    assert got[:, 0].T.tolist() == want.tolist()


def test_cmyk_reads_as_libtiffs_rgba_opaque():
    cmyk = np.array([[[0, 100, 255, 55], [10, 20, 30, 0]]], np.uint8)
    c = cmyk.astype(int)
    rgb = (255 - c[0, :, :3]) * (255 - c[0, :, 3:]) // 255           # [200, 121, 0], ...
    assert rgb[0].tolist() == [200, 121, 0]
    data = _tiff(cmyk, photometric=5)
    got = read_image(io.BytesIO(data), True, name="t")
    assert got[:, 0].T.tolist() == rgb[:, ::-1].tolist()
    unchanged = decode_unchanged(data, "t")                          # BGRA, alpha opaque
    assert unchanged[:, 0].T.tolist() == [[*p[::-1], 255] for p in rgb.tolist()]


def test_an_rgba_tiffs_orientation_turns_a_colour_read():
    rgba = np.array([[[200, 100, 50, 255], [10, 20, 30, 255]]], np.uint8)
    plain = read_image(io.BytesIO(_tiff(rgba, extra=2)), True, name="t")
    turned = read_image(io.BytesIO(_tiff(rgba, extra=2, orientation=3)), True, name="t")
    assert turned.tolist() == plain.flip(1, 2).tolist()                # 180 degrees


def test_an_unchanged_read_keeps_a_tiffs_stored_orientation():
    """OpenCV applies no orientation to an IMREAD_UNCHANGED read; newer Pillow releases turn a
    TIFF as they load it, which tiff.as_stored undoes (RGB, RGBA and CMYK files; tags 6 and 8
    swap the sides, 2 flips)."""
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    for channels, photometric, extra in ((3, 2, None), (4, 2, 2), (4, 5, None)):
        samples = pixels[:, :, :channels]
        plain = decode_unchanged(_tiff(samples, extra=extra, photometric=photometric), "t")
        assert tuple(plain.shape[1:]) == (2, 3)
        for orientation in (2, 6, 8):
            data = _tiff(samples, extra=extra, photometric=photometric, orientation=orientation)
            assert decode_unchanged(data, "t").tolist() == plain.tolist(), (channels, orientation)
        turned = read_image(io.BytesIO(_tiff(samples, extra=extra, photometric=photometric,
                                              orientation=6)), True, name="t")
        assert tuple(turned.shape[1:]) == (3, 2), channels          # a colour read turns it
