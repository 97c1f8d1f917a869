"""TIFF files as OpenCV 4.6 takes them from libtiff, where Pillow's modes hand over other
values: 16-bit samples rounded to 8 bits, (v + 128) // 257; colour with unassociated alpha
times it, (v·a + 127) // 255, and associated alpha's colour as stored (Pillow divides it out);
CMYK as (255 − c)·(255 − k) // 255, opaque."""
from __future__ import annotations

import io

import numpy as np


ORIENTATION = 274                   # the TIFF tag
# Newer Pillow releases (13 here) turn a TIFF by its orientation tag as they load it, and drop
# the tag: the turn that undoes each
_UNTURN = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
           6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def as_stored(image):
    """The TIFF ``image`` (as Pillow opened it, not yet loaded), loaded in the orientation its
    file stores, as OpenCV's unchanged read takes it."""
    from PIL import Image

    orientation = image.tag_v2.get(ORIENTATION)
    image.load()
    if orientation in _UNTURN and ORIENTATION not in image.tag_v2:     # Pillow turned it
        return image.transpose(getattr(Image.Transpose, _UNTURN[orientation]))
    return image


def bits(image) -> int:
    """The widest of the BitsPerSample of a TIFF as Pillow opened it (not yet loaded)."""
    return max(image.tag_v2.get(258, (8,)) or (8,))


def rgba(data: bytes, upright: bool) -> np.ndarray | None:
    """uint8 (H, W, 4) RGBA of the TIFF ``data`` as libtiff's RGBA interface gives it to
    OpenCV (``upright``: turned by its EXIF orientation, as a colour or grey read is), where
    Pillow's mode differs (CMYK, alpha, 16-bit colour); None where it does not."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        mode, deep = image.mode, bits(image) > 8
        rawmode = image.tile[0].args[0] if image.tile else mode
    if mode == "CMYK":
        values = _decoded(data, upright).astype(np.int32)
        rgb = (255 - values[:, :, :3]) * (255 - values[:, :, 3:]) // 255
        return np.concatenate([rgb, np.full_like(rgb[:, :, :1], 255)], axis=2).astype(np.uint8)
    associated, rawmode = rawmode.startswith("RGBa"), rawmode.replace("RGBa", "RGBA")
    if mode not in ("RGB", "RGBA") or not (associated or deep or mode == "RGBA"):
        return None
    values = _decoded(data, upright, rawmode)
    if deep:                                    # a second pass keeps the low bytes
        values = values << 8 | _decoded(data, upright,
                                        rawmode[:-1] + "BL"[rawmode.endswith("B")])
        values = _to_8_bits(values)
    if values.shape[2] == 3:
        return np.concatenate([values, np.full_like(values[:, :, :1], 255)], axis=2)
    if associated:
        return values.astype(np.uint8)
    values = values.astype(np.int32)
    rgb = (values[:, :, :3] * values[:, :, 3:] + 127) // 255
    return np.concatenate([rgb, values[:, :, 3:]], axis=2).astype(np.uint8)


def _to_8_bits(values: np.ndarray) -> np.ndarray:
    """16-bit samples as libtiff and OpenCV round them to 8 bits."""
    return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)


def _decoded(data: bytes, upright: bool, rawmode: str | None = None) -> np.ndarray:
    """(H, W, C) int64 samples of the TIFF ``data`` (``upright``: turned), decoded by Pillow
    with ``rawmode``'s unpacker (None: its own): ``RGBA`` keeps associated alpha's colour as
    stored, and of a 16-bit sample ``;16L`` keeps the high byte of little-endian data and the
    low byte of big-endian data, ``;16B`` the other."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        if rawmode is not None:
            image.tile = [tile._replace(args=(rawmode, *tile.args[1:])) for tile in image.tile]
        return np.asarray(ImageOps.exif_transpose(image) if upright
                          else as_stored(image)).astype(np.int64)
