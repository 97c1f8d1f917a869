"""PxM files as runtime/data/pnm.py documents OpenCV 4.6's PxM decoder reading them. The
expectations follow that module's docstring (OpenCV's grfmt_pxm.cpp); the reference Caffe
build has no OpenCV, so they were not run against it."""
import numpy as np
import pytest

from runtime.data.pnm import deep, is_pnm, pillow_bytes
from runtime.errors import AllconvError


def samples(data: bytes) -> list:
    out = pillow_bytes(data, "f.pgm")
    return list(np.frombuffer(out.split(b"\n", 3)[3], np.uint8))


def test_a_text_pgm_clamps_to_maxval_then_scales_down():
    # v * 255 // maxval after min(v, maxval): 0, 5, 10, 12 of maxval 10
    assert samples(b"P2\n4 1\n10\n0 5 10 12\n") == [0, 127, 255, 255]


def test_a_binary_16_bit_pgm_keeps_each_samples_high_byte():
    data = b"P5\n2 1\n1000\n" + np.array([0x0102, 0x03E8], ">u2").tobytes()
    assert samples(data) == [1, 3]


def test_a_text_ppm_reads_three_samples_a_pixel():
    out = pillow_bytes(b"P3\n1 1\n255\n1 2 3\n", "f.ppm")
    assert out == b"P6\n1 1\n255\n\x01\x02\x03"


def test_the_magic_needs_white_space_after_it():
    assert is_pnm(b"P5\n1 1\n255\n\0") and not is_pnm(b"P5x1 1 255 ")


@pytest.mark.parametrize("header", [b"P2\n1 1\n65536\n", b"P2\n0 1\n255\n"])
def test_a_header_opencv_refuses(header):
    with pytest.raises(AllconvError, match="which OpenCV refuses"):
        pillow_bytes(header + b"0\n", "f.pgm")


@pytest.mark.parametrize("data", [b"P2\n1 1\n255\n9999999999\n", b"P2\n3000000000 1\n255\n0\n"])
def test_a_number_past_int_is_refused(data):
    with pytest.raises(AllconvError, match="is too large"):
        pillow_bytes(data, "f.pgm")


def test_deep_means_a_maxval_past_255():
    assert not deep(b"P5\n1 1\n255\n\0", "f") and deep(b"P5\n1 1\n256\n\0\0", "f")


def test_a_comment_ends_at_a_carriage_return():
    assert samples(b"P2\n# c\r1 1\n255\n7\n") == [7]
