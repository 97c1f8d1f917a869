"""Caffe's Datum records (caffe.proto) read from a database as the Data layer reads them
(data_layer.cpp, DataTransformer's Datum path): in key order from the first record, wrapping
around at the end, never reshuffled.

A record's pixels are its ``data`` bytes (uint8, C x H x W; the first C x H x W of more),
else its ``float_data``; an ``encoded`` record holds an image file, decoded as Caffe decodes
it with OpenCV's ``imdecode``: with ``force_color`` in colour, ``force_gray`` in grey (as
ImageData's), else unchanged (`runtime.data.imread`).
Its label is ``label``.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import torch
from google.protobuf.message import DecodeError

from runtime.data.image_list import check_same_size
from runtime.data.imread import decode_unchanged, read_image
from runtime.errors import AllconvError
from runtime.proto import pb


class DatumFeed:
    """``feed(batch_size) -> (images, labels)`` over the Datum records ``db[i]`` (a sequence
    of bytes with ``key(i)`` and ``check_unchanged()``, an `LmdbFile`) of the database at
    ``path``; images are (N, C, H, W), uint8 or float32, of the batch's first record's size,
    as Caffe's Data layer reshapes its top per batch (``sizes_vary``: from batch to batch),
    another size in the batch refused, naming the record; or, ``cropped`` (a crop follows
    that makes them one), a list of (C, H, W) where their sizes differ, of one channel count;
    encoded records decode in colour with ``force_color``, in grey with ``force_gray``;
    resumable."""

    def __init__(self, db, path, force_color: bool = False, force_gray: bool = False,
                 cropped: bool = False):
        if not len(db):
            raise AllconvError(f"data source {path}: the database holds no records")
        self.db, self.path, self.cropped = db, path, cropped
        self.sizes_vary = not cropped
        self.force = force_color, force_gray
        self._cursor, self._pool = 0, None
        first = _parsed(db[0], self._name(0))
        self.sample_shape = tuple(self._image(first, 0).shape)
        if first.encoded:       # decoding images (Pillow's) runs in threads
            self._pool = ThreadPoolExecutor(4)

    def _name(self, i: int) -> str:
        return f"{self.path} record {self.db.key(i).decode('utf-8', 'backslashreplace')}"

    def _read(self, i: int) -> tuple[torch.Tensor, int]:
        """Record ``i``'s image (C, H, W) and label."""
        datum = _parsed(self.db[i], self._name(i))
        return self._image(datum, i), datum.label

    def _image(self, datum, i: int) -> torch.Tensor:
        """The image (C, H, W) of ``datum``, record ``i``."""
        if datum.encoded:
            if all(self.force):
                raise AllconvError("transform_param: cannot set both force_color and "
                                   "force_gray")
            if any(self.force):     # DecodeDatumToCVMat: imdecode in colour or grey
                image = read_image(io.BytesIO(datum.data), self.force[0], None, self._name(i))
            else:                   # DecodeDatumToCVMatNative: imdecode(data, -1)
                image = decode_unchanged(datum.data, self._name(i))
            return image
        shape = (datum.channels, datum.height, datum.width)
        count = shape[0] * shape[1] * shape[2]
        if min(shape) <= 0:
            raise AllconvError(f"{self._name(i)}: channels, height and width must be "
                               f"positive, got {'x'.join(map(str, shape))}")
        if datum.data:
            pixels = torch.frombuffer(bytearray(datum.data), dtype=torch.uint8)
        else:
            pixels = torch.tensor(datum.float_data, dtype=torch.float32)
        if len(pixels) < count:     # more: Caffe reads the first C x H x W
            field = "data bytes" if datum.data else "float_data values"
            raise AllconvError(f"{self._name(i)}: {len(pixels)} {field} for its "
                               f"{'x'.join(map(str, shape))} = {count} pixels")
        return pixels[:count].reshape(shape)

    def __call__(self, batch_size: int):
        index = [(self._cursor + k) % len(self.db) for k in range(batch_size)]
        self._cursor = (self._cursor + batch_size) % len(self.db)
        read = self._pool.map if self._pool is not None else map
        images, labels = zip(*read(self._read, index))
        self.db.check_unchanged()
        check_same_size([self._name(i) for i in index], images,
                        "a batch's records must be one size, or a crop_size must fit them all",
                        channels_only=self.cropped)
        if len({image.dtype for image in images}) > 1:
            images = [image.float() for image in images]
        labels = torch.tensor(labels, dtype=torch.float32)
        if len({tuple(image.shape) for image in images}) == 1:
            return torch.stack(images), labels
        return list(images), labels

    def state_dict(self) -> dict:
        """The read position, saved in snapshots so a resumed run reads the same batches."""
        return {"cursor": self._cursor}

    def load_state_dict(self, state: dict) -> None:
        self._cursor = int(state["cursor"])


def _parsed(record: bytes, name: str):
    """The Datum a record holds; another message is an AllconvError naming it."""
    datum = pb.Datum()
    try:
        datum.ParseFromString(record)
    except DecodeError as err:
        raise AllconvError(f"{name}: not a Caffe Datum: {err}") from None
    return datum
