"""PNG files as OpenCV 4.6 reads them through libpng 1.6.

``Png`` checks the file's structure as libpng does; its ``pillow_bytes`` hands Pillow the
chunks libpng takes the pixels from, and its ``grey`` is a colour PNG read grey: libpng's
``rgb_to_gray`` with the weights OpenCV asks for (0.299 and 0.587: 9797, 19234 and 3737 over
2^15), at the file's own depth (a 16-bit file's high byte is kept after it), through libpng's
8- or 16-bit gamma tables when the file's gamma is not 1.

The file's gamma is what libpng takes from its chunks before the palette and the image data:
a gAMA chunk, an sRGB chunk (0.45455), or an iCCP profile that libpng knows as sRGB; with none,
or within 5 % of 1, the weighted sum is taken of the stored values (truncated at 8 bits, rounded
at 16). The arithmetic is libpng's: fixed point in units of 1e-5, ``pow`` in doubles."""
from __future__ import annotations

import io
import math
import struct
import zlib
from functools import cached_property

import numpy as np

from runtime.errors import AllconvError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# the chunks Pillow needs for the pixels and their EXIF orientation; libpng passes over faults
# in the others (an empty cHRM, a bad CRC, ...), where Pillow fails, or reads another
# orientation (from XMP or an EXIF text chunk), or another frame (APNG), than OpenCV 4.6
PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"eXIf", b"IDAT", b"IEND")
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # by colour
WEIGHTS = (9797, 19234, 3737)
UNIT = 100000                   # libpng's fixed-point 1.0
SRGB_GAMMA = 45455
THRESHOLD = 5000                # a gamma within 5 % of 1 is not corrected
GAMMA_BITS_TO_8 = 11            # the input bits a 16-bit table keeps when the output is 8 bits
# The ICC profiles libpng 1.6 takes for sRGB: the MD5 words of the header, the length, the
# rendering intent, Adler-32 and CRC-32 of the whole profile.
SRGB_PROFILES = (
    ((0x29F83DDE, 0xAFF255AE, 0x7842FAE4, 0xCA83390D), 3048, 0, 0x0A3FD9F6, 0x3B8772B9),
    ((0xC95BD637, 0xE95D8A3B, 0x0DF38F99, 0xC1320389), 3052, 1, 0x4909E5E1, 0x427EBB21),
    ((0xFC663378, 0x37E2886B, 0xFD72E983, 0x8228F1B8), 60988, 0, 0xFD2144A1, 0x306FD8AE),
    ((0x34562ABF, 0x994CCD06, 0x6D2C5721, 0xD0D68C5D), 60960, 0, 0x209C35D2, 0xBBEF7812),
    ((0, 0, 0, 0), 3024, 1, 0xA054D762, 0x5D5129CE),
    ((0, 0, 0, 0), 3144, 0, 0xF784F3FB, 0x182EA552),
    ((0, 0, 0, 0), 3144, 1, 0x0398F3FC, 0xF29E526D),
)


class Png:
    """A PNG as libpng walks it, or an AllconvError naming ``name`` where libpng fails on it:
    cut short; a critical chunk whose CRC is wrong (an ancillary one's libpng drops), unknown,
    twice, or out of order; an IHDR of no valid image; no palette for a palette image, or one
    of a size past 256 or not of whole entries; less image data than the image holds (libpng
    reads it from the first run of IDAT chunks alone). ``chunks``: each to IEND as (type,
    body, whether its CRC holds)."""

    def __init__(self, data: bytes, name):
        self.name = name
        self.chunks = self._walk(data)
        header = self.chunks[0][1]
        if len(header) != 13:
            self._refuse(f"an IHDR chunk of {len(header)} bytes")
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
        if depth not in DEPTHS.get(colour, ()) or not width or not height or interlace > 1:
            self._refuse(f"an IHDR of {width}x{height}, colour type {colour} at {depth} bits, "
                         f"interlace {interlace}")
        self.width, self.height, self.depth, self.colour = width, height, depth, colour
        self.interlaced = bool(interlace)
        kinds = [kind for kind, _, _ in self.chunks]
        if colour == 3:
            if b"PLTE" not in kinds or b"IDAT" in kinds and (kinds.index(b"PLTE")
                                                            > kinds.index(b"IDAT")):
                self._refuse("no PLTE chunk before the image data of a palette image")
            palette = self.chunks[kinds.index(b"PLTE")][1]
            if len(palette) % 3 or len(palette) > 768:
                self._refuse(f"a palette of {len(palette)} bytes")
        start, end = _first_idat_run(self.chunks)
        try:
            rows = zlib.decompressobj().decompress(
                b"".join(body for _, body, _ in self.chunks[start:end]))
        except zlib.error as err:
            self._refuse(f"damaged image data ({err})")
        if len(rows) < self.image_bytes:
            self._refuse(f"not enough image data ({len(rows):,} of its {self.image_bytes:,} "
                         "bytes)")
        self.rows = rows[:self.image_bytes]     # filtered, as libpng reads them

    def _walk(self, data: bytes) -> list[tuple[bytes, bytes, bool]]:
        """Each chunk of the PNG ``data`` to IEND; a file cut short, or a critical chunk libpng
        refuses, refused."""
        found, seen, at = [], set(), 8
        while not found or found[-1][0] != b"IEND":
            size = int.from_bytes(data[at:at + 4], "big")
            if at + 12 > len(data) or at + 12 + size > len(data):
                raise AllconvError(f"{self.name}: could not load the image: a PNG cut short "
                                   "(no IEND chunk), which OpenCV cannot read")
            length, kind = struct.unpack_from(">I4s", data, at)
            body, crc = data[at + 8:at + 8 + length], data[at + 8 + length:at + 12 + length]
            intact = zlib.crc32(kind + body) == int.from_bytes(crc, "big")
            shown = kind.decode("latin-1")
            if not kind[0] & 0x20:                              # a critical chunk
                if not intact:
                    self._refuse(f"the CRC of its {shown!r} chunk is wrong")
                if kind not in (b"IHDR", b"PLTE", b"IDAT", b"IEND"):
                    self._refuse(f"an unknown critical chunk {shown!r}")
                if kind in (b"IHDR", b"PLTE") and kind in seen:
                    self._refuse(f"a second {shown} chunk")
            if (kind == b"IHDR") != (not found):
                self._refuse("no IHDR chunk first")
            found.append((kind, body, intact))
            seen.add(kind)
            at += 12 + length
        return found

    def _refuse(self, why: str):
        raise AllconvError(f"{self.name}: could not load the image: {why}, which libpng "
                           "refuses")

    @property
    def image_bytes(self) -> int:
        """The bytes of the image's filtered rows (a filter byte a row), each of its passes'
        rows for an interlaced one (Adam7)."""
        bits = self.depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[self.colour]
        passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                   (1, 0, 2, 2), (0, 1, 1, 2)] if self.interlaced else [(0, 0, 1, 1)])
        total = 0
        for x0, y0, dx, dy in passes:
            width, height = -(-(self.width - x0) // dx), -(-(self.height - y0) // dy)
            if width > 0 and height > 0:
                total += height * (1 + (width * bits + 7) // 8)
        return total

    @cached_property
    def pillow_bytes(self) -> bytes:
        """The PNG with only the chunks libpng takes the pixels and the EXIF orientation
        from: IHDR, PLTE, the image data's ``rows`` in one IDAT, IEND; a tRNS that libpng keeps
        (before the image data, the first, of the colour type's size, after the palette and
        within it); the first eXIf whose CRC holds that names a byte order. The rows go in
        stored (uncompressed) deflate blocks: they were inflated once, to check their size,
        and Pillow need not inflate them again."""
        kept, (start, _) = [], _first_idat_run(self.chunks)
        for i, (kind, body, intact) in enumerate(self.chunks):
            if kind == b"IDAT":
                if i == start:
                    kept.append((kind, zlib.compress(self.rows, 0)))
                continue
            if kind == b"tRNS" and not self._trns_kept(body, kept):
                continue
            if kind == b"eXIf" and (any(k == b"eXIf" for k, _ in kept)
                                    or body[:2] not in (b"MM", b"II")):
                continue
            if intact and kind in PIXEL_CHUNKS:
                kept.append((kind, body))
        return SIGNATURE + b"".join(
            struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in kept)

    def _trns_kept(self, body: bytes, kept: list) -> bool:
        """Whether libpng keeps this tRNS, given the chunks ``kept`` before it."""
        kinds = [kind for kind, _ in kept]
        if b"IDAT" in kinds or b"tRNS" in kinds:
            return False
        if self.colour == 3:
            palette = next((b for kind, b in kept if kind == b"PLTE"), None)
            return palette is not None and 0 < len(body) <= min(len(palette) // 3,
                                                                1 << self.depth)
        return len(body) == {0: 2, 2: 6}.get(self.colour)

    def grey(self, image) -> np.ndarray:
        """uint8 (H, W) grey, of which Pillow's image in colour is ``image`` (upright, 8 bits
        a sample: a 16-bit file's high bytes). A grey PNG that Pillow opens in colour (16
        bits with alpha) keeps its values, as libpng does."""
        rgb = np.moveaxis(np.asarray(image.convert("RGB")).astype(np.int64), 2, 0)
        if not self.colour & 2:                 # no colour
            return rgb[0].astype(np.uint8)
        header = [(kind, body) for kind, body, intact in self.chunks
                  if intact or kind == b"iCCP"]     # libpng reads a profile before its CRC
        depth = 16 if self.depth == 16 else 8
        if depth == 16:
            rgb = rgb << 8 | _low_bytes(self.pillow_bytes)
        gamma = file_gamma(header) or UNIT      # none: the file's and the screen's 1
        screen = _reciprocal(gamma)             # libpng's default: the file's own inverse
        same = (rgb[0] == rgb[1]) & (rgb[0] == rgb[2])
        if not (_significant(gamma) or _significant(screen)):       # libpng builds no tables
            total = _weigh(rgb)
            return (total >> 15 if depth == 8 else (total + 16384) >> 23).astype(np.uint8)
        if depth == 8:
            to_1, from_1 = _table_8(_reciprocal(gamma)), _table_8(_reciprocal(screen))
            kept = _table_8(_reciprocal2(gamma, screen))[rgb[0]]
            mixed = from_1[(_weigh(to_1[rgb]) + 16384) >> 15]
            return np.where(same, kept, mixed).astype(np.uint8)
        sig_bits = self._significant_bits(header)
        shift = min(max(16 - sig_bits if 0 < sig_bits < 16 else 0, 16 - GAMMA_BITS_TO_8), 8)
        to_1 = _table_16(shift, _reciprocal(gamma))
        from_1 = _table_16(shift, _reciprocal(screen))
        kept = _table_16_to_8(shift, _product2(gamma, screen))[rgb[0] >> shift]
        mixed = from_1[((_weigh(to_1[rgb >> shift]) + 16384) >> 15) >> shift]
        return (np.where(same, kept, mixed) >> 8).astype(np.uint8)

    def _significant_bits(self, header: list[tuple[bytes, bytes]]) -> int:
        """The most significant bits the sBIT chunk gives red, green or blue (0 without a
        valid one)."""
        channels = {2: 3, 6: 4}.get(self.colour)
        for kind, body in header:
            if kind in (b"PLTE", b"IDAT"):
                break
            if kind == b"sBIT":
                if channels and len(body) == channels and all(0 < b <= self.depth
                                                              for b in body):
                    return max(body[:3])
                break
        return 0


def _first_idat_run(found: list) -> tuple[int, int]:
    """The indices [start, end) of the IDAT chunks up to the first other chunk after them:
    libpng reads the image data from these, and takes a later IDAT for data past the
    image."""
    start = next((i for i, (kind, _, _) in enumerate(found) if kind == b"IDAT"), len(found))
    end = next((i for i in range(start, len(found)) if found[i][0] != b"IDAT"), len(found))
    return start, end


def file_gamma(header: list[tuple[bytes, bytes]]) -> int:
    """The file gamma (units of 1e-5; 0 for none) that libpng 1.6 reads from a PNG's chunks
    (type, body): its gAMA, sRGB and iCCP chunks in order, each checked against the last."""
    state = {"gamma": 0, "gAMA": False, "sRGB": False, "intent": False, "invalid": False}

    def keep(value: int, srgb: bool) -> bool:          # libpng's check of a new gamma
        if state["gamma"] and _significant(_muldiv(state["gamma"], UNIT, value)):
            return srgb if state["sRGB"] or srgb else True
        return True

    def set_srgb(intent: int) -> None:          # reached once at most: it sets "intent"
        if intent >= 4:
            state["invalid"] = True
        else:
            state.update(gamma=SRGB_GAMMA, sRGB=True, intent=True)

    for kind, body in header:
        if kind in (b"PLTE", b"IDAT"):      # colour-space chunks after them are out of place
            break
        if kind == b"gAMA" and len(body) == 4:
            value = int.from_bytes(body, "big")
            if not 16 <= value <= 625_000_000 or state["gAMA"]:
                state["invalid"] = True
            elif not state["invalid"] and keep(value, False):
                state.update(gamma=value, gAMA=True)
        elif kind == b"sRGB" and len(body) == 1 and not state["invalid"]:
            if state["intent"]:
                state["invalid"] = True
            else:
                set_srgb(body[0])
        elif kind == b"iCCP" and len(body) >= 14 and not state["invalid"]:
            profile = None if state["intent"] else _profile(body)
            if profile is None:
                state["invalid"] = True
            elif _is_srgb(profile):
                set_srgb(int.from_bytes(profile[64:68], "big"))
    return state["gamma"]


def _profile(body: bytes) -> bytes | None:
    """The ICC profile of an iCCP chunk's body, as long as its header says (libpng passes over
    compressed data past it), or None where libpng fails on it."""
    name, _, rest = body.partition(b"\0")
    if not 1 <= len(name) <= 79 or not rest or rest[0] != 0:
        return None
    try:
        profile = zlib.decompressobj().decompress(rest[1:])
    except zlib.error:
        return None
    length = int.from_bytes(profile[:4], "big")
    return profile[:length] if 132 <= length <= len(profile) else None


def _is_srgb(profile: bytes) -> bool:
    md5 = struct.unpack_from(">4I", profile, 84)
    length, intent = len(profile), int.from_bytes(profile[64:68], "big")
    return any(md5 == words and length == size and intent == use
               and zlib.adler32(profile) == adler and zlib.crc32(profile) == crc
               for words, size, use, adler, crc in SRGB_PROFILES)


def _weigh(rgb: np.ndarray) -> np.ndarray:
    return WEIGHTS[0] * rgb[0] + WEIGHTS[1] * rgb[1] + WEIGHTS[2] * rgb[2]


def _low_bytes(data: bytes) -> np.ndarray:
    """(3, H, W): the low bytes of a 16-bit colour PNG's samples, upright (EXIF):
    Pillow's decoder run again with the little-endian unpacker, which keeps them."""
    from PIL import Image, ImageOps

    low = Image.open(io.BytesIO(data))
    low.tile = [tile._replace(args=tile.args.replace(";16B", ";16L")) for tile in low.tile]
    return np.moveaxis(np.asarray(ImageOps.exif_transpose(low).convert("RGB")), 2, 0)


def _significant(gamma: int) -> bool:
    return not UNIT - THRESHOLD <= gamma <= UNIT + THRESHOLD


def _round(value: float) -> int:
    return math.floor(value + .5)


def _reciprocal(gamma: int) -> int:
    return _round(1e10 / gamma)


def _reciprocal2(a: int, b: int) -> int:
    return _round(1e15 / a / b)


def _product2(a: int, b: int) -> int:
    return _round(a * 1e-5 * b)


def _muldiv(a: int, times: int, divisor: int) -> int:
    return _round(float(a) * times / divisor)


def _table_8(gamma: int) -> np.ndarray:
    """libpng's 8-bit table for ``gamma``: each of 0-255 raised to it."""
    if not _significant(gamma):
        return np.arange(256)
    return np.array([v if v in (0, 255) else _round(255 * math.pow(v / 255., gamma * .00001))
                     for v in range(256)])


def _table_16(shift: int, gamma: int) -> np.ndarray:
    """libpng's 16-bit table for ``gamma``, indexed by a sample's top 16 - ``shift`` bits."""
    top = (1 << (16 - shift)) - 1
    if not _significant(gamma):
        return np.array([(v * 65535 + (1 << (15 - shift))) // top if shift else v
                         for v in range(top + 1)])
    step = 1.0 / top
    return np.array([_round(65535. * math.pow(v * step, gamma * .00001))
                     for v in range(top + 1)])


def _table_16_to_8(shift: int, gamma: int) -> np.ndarray:
    """libpng's table from a 16-bit sample's top 16 - ``shift`` bits to the nearest of the 256
    8-bit levels (times 257) after ``gamma``: each level up to its boundary."""
    top = (1 << (16 - shift)) - 1
    table = np.full(top + 1, 65535)
    last = 0
    for level in range(255):
        bound = _correct_16(level * 257 + 128, gamma)
        bound = (bound * top + 32768) // 65535 + 1
        table[last:bound] = level * 257
        last = max(last, bound)
    return table


def _correct_16(value: int, gamma: int) -> int:
    if 0 < value < 65535:
        return _round(65535 * math.pow(value / 65535., gamma * .00001))
    return value
