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
  PNG (at its depth, through its gamma: ``png.grey``), cvtColor's BGR2GRAY for any other
  colour image (``_grey``);
- 16 bits keep their high byte in a colour or grey read; an unchanged one is refused, as
  Caffe's DataTransformer takes 8 bits.
"""
from __future__ import annotations

import io
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from runtime.data import jpeg, png, pnm
from runtime.errors import AllconvError

# Pillow's names of the formats OpenCV 4.6 decodes (PPM: its PBM, PGM and PPM)
OPENCV_FORMATS = ("BMP", "DIB", "JPEG", "JPEG2000", "PNG", "PPM", "SUN", "TIFF", "WEBP")
UPRIGHTED = ("JPEG", "PNG", "TIFF")      # whose EXIF orientation OpenCV applies
CVTCOLOR_GREY = ("JPEG2000", "WEBP")     # whose OpenCV decoder takes grey by cvtColor


def read_image(file, is_color: bool, size: tuple[int, int] | None = None,
               name: str | None = None) -> torch.Tensor:
    """The image in ``file`` (a path, or a stream of its bytes named ``name``) as uint8
    (3, H, W) BGR or (1, H, W) grey, resized to ``size`` as OpenCV resizes."""
    from PIL import Image, ImageOps

    name = file if name is None else name
    data = _whole(file, name)
    with _opened(data, name) as image:
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
        pixels = _rgb(image, fmt, data)[:, :, ::-1] if is_color else _grey(image, fmt, data, name)
    out = torch.from_numpy(pixels.copy())
    out = out.permute(2, 0, 1) if is_color else out[None]
    return jpeg.interpolate(out, *size).contiguous() if size else out


def decode_unchanged(data: bytes, name: str) -> torch.Tensor:
    """An encoded image as OpenCV's ``imdecode(data, IMREAD_UNCHANGED)`` gives it, uint8
    (C, H, W): grey 1 channel, colour BGR, with alpha (or a transparent colour) BGRA; one of
    16 bits or floats is refused, as Caffe's DataTransformer refuses it."""
    with _opened(_whole(io.BytesIO(data), name, finish_jpeg=False), name) as image:
        mode = image.mode
        deep = (image.format == "PNG" and data[24:25] == b"\x10"    # IHDR's bit depth
                or pnm.deep(data))
        if mode.startswith("I") or mode == "F" or deep:
            raise AllconvError(f"{name}: Image data type must be unsigned byte (a "
                               f"{'16-bit' if deep else mode} image; Caffe's DataTransformer "
                               "takes 8 bits)")
        tiff = image.format == "TIFF"
        if mode in ("1", "L") or tiff and mode == "LA":     # libtiff: no grey alpha
            return torch.from_numpy(np.asarray(image.convert("L")).copy())[None]
        if tiff and mode in ("RGBA", "CMYK"):               # libtiff's RGBA: 4 channels
            pixels, alpha = _tiff_rgba(image), True
        else:
            alpha = mode in ("LA", "RGBA", "PA") or "transparency" in image.info and mode != "L"
            pixels = (np.asarray(image.convert("RGBA")) if alpha
                      else _rgb(image, image.format, data))
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
    if data[:2] == b"BM" and len(data) >= 34:
        offset, width, height, _, bits, packing = struct.unpack_from("<I4xiiHHI", data, 10)
        rows = (abs(width) * bits + 31) // 32 * 4 * abs(height)
        if packing == 0 and len(data) < offset + rows:      # uncompressed, cut short
            raise AllconvError(f"{name}: could not load the image: a BMP cut short "
                               f"({len(data)} of {offset + rows} bytes), which OpenCV cannot "
                               "read")
    return data


@contextmanager
def _opened(data: bytes, name):
    """Pillow's image of the file's bytes ``data`` (a PNG's chunks as ``png.pillow_bytes``
    leaves them), in a format OpenCV reads, Pillow's own warnings silenced (about palettes,
    damaged EXIF, sizes: OpenCV reads those files without a word)."""
    if data[:8] == png.SIGNATURE:
        data = png.pillow_bytes(data, name)
    elif pnm.is_pnm(data):
        data = pnm.pillow_bytes(data, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with jpeg.pillow_image(io.BytesIO(data), name) as image:
            if image.format not in OPENCV_FORMATS:
                raise AllconvError(f"{name}: could not load the image: a {image.format} file, "
                                   "which OpenCV (Caffe's decoder) cannot read")
            yield image


def _rgb(image, fmt: str | None, data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB as OpenCV's colour read gives it of the file ``data``: an RGBA or
    CMYK TIFF as libtiff hands it over (``_tiff_rgba``); a 16-bit BMP's 5- or 6-bit fields
    shifted up, where Pillow repeats their top bits below them; a CMYK JPEG through OpenCV's
    conversion of libjpeg's values (inverted in an Adobe file, as Pillow reads them
    un-inverted), each of R, G, B = k - ((255 - c) * k >> 8) of its ink c and black k."""
    if fmt == "TIFF" and image.mode in ("RGBA", "CMYK"):
        return _tiff_rgba(image)[:, :, :3]
    if fmt == "BMP" and data[28:30] == b"\x10\x00":         # 16 bits a pixel: 555 or 565
        green = 0xFC if data[30] == 3 and data[58:62] == b"\xe0\x07\x00\x00" else 0xF8
        return np.asarray(image.convert("RGB")) & np.array([0xF8, green, 0xF8], np.uint8)
    if image.mode != "CMYK" or fmt != "JPEG":
        return np.asarray(image.convert("RGB"))
    ink = np.asarray(image).astype(np.int32)
    if image.info.get("adobe") is not None:
        ink = 255 - ink                     # back to what libjpeg hands OpenCV
    k = ink[:, :, 3:]
    return (k - (((255 - ink[:, :, :3]) * k) >> 8)).astype(np.uint8)


def _tiff_rgba(image) -> np.ndarray:
    """uint8 (H, W, 4) RGBA of an 8-bit RGBA or CMYK TIFF as libtiff's RGBA interface gives it
    to OpenCV: colour times alpha (v·a + 127) // 255; CMYK's (255 - c)·(255 - k) // 255,
    opaque."""
    values = np.asarray(image).astype(np.int32)
    if image.mode == "CMYK":
        rgb = (255 - values[:, :, :3]) * (255 - values[:, :, 3:]) // 255
        alpha = np.full_like(values[:, :, 3:], 255)
    else:
        alpha = values[:, :, 3:]
        rgb = (values[:, :, :3] * alpha + 127) // 255
    return np.concatenate([rgb, alpha], axis=2).astype(np.uint8)


def _grey(image, fmt: str | None, data: bytes, name) -> np.ndarray:
    """OpenCV's grey of a decoded image, uint8 (H, W): a grey image's own values; a colour
    PNG's by libpng's rgb_to_gray (``png.grey``); a WebP's or a JPEG 2000's by cvtColor's
    BGR2GRAY (9798, 19235 and 3735 over 2^15, rounded); any other colour image's by the conversion OpenCV's
    own decoders share (4899, 9617 and 1868 over 2^14, rounded)."""
    if image.mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"))
    if fmt == "PNG":
        return png.grey(data, image, name)
    r, g, b = np.moveaxis(_rgb(image, fmt, data).astype(np.int32), 2, 0)
    if fmt in CVTCOLOR_GREY:
        return ((9798 * r + 19235 * g + 3735 * b + (1 << 14)) >> 15).astype(np.uint8)
    return ((4899 * r + 9617 * g + 1868 * b + (1 << 13)) >> 14).astype(np.uint8)
