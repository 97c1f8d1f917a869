"""Binary Caffe files: .caffemodel weights, .solverstate, .binaryproto blobs.

Public functions::

    blob_to_array(blob) -> np.ndarray                  # float32
    array_to_blob(array) -> BlobProto
    read_layers(path) -> list[tuple[str, StoredBlobs]]  # every layer, in file order
    read_weights(path) -> dict[str, StoredBlobs]       # blobs become arrays when read
    write_weights(path, layers, net_name="") -> None
    read_binary(path, message_cls) -> Message
    read_blob(path) -> np.ndarray                      # a .binaryproto BlobProto
    write_binary(path, message) -> None

Failures are one-line ``AllconvError``s naming the file.

Shape note: a blob stored with the legacy num/channels/height/width fields
comes back 4-d, e.g. an old InnerProduct weight is (1, 1, out, in), as a
`LegacyShaped` array. Caffe accepts such a blob (and only such a blob) for a
layer blob of equal element count whose shape, left-padded with 1s to 4 axes,
is the same; loaders should do the same.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

import numpy as np
from google.protobuf.message import DecodeError, Message

from runtime.blob_shape import check_blob_shape
from runtime.errors import AllconvError
from runtime.files import HDF5_MAGIC, ZIP_MAGIC, atomic_write_bytes, read_bytes
from runtime.limits import INT_MAX
from runtime.proto import pb

__all__ = [
    "LegacyShaped",
    "blob_to_array",
    "array_to_blob",
    "read_layers",
    "read_weights",
    "write_weights",
    "read_binary",
    "read_blob",
    "write_binary",
]

PathLike = Union[str, os.PathLike]

# Wire tag of BlobProto.data (field 5, length-delimited): (5 << 3) | 2.
_DATA_TAG = b"\x2a"     # BlobProto.data (field 5), packed
_DIFF_TAG = b"\x32"     # BlobProto.diff (field 6), packed


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class LegacyShaped(np.ndarray):
    """An array read from a blob's legacy num/channels/height/width fields, which Caffe's
    ShapeEquals matches against a shape left-padded with 1s (a ``shape`` blob must match
    exactly)."""


def blob_to_array(blob) -> np.ndarray:
    """The values of a BlobProto as a float32 array of the blob's shape.

    Like Caffe, the legacy 4-d fields win when any of them is set; otherwise
    ``shape`` is used (an empty ``shape`` is a scalar). With neither, the blob is a scalar
    (Caffe's reading), and more than one value is an error, as in Caffe's Blob::FromProto.
    ``double_data`` is used when it holds values (else ``data``), as in Blob::FromProto.
    """
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    if legacy:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    elif blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = None
    if len(blob.double_data):     # Blob::FromProto: double_data whenever it holds values
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.array(blob.data, dtype=np.float32)
    if shape is None:
        if values.size != 1:
            raise AllconvError(f"a blob without a shape is one value (Caffe's reading), but it "
                               f"holds {values.size}")
        return values.reshape(())
    expected = math.prod(check_blob_shape(shape, "blob"))    # Caffe's Blob::Reshape checks
    if values.size != expected:
        raise AllconvError(
            f"blob shape {shape} needs {expected} values but it holds {values.size}"
        )
    return values.reshape(shape).view(LegacyShaped) if legacy else values.reshape(shape)


def array_to_blob(array, diff=None) -> "pb.BlobProto":
    """A BlobProto with ``shape`` and packed float ``data`` (Caffe's current form), and the
    ``diff`` values when given (Blob::ToProto with write_diff). A 0-d (scalar) array has no
    ``shape``, as Blob::ToProto adds none for a blob of no axes (a channel-shared PReLU's)."""
    values = np.asarray(array, dtype="<f4", order="C")  # keeps 0-d arrays 0-d
    blob = pb.BlobProto()
    if values.ndim:
        blob.shape.dim.extend(int(d) for d in values.shape)
    for tag, field in ((_DATA_TAG, values), (_DIFF_TAG, diff)):
        raw = b"" if field is None else np.asarray(field, dtype="<f4", order="C").tobytes()
        if raw:
            # Appending a packed field from raw bytes is ~10x faster than
            # extending the repeated field element by element.
            blob.MergeFromString(tag + _varint(len(raw)) + raw)
    return blob


PROTOBUF_LIMIT = INT_MAX     # bytes: Caffe's ReadProtoFromBinaryFile reads no more


def read_binary(path: PathLike, message_cls) -> Message:
    """Parse a binary protobuf file (.solverstate, .binaryproto, .caffemodel)."""
    path = Path(path)
    name = message_cls.DESCRIPTOR.name
    data = read_bytes(path, f"binary {name}", limit=PROTOBUF_LIMIT)
    if not data:
        raise AllconvError(f"{path} is an empty file, not a binary {name} (its write cut "
                           "short?)")
    message = message_cls()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        kind = binary_kind(data)
        if kind is not None and kind[0] is not message_cls:
            raise AllconvError(f"{path} is {kind[1]}, not a binary {name}") from None
        other = other_kind(data)
        if other is not None:
            raise AllconvError(f"{path} is {other}, not a binary {name}") from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AllconvError(
            f"{path} is not a binary {name} (truncated or corrupt): {reason}"
        ) from None
    holds = next((holds for cls, holds, _ in _KINDS if cls is message_cls), None)
    if holds is not None and not holds(message):     # parsed, empty: another kind of file?
        kind = binary_kind(data)
        if kind is not None and kind[0] is not message_cls:
            raise AllconvError(f"{path} is {kind[1]}, not a binary {name}")
    return message


_KINDS = (  # what a binary Caffe file may be, told by what parses and holds values
    (pb.NetParameter, lambda m: any(layer.blobs for layer in list(m.layer) + list(m.layers)),
     "a .caffemodel (trained weights: give it as -weights or --weights)"),
    (pb.SolverState, lambda m: len(m.history) > 0,
     "a .solverstate (a solver's history: train -snapshot resumes from it)"),
    (pb.BlobProto, lambda m: len(m.data) > 0 or len(m.double_data) > 0,
     "a .binaryproto (one blob, such as a mean file)"))


def binary_kind(data: bytes) -> tuple[type, str] | None:
    """(the message class, what it is in words) of a binary Caffe file's bytes, or None."""
    for message_cls, holds, words in _KINDS:
        message = message_cls()
        try:
            message.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError):
            continue
        if holds(message):
            return message_cls, words
    return None


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
               (HDF5_MAGIC, "an HDF5 file (an HDF5 snapshot? rename it to end in .h5: "
                            "Caffe tells the formats apart by the name)"),
               (b"\x93NUMPY", "a numpy .npy array"), (ZIP_MAGIC, "a zip archive (.npz?)"))


def other_kind(data: bytes) -> str | None:
    """What bytes that no binary Caffe message parses hold, in words, where that is plain:
    an image or array by its signature, or text (a prototxt: a net or solver)."""
    found = next((words for signature, words in _SIGNATURES if data.startswith(signature)),
                 None)
    if found is not None:
        return found
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\n\r\t" for c in text):
        return ("a text file (a prototxt? a net goes to -model or --prototxt, a solver to "
                "-solver)")
    return None


def read_blob(path: PathLike) -> np.ndarray:
    """The float32 array of a .binaryproto file (one BlobProto: a mean file, an H matrix);
    every error names the file."""
    blob = read_binary(path, pb.BlobProto)
    try:
        return blob_to_array(blob)
    except AllconvError as err:
        raise AllconvError(f"{path}: {err}") from None


def write_binary(path: PathLike, message: Message) -> None:
    """Serialize ``message`` to ``path`` atomically."""
    atomic_write_bytes(path, message.SerializeToString())


class StoredBlobs(Sequence):
    """A layer's blobs in a .caffemodel, each made an array when it is read: as in Caffe, the
    blobs of a layer that nothing copies are never checked; a bad one is an AllconvError
    naming the file and the layer."""

    def __init__(self, protos, where: str):
        self._protos, self._where = protos, where

    def __len__(self) -> int:
        return len(self._protos)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        try:
            return blob_to_array(self._protos[i])
        except AllconvError as err:
            raise AllconvError(f"{self._where}: {err}") from None


def read_layers(path: PathLike) -> list[tuple[str, StoredBlobs]]:
    """``(layer name, blobs)`` of every layer of a .caffemodel (V2 or V1 layers), in file
    order, layers without blobs included (Caffe's CopyTrainedLayersFrom checks their count
    too; a net without learnable layers saves only such layers); `StoredBlobs` gives the
    arrays."""
    path = Path(path)
    net = read_binary(path, pb.NetParameter)
    if len(net.layer) and len(net.layers):      # Caffe's upgrade refuses it
        raise AllconvError(f"{path}: holds both V2 `layer` and V1 `layers` entries, which "
                           "Caffe refuses to upgrade")
    layers = []
    for index, layer in enumerate(list(net.layer) + list(net.layers)):
        name = layer.name       # protobuf gives bytes for a name that is not UTF-8
        if isinstance(name, bytes):     # (it can match no layer of a net read from text)
            name = name.decode("utf-8", "backslashreplace")
        layers.append((name, StoredBlobs(layer.blobs,
                                         f"{path}: layer {name or '#' + str(index)}")))
    return layers


def read_weights(path: PathLike) -> dict:
    """``{layer name: [blob arrays]}`` of the layers with blobs of a .caffemodel; a name seen
    twice keeps the later layer. A file without any blob is an error."""
    weights = {name: blobs for name, blobs in read_layers(path) if blobs}
    if not weights:
        raise no_weights(path)
    return weights


def no_weights(path: PathLike) -> AllconvError:
    """A file that parsed as a NetParameter without a blob: what it is where its bytes say."""
    try:
        with open(path, "rb") as handle:
            other = other_kind(handle.read(4096))
    except OSError:
        other = None
    if other is not None:
        return AllconvError(f"{path} is {other}, not a .caffemodel")
    return AllconvError(f"{path}: contains no layer weights (is it a .caffemodel?)")


def write_weights(
    path: PathLike,
    layers: Iterable[tuple],
    net_name: str = "",
    diffs: Iterable[Sequence[np.ndarray]] | None = None,
) -> None:
    """Write a .caffemodel: one V2 layer per entry, ``(LayerParameter, blobs)`` (its whole
    definition, as Caffe's Net::ToProto writes it) or ``(name, type, blobs)``, with each
    blob's ``diffs`` (one list per entry) when given (the solver's snapshot_diff)."""
    net = pb.NetParameter()
    net.name = net_name            # Caffe's ToProto sets it, empty too
    layers = list(layers)
    for (*definition, blobs), layer_diffs in zip(
            layers, diffs if diffs is not None else [[None] * len(e[-1]) for e in layers]):
        layer = net.layer.add()
        if len(definition) == 1:
            layer.CopyFrom(definition[0])
            layer.ClearField("blobs")
        else:
            layer.name, layer.type = definition
        for array, diff in zip(blobs, layer_diffs, strict=True):
            layer.blobs.append(array_to_blob(array, diff))
    write_binary(path, net)
