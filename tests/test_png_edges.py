"""PNG cases the mutation round of runtime/data/png.py found untested.
Every expected value is libpng 1.6.39's, read with the calls OpenCV 4.6's PngDecoder makes
(png_set_rgb_to_gray(1, 0.299, 0.587), strip_16, palette_to_rgb, tRNS_to_alpha for an
unchanged read, interlace handling): the same reader agrees with real Caffe on the
data_image_png_gamma fixture's files."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch

from runtime.data.imread import decode_unchanged, read_image
from runtime.errors import AllconvError


def _chunk(kind: bytes, body: bytes, bad_crc: bool = False) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) ^ bad_crc))


def _png(width, height, depth, colour, rows: bytes, chunks=(), interlace=0) -> bytes:
    """A PNG: IHDR, ``chunks`` ((type, body[, bad CRC]) in order), one IDAT of ``rows``
    (filtered rows, a filter byte each), IEND."""
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0,
                                          interlace))
            + b"".join(_chunk(*c) for c in chunks) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def _rows(pixels: np.ndarray, depth: int = 8) -> bytes:
    return b"".join(b"\0" + row.astype(">u2" if depth == 16 else "u1").tobytes()
                    for row in pixels)


def _gama(value: int) -> tuple[bytes, bytes]:
    return (b"gAMA", struct.pack(">I", value))


RGB = np.random.default_rng(11).integers(0, 256, (3, 8, 3))
RGB[0, :4] = RGB[0, :4, :1]                                 # grey pixels too
GREY_PLAIN = [[34, 127, 182, 37, 68, 150, 193, 64], [161, 153, 151, 134, 218, 217, 49, 179],
              [154, 159, 191, 215, 149, 25, 217, 72]]      # libpng's, without gamma


def _grey(*chunks, pixels=RGB, depth=8) -> list:
    data = _png(pixels.shape[1], pixels.shape[0], depth, 2, _rows(pixels, depth), chunks)
    return read_image(io.BytesIO(data), False, name="g.png")[0].tolist()


def test_a_gamma_within_5_percent_of_1_is_not_corrected():
    """libpng's PNG_GAMMA_THRESHOLD (0.05): 0.96 and 1/1.04 take the stored values, 0.94
    does not."""
    assert _grey() == GREY_PLAIN
    assert _grey(_gama(96000)) == _grey(_gama(104000)) == GREY_PLAIN
    assert _grey(_gama(94000)) != GREY_PLAIN


def test_a_second_gama_chunk_is_ignored():
    """libpng 1.6 (png_colorspace_set_gamma): a second gAMA is a duplicate, the first
    stays."""
    first = _grey(_gama(45455))
    assert first != GREY_PLAIN
    assert _grey(_gama(45455), _gama(100000)) == first


def test_an_srgb_chunk_of_an_unknown_intent_sets_no_gamma():
    """png_colorspace_set_sRGB refuses an intent past 3 ("invalid sRGB rendering intent"):
    no gamma; intent 3 is sRGB's."""
    assert _grey((b"sRGB", b"\x04")) == GREY_PLAIN
    assert _grey((b"sRGB", b"\x03")) != GREY_PLAIN


def test_a_gama_after_the_palette_is_out_of_place_and_ignored():
    """A palette image read grey: a gAMA before PLTE corrects, one after it libpng drops."""
    palette = bytes(np.random.default_rng(2).integers(0, 256, 12).astype(np.uint8))
    index = np.random.default_rng(3).integers(0, 4, (3, 8))
    rows = b"".join(b"\0" + bytes(r.astype(np.uint8)) for r in index)

    def grey(before, after):
        data = _png(8, 3, 8, 3, rows, [*before, (b"PLTE", palette), *after])
        return read_image(io.BytesIO(data), False, name="p.png")[0].tolist()
    plain = grey([], [])
    assert grey([], [_gama(45455)]) == plain
    assert grey([_gama(45455)], []) != plain


def test_a_16_bit_colour_png_read_grey_rounds_its_16_bit_grey():
    """Without gamma: (9797 R + 19234 G + 3737 B + 16384) >> 15 at 16 bits, then the high
    byte; these pixels lie where rounding at 16 bits carries into the high byte."""
    pixels = np.array([[(43812, 60338, 34759), (60309, 65007, 37063), (15928, 47847, 64400),
                        (12487, 26194, 27738), (56995, 33523, 37199), (51568, 2367, 3021),
                        (1000, 2000, 3000), (65535, 0, 0)]])
    assert _grey(pixels=pixels, depth=16) == [[205, 236, 157, 87, 160, 67, 7, 76]]


def test_a_16_bit_pngs_sbit_below_11_bits_shortens_the_gamma_tables():
    """libpng's 16-bit gamma tables drop a sample's low max(16 - sBIT, 5) bits (at most 8):
    sBIT 8 gives other values than none, 10 or 11."""
    pixels = np.array([[(47608, 61804, 57763), (33510, 61632, 63979), (63588, 5297, 29722),
                        (39803, 18555, 24673), (41089, 52553, 38070), (11437, 44300, 57123),
                        (14395, 35647, 22164), (59127, 3968, 31270)]])
    none = [[224, 216, 148, 107, 187, 156, 115, 139]]
    assert _grey(_gama(45455), pixels=pixels, depth=16) == none
    for bits in (10, 11):
        assert _grey((b"sBIT", bytes([bits] * 3)), _gama(45455), pixels=pixels,
                     depth=16) == none
    assert _grey((b"sBIT", b"\x08\x08\x08"), _gama(45455), pixels=pixels,
                 depth=16) == [[225, 216, 148, 107, 187, 157, 115, 139]]


def test_grey_pixels_of_a_16_bit_png_with_gamma_take_libpngs_8_bit_levels():
    """Where R = G = B libpng takes its 16-to-8 table (each level up to the gamma-corrected
    boundary level * 257 + 128): values just past eight of its boundaries."""
    values = [5040, 14288, 23792, 33040, 42288, 42544, 51792, 61040]
    pixels = np.array([[(v, v, v) for v in values]])
    assert _grey(_gama(45455), pixels=pixels, depth=16) == [[19, 55, 92, 128, 164, 165, 201,
                                                             237]]


def _adam7(pixels: np.ndarray) -> bytes:
    """The filtered rows of an interlaced (Adam7) 8-bit RGB image: each pass's pixels."""
    return b"".join(_rows(pixels[y0::dy, x0::dx])
                    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8),
                                           (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                                           (0, 1, 1, 2)]
                    if pixels[y0::dy, x0::dx].size)


@pytest.mark.parametrize("height, width", [(5, 7), (9, 10)])
def test_an_interlaced_png_reads_as_its_pixels(height, width):
    pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3))
    data = _png(width, height, 8, 2, _adam7(pixels), interlace=1)
    assert torch.equal(read_image(io.BytesIO(data), True, name="i.png"),
                       torch.from_numpy(pixels[:, :, ::-1].astype(np.uint8).copy())
                       .permute(2, 0, 1))


def test_a_trns_as_long_as_the_palette_is_kept():
    """A palette of 4 entries and a tRNS of 4 alphas: BGRA, each index's alpha."""
    palette = bytes(np.random.default_rng(2).integers(0, 256, 12).astype(np.uint8))
    index = np.random.default_rng(3).integers(0, 4, (3, 8))
    rows = b"".join(b"\0" + bytes(r.astype(np.uint8)) for r in index)
    data = _png(8, 3, 8, 3, rows, [(b"PLTE", palette), (b"tRNS", b"\x10\x20\x30\x40")])
    image = decode_unchanged(data, "t.png")
    assert image.shape == (4, 3, 8)
    assert image[3].tolist() == (index * 16 + 16).tolist()


def test_ancillary_chunks_whose_crc_fails_are_dropped():
    """libpng discards an ancillary chunk whose CRC is wrong: a tRNS (no alpha channel) and
    an eXIf (no orientation) as much as a tEXt."""
    rows = _rows(RGB)
    plain = decode_unchanged(_png(8, 3, 8, 2, rows), "plain")
    trns = (b"tRNS", struct.pack(">HHH", *RGB[1, 1]), True)
    assert torch.equal(decode_unchanged(_png(8, 3, 8, 2, rows, [trns]), "t"), plain)
    exif = bytes.fromhex("4d4d002a00000008000101120003000000010006000000000000")  # 6: turn
    turned = _png(8, 3, 8, 2, rows, [(b"eXIf", exif, True)])
    assert read_image(io.BytesIO(turned), True, name="e").shape == (3, 3, 8)


def test_image_data_one_byte_short_is_refused():
    """libpng: "Not enough image data"."""
    data = _png(8, 3, 8, 2, _rows(RGB)[:-1])
    with pytest.raises(AllconvError, match=r"not enough image data \(74 of its 75 bytes\)"):
        read_image(io.BytesIO(data), True, name="s.png")
