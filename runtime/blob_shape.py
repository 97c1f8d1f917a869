"""Caffe's Blob::Reshape checks (blob.cpp), applied before any tensor is made: at most 32 axes,
every dim >= 0 and within Caffe's int, at most INT_MAX elements, plus the runtime's own: the
float32 blob must fit in this machine's memory. Also Caffe's int range for the uint32 geometry
fields it keeps in an int, Blob::LegacyShape (``legacy_shape``), and Blob::Reshape's memory kept
up to its capacity (``reshaped``)."""
from __future__ import annotations

import math
import os

import torch

from runtime.errors import AllconvError
from runtime.limits import INT_MAX


def physical_memory() -> int:
    """Bytes of RAM on this machine (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


MAX_AXES = 32       # Caffe's kMaxBlobAxes


def check_blob_shape(shape, what: str) -> tuple[int, ...]:
    """``shape`` as ints, or an AllconvError naming ``what`` (a field or a blob)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_AXES:
        raise AllconvError(f"{what}: {len(shape)} axes, more than Caffe's kMaxBlobAxes "
                           f"({MAX_AXES})")
    for axis, dim in enumerate(shape):
        if dim < 0:
            raise AllconvError(f"{what}: dim {axis} is {dim} in shape {shape}; every dim "
                               "must be >= 0")
    elements = math.prod(shape)
    if elements > INT_MAX:
        raise AllconvError(f"{what}: shape {shape} has {elements:,} elements, more than "
                           f"Caffe's limit of INT_MAX ({INT_MAX:,})")
    for axis, dim in enumerate(shape):      # beside a 0 dim: no elements, but Caffe's int
        if dim > INT_MAX:
            raise AllconvError(f"{what}: dim {axis} is {dim} in shape {shape}, more than "
                               f"Caffe's int holds (INT_MAX, {INT_MAX:,})")
    memory = physical_memory()
    if memory and 4 * elements > memory:
        raise AllconvError(f"{what}: shape {shape} needs {4 * elements / 2**30:.3g} GiB as "
                           f"float32, more than this machine's {memory / 2**30:.3g} GiB")
    return shape


def legacy_shape(shape, what: str, from_end: bool = False) -> tuple[int, int, int, int]:
    """Caffe's Blob::LegacyShape: a blob of at most 4 axes read as (num, channels, height,
    width), the missing axes 1 after the last (``num()`` .. ``width()``) or, ``from_end``,
    before the first (LegacyShape(-4) .. (-1), as ShapeEquals matches a legacy BlobProto)."""
    shape = tuple(shape)
    if len(shape) > 4:
        raise AllconvError(f"{what} has {len(shape)} axes {shape}, more than the 4 of Caffe's "
                           "legacy num, channels, height, width")
    ones = (1,) * (4 - len(shape))
    return ones + shape if from_end else shape + ones


def shape_equals(source, target, legacy: bool) -> bool:
    """Caffe's Blob::ShapeEquals of a stored blob: equal, or a ``legacy`` source (read from
    num, channels, height and width, so 4-d) matching the target padded with leading 1s (old
    files store an InnerProduct weight as 1x1xMxN)."""
    source, target = tuple(source), tuple(target)
    return source == target or (legacy and len(source) == 4 and len(target) <= 4
                                and legacy_shape(target, "", from_end=True) == source)


def check_int_field(field: str, values) -> tuple[int, ...]:
    """A uint32 field that Caffe reads into an int (pad, kernel, stride): at most INT_MAX."""
    values = tuple(int(v) for v in values)
    for value in values:
        if value > INT_MAX:
            raise AllconvError(f"{field} {value} is out of range: Caffe keeps it in an int "
                               f"(at most {INT_MAX:,})")
    return values


def reshaped(tensor: torch.Tensor, shape) -> torch.Tensor:
    """``tensor`` given ``shape`` as Caffe's Blob::Reshape does: up to its memory's capacity
    the values stay where they are (a smaller shape views the first ones, a larger one within
    the capacity finds them again); past it, new memory of zeros."""
    memory = tensor.untyped_storage()
    if math.prod(shape) * tensor.element_size() <= memory.nbytes():
        return tensor.new_empty(0).set_(memory, 0, tuple(shape))
    return tensor.new_zeros(tuple(shape))
