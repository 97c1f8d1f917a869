"""Image files decoded as Caffe decodes them with OpenCV (4.6, the reference build's):
``imread``/``imdecode`` in colour or grey (ReadImageToCVMat, DecodeDatumToCVMat) and
``imdecode`` unchanged (an encoded Datum without ``force_color``/``force_gray``).

Pillow decodes; what OpenCV does differently is done here, each rule checked against it:

- a format OpenCV cannot read (GIF, ICO, an animated WebP, a float TIFF, a PNG cut short) is
  refused, as Caffe fails on it; a JPEG cut short decodes as libjpeg decodes it;
- a colour or grey read turns the image upright by its EXIF orientation (JPEG, PNG, TIFF), as
  OpenCV 3.1 and later do; an unchanged one keeps it as stored;
- colour is BGR; a CMYK JPEG's is OpenCV's own conversion of libjpeg's inverted values;
- grey is libjpeg's luma for a JPEG (Pillow's draft mode), libpng's rgb_to_gray for a colour
  PNG (at its depth, through its gamma: ``png.Png.grey``), cvtColor's BGR2GRAY for a WebP or
  a JPEG 2000, and the conversion OpenCV's own decoders share for the others (``_grey``);
- a PNG's structure is libpng's (``png``), a TIFF's samples libtiff's (``tiff``), a PGM's or
  PPM's OpenCV's PxM reader's (``pnm``), a 16-bit BMP's OpenCV's BMP reader's;
- 16 bits keep their high byte in a colour or grey read (a colour TIFF's are rounded, as
  libtiff rounds them); an unchanged one is refused, as Caffe's DataTransformer takes 8 bits.
"""
from __future__ import annotations

import io
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from runtime.data import jpeg, png, pnm, tiff
from runtime.errors import AllconvError

# Pillow's names of the formats OpenCV 4.6 decodes (PPM: its PBM, PGM and PPM)
OPENCV_FORMATS = ("BMP", "DIB", "JPEG", "JPEG2000", "PNG", "PPM", "SUN", "TIFF", "WEBP")
UPRIGHTED = ("JPEG", "PNG", "TIFF")      # whose EXIF orientation OpenCV applies
MAX_SIDE, MAX_PIXELS = 1 << 20, 1 << 30  # OpenCV's CV_IO_MAX_IMAGE_WIDTH/HEIGHT and _PIXELS
CVTCOLOR_GREY = ("JPEG2000", "WEBP")     # whose OpenCV decoder takes grey by cvtColor


def read_image(file, is_color: bool, size: tuple[int, int] | None = None,
               name: str | None = None) -> torch.Tensor:
    """The image in ``file`` (a path, or a stream of its bytes named ``name``) as uint8
    (3, H, W) BGR or (1, H, W) grey, resized to ``size`` as OpenCV resizes."""
    from PIL import Image, ImageOps

    name = file if name is None else name
    data = _whole(file, name)
    decoded, parsed = _for_pillow(data, name)
    with _opened(decoded, name) as image:
        fmt = image.format
        if image.mode == "F" or getattr(image, "is_animated", False) and fmt == "WEBP":
            raise AllconvError(f"{name}: could not load the image: "
                               f"{'a float' if image.mode == 'F' else 'an animated'} {fmt}, "
                               "which OpenCV's colour and grey reads cannot decode")
        if not is_color and fmt == "JPEG" and image.mode != "CMYK":
            image.draft("L", image.size)    # libjpeg's own luma, as OpenCV's grey imread
        if fmt in UPRIGHTED:
            image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):      # 16-bit grey: OpenCV keeps the high byte
            image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
        pixels = (_rgb(image, fmt, data)[:, :, ::-1] if is_color
                  else _grey(image, fmt, data, parsed))
    out = torch.from_numpy(pixels.copy())
    out = out.permute(2, 0, 1) if is_color else out[None]
    return jpeg.interpolate(out, *size).contiguous() if size else out


def decode_unchanged(data: bytes, name: str) -> torch.Tensor:
    """An encoded image as OpenCV's ``imdecode(data, IMREAD_UNCHANGED)`` gives it, uint8
    (C, H, W): grey 1 channel, colour BGR, with alpha (or a transparent colour) BGRA; one of
    16 bits or floats is refused, as Caffe's DataTransformer refuses it."""
    with _opened(_for_pillow(_whole(io.BytesIO(data), name, finish_jpeg=False), name)[0],
                 name) as image:
        mode, fmt = image.mode, image.format
        tiff_file = fmt == "TIFF"
        deep = (fmt == "PNG" and data[24:25] == b"\x10"    # IHDR's bit depth
                or pnm.deep(data, name) or tiff_file and tiff.bits(image) > 8)
        if mode.startswith("I") or mode == "F" or deep:
            raise AllconvError(f"{name}: Image data type must be unsigned byte (a "
                               f"{'16-bit' if deep else mode} image; Caffe's DataTransformer "
                               "takes 8 bits)")
        if tiff_file:
            image = tiff.as_stored(image)
        if mode in ("1", "L") or tiff_file and mode == "LA":    # libtiff: no grey alpha
            return torch.from_numpy(np.asarray(image.convert("L")).copy())[None]
        if tiff_file and mode in ("RGBA", "CMYK"):              # libtiff's RGBA: 4 channels
            pixels, alpha = tiff.rgba(data, upright=False), True
        else:
            alpha = mode in ("LA", "RGBA", "PA") or "transparency" in image.info and mode != "L"
            pixels = (np.asarray(image.convert("RGBA")) if alpha
                      else _rgb(image, fmt, data))
    order = [2, 1, 0, 3] if alpha else [2, 1, 0]          # RGB(A) -> BGR(A)
    return torch.from_numpy(pixels[:, :, order].copy()).permute(2, 0, 1)


def file_bytes(file, name) -> bytes:
    """All the bytes of ``file`` (a path, or a stream, named ``name``), or an AllconvError
    naming it."""
    try:
        return file.read() if hasattr(file, "read") else Path(file).read_bytes()
    except OSError as err:
        raise AllconvError(f"{name}: could not load the image: {err.strerror or err}") from None
    except ValueError as err:                   # a NUL in the path
        raise AllconvError(f"{str(name)!r}: not a usable path: {err}") from None


def _whole(file, name, finish_jpeg: bool = True) -> bytes:
    """The file's bytes as OpenCV's decoders would take them: a JPEG cut short ends with the
    end marker libjpeg supposes, for a colour or grey read (``finish_jpeg``: its missing
    blocks then decode grey, as libjpeg fills them); an uncompressed BMP cut short is refused,
    as OpenCV refuses it (a PNG is checked as it is opened)."""
    data = file_bytes(file, name)
    if finish_jpeg and data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9"):
        data += b"\xff\xd9"
    bmp = _bmp_header(data)
    if bmp is not None and bmp.compression == 0:
        end = bmp.offset + (abs(bmp.width) * bmp.bits + 31) // 32 * 4 * abs(bmp.height)
        if len(data) < end:                                 # uncompressed, cut short
            raise AllconvError(f"{name}: could not load the image: a BMP cut short "
                               f"({len(data)} of {end} bytes), which OpenCV cannot read")
    return data


class BmpHeader(NamedTuple):
    offset: int                 # of the pixels
    width: int
    height: int                 # negative: the rows top down
    bits: int                   # a pixel
    compression: int            # 0 none, 3 bit fields (their green mask: ``green``)
    green: int | None


def _bmp_header(data: bytes) -> BmpHeader | None:
    """A BMP's header fields (an OS/2 one's of 16-bit sizes too), or None for another file or
    one too short to hold them."""
    if data[:2] != b"BM" or len(data) < 26:
        return None
    offset, size = struct.unpack_from("<II", data, 10)
    if size == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        return BmpHeader(offset, width, height, bits, 0, None)
    if len(data) < 34:
        return None
    width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    green = struct.unpack_from("<I", data, 58)[0] if compression == 3 and len(data) >= 62 \
        else None
    return BmpHeader(offset, width, height, bits, compression, green)


def _for_pillow(data: bytes, name):
    """(the bytes Pillow is to decode, the ``png.Png`` of a PNG or None): a PNG's chunks as
    libpng takes them, a PGM's or PPM's samples as OpenCV's PxM reader takes them, any other
    file as it is."""
    if data[:8] == png.SIGNATURE:
        parsed = png.Png(data, name)
        return parsed.pillow_bytes, parsed
    return (pnm.pillow_bytes(data, name) if pnm.is_pnm(data) else data), None


@contextmanager
def _opened(data: bytes, name):
    """Pillow's image of ``data`` (``_for_pillow``'s bytes), in a format OpenCV reads and of a
    size it takes (its limits, checked from the header, before any pixel is decoded),
    Pillow's own warnings silenced (about palettes, damaged EXIF, sizes: OpenCV reads those
    files without a word)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with jpeg.pillow_image(io.BytesIO(data), name) as image:
            if image.format not in OPENCV_FORMATS:
                raise AllconvError(f"{name}: could not load the image: a {image.format} file, "
                                   "which OpenCV (Caffe's decoder) cannot read")
            width, height = image.size
            if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
                raise AllconvError(f"{name}: could not load the image: {width}x{height} "
                                   f"pixels, past OpenCV's limits of {MAX_SIDE:,} a side and "
                                   f"{MAX_PIXELS:,} in all")
            yield image


def _rgb(image, fmt: str | None, data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB as OpenCV's colour read gives it of the file ``data``: a TIFF of
    alpha, CMYK or 16-bit colour as libtiff hands it over (``tiff.rgba``); a 16-bit BMP's 5-
    or 6-bit fields shifted up, where Pillow repeats their top bits below them; a CMYK JPEG
    through OpenCV's conversion of libjpeg's values (inverted in an Adobe file, as Pillow
    reads them un-inverted), each of R, G, B = k - ((255 - c) * k >> 8) of its ink c and
    black k."""
    if fmt == "TIFF" and (stored := tiff.rgba(data, upright=True)) is not None:
        return stored[:, :, :3]
    bmp = _bmp_header(data) if fmt == "BMP" else None
    if bmp is not None and bmp.bits == 16:                  # 555, or 565 by bit fields
        green = 0xFC if bmp.green == 0x07E0 else 0xF8
        return np.asarray(image.convert("RGB")) & np.array([0xF8, green, 0xF8], np.uint8)
    if image.mode != "CMYK" or fmt != "JPEG":
        return np.asarray(image.convert("RGB"))
    ink = np.asarray(image).astype(np.int32)
    if image.info.get("adobe") is not None:
        ink = 255 - ink                     # back to what libjpeg hands OpenCV
    k = ink[:, :, 3:]
    return (k - (((255 - ink[:, :, :3]) * k) >> 8)).astype(np.uint8)


def _grey(image, fmt: str | None, data: bytes, parsed) -> np.ndarray:
    """OpenCV's grey of a decoded image, uint8 (H, W): a grey image's own values; a colour
    PNG's by libpng's rgb_to_gray (its ``png.Png``: ``parsed``); a WebP's or a JPEG 2000's by
    cvtColor's BGR2GRAY (9798, 19235 and 3735 over 2^15, rounded); any other colour image's
    by the conversion OpenCV's own decoders share (4899, 9617 and 1868 over 2^14, rounded)."""
    if image.mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"))
    if fmt == "PNG":
        return parsed.grey(image)
    r, g, b = np.moveaxis(_rgb(image, fmt, data).astype(np.int32), 2, 0)
    if fmt in CVTCOLOR_GREY:
        return ((9798 * r + 19235 * g + 3735 * b + (1 << 14)) >> 15).astype(np.uint8)
    return ((4899 * r + 9617 * g + 1868 * b + (1 << 13)) >> 14).astype(np.uint8)
