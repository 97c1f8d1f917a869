"""PBM, PGM and PPM files (P1, P2, P3, P5, P6) as OpenCV 4.6's PxM decoder reads them.

Where Pillow scales every sample by 255 / maxval, OpenCV keeps a binary file's samples as
stored (a maxval of 15 reads 0-15; 16 bits keep their high byte) and scales only a text
file's, each clamped to maxval first, by ``v * 255 // maxval`` (16 bits: the high byte); a
text PBM's samples are single digits, any but 0 black (Pillow refuses a 2). ``pillow_bytes``
turns such a file into the binary 8-bit file Pillow reads to those samples; a binary PBM (P4)
reads alike in both and passes unchanged."""
from __future__ import annotations

import re

import numpy as np

from runtime.errors import AllconvError
from runtime.limits import INT_MAX

SPACE = b" \t\n\v\f\r"


def is_pnm(data: bytes) -> bool:
    """A file OpenCV takes for PxM: P1-P6 and a white-space byte."""
    return len(data) >= 3 and data[:1] == b"P" and data[1:2] in b"123456" and data[2] in SPACE


def deep(data: bytes, name) -> bool:
    """A PGM or PPM of 16 bits a sample (maxval over 255)."""
    return is_pnm(data) and data[1:2] not in b"14" and _Reader(data, name).header()[2] > 255


def pillow_bytes(data: bytes, name) -> bytes:
    """The binary 8-bit PGM or PPM (maxval 255) of the samples OpenCV reads from ``data``, or
    ``data`` itself for a P4; a file OpenCV fails on is an AllconvError naming ``name``."""
    code = data[1:2]
    if code == b"4":
        return data
    reader = _Reader(data, name)
    width, height, maxval = reader.header()
    if code == b"1":                        # one digit a sample: 0 white, any other black
        ink = np.array([reader.number(digits=1) for _ in range(width * height)]) != 0
        return f"P5\n{width} {height}\n255\n".encode() + np.where(ink, 0, 255).astype(
            np.uint8).tobytes()
    count = width * height * (3 if code in b"36" else 1)
    if code in b"56":
        size = count * (2 if maxval > 255 else 1)
        raw = data[reader.at:reader.at + size]
        if len(raw) < size:
            raise AllconvError(f"{name}: could not load the image: a PNM cut short ({len(raw)} "
                               f"of its {size} bytes of samples)")
        samples = np.frombuffer(raw, ">u2" if maxval > 255 else np.uint8).astype(np.int64)
    else:
        samples = np.minimum(reader.numbers(count), maxval)
        if maxval <= 255:
            samples = samples * 255 // maxval
    if maxval > 255:
        samples = samples >> 8
    header = f"P{6 if code in b'36' else 5}\n{width} {height}\n255\n".encode()
    return header + samples.astype(np.uint8).tobytes()


class _Reader:
    """OpenCV's ReadNumber over a PxM file: white space and ``#`` comments skipped, the byte
    after a number's digits consumed with it."""

    def __init__(self, data: bytes, name):
        self.data, self.name, self.at = data, name, 2

    def header(self) -> tuple[int, int, int]:
        width, height = self.number(), self.number()
        maxval = 1 if self.data[1:2] in b"14" else self.number()
        if width <= 0 or height <= 0 or not 0 < maxval < 65536:
            raise AllconvError(f"{self.name}: could not load the image: a PNM header of "
                               f"{width}x{height}, maxval {maxval}, which OpenCV refuses")
        return width, height, maxval

    def numbers(self, count: int) -> np.ndarray:
        """The next ``count`` numbers: split at once where only digits and white space
        follow (no comment) and no number is of ten digits or more, else read one by one."""
        rest = self.data[self.at:]
        if re.fullmatch(rb"[0-9 \t\n\v\f\r]*", rest):
            words = rest.split()[:count + 1]
            if (len(words) > count or len(words) == count and rest[-1:] in SPACE) \
                    and all(len(word) < 10 for word in words[:count]):
                return np.array(words[:count]).astype(np.int64)
        return np.array([self.number() for _ in range(count)], dtype=np.int64)

    def number(self, digits: int = 0) -> int:
        """The next number (at most ``digits`` of them, where given: its next byte is then
        not read)."""
        data, at = self.data, self.at
        while at < len(data) and not 48 <= data[at] <= 57:
            if data[at] == 35:                                  # '#': to the line's end
                while at < len(data) and data[at] not in b"\n\r":
                    at += 1
                at += 1
            elif data[at] in SPACE:
                at += 1
            else:
                raise AllconvError(f"{self.name}: could not load the image: byte {at} of the "
                                   f"PNM file is {data[at:at + 1]!r}, where OpenCV reads a number")
        start = at
        while at < len(data) and 48 <= data[at] <= 57 and (not digits or at - start < digits):
            at += 1
        if at == start or at >= len(data) and not digits:    # none, or no byte after it
            raise AllconvError(f"{self.name}: could not load the image: a PNM cut short")
        value = int(data[start:at])
        if value > INT_MAX:
            raise AllconvError(f"{self.name}: could not load the image: the PNM number "
                               f"{value} is too large")
        self.at = at if digits else at + 1                     # its end byte read too
        return value
