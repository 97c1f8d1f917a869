"""The shape arithmetic and checks Caffe's layers share: axes, counts, (h, w) field pairs,
labels per position and image blobs."""
from __future__ import annotations

import math

from runtime.errors import AllconvError


def canonical_axis(axis: int, num_axes: int) -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end."""
    if not -num_axes <= axis < num_axes:
        raise AllconvError(f"axis {axis} is out of range for a {num_axes}-axis blob")
    return axis % num_axes


def count(shape, start: int = 0, end: int | None = None) -> int:
    """Caffe's Blob::count(start, end): the product of the dims in [start, end)."""
    return math.prod(shape[start:end])


def hw_pair(message, name: str, both: bool = True) -> tuple[int, int] | None:
    """``(name_h, name_w)`` when either is set, else None; ``both``: one alone is an error
    (otherwise the other keeps its proto default)."""
    if f"{name}_h" not in message.DESCRIPTOR.fields_by_name:
        return None
    has_h, has_w = message.HasField(f"{name}_h"), message.HasField(f"{name}_w")
    if not (has_h or has_w):
        return None
    if both and not (has_h and has_w):
        raise AllconvError(f"{name}_h and {name}_w must be given together")
    return getattr(message, f"{name}_h"), getattr(message, f"{name}_w")


def check_labels(scores, labels, axis: int) -> None:
    """One label per position of ``scores`` outside ``axis`` (Caffe's outer_num × inner_num)."""
    positions = count(scores, 0, axis) * count(scores, axis + 1)
    if count(labels) != positions:
        raise AllconvError(f"label shape {labels} holds {count(labels)} labels; scores shape "
                           f"{scores} needs {positions} (one per position)")


def check_image_blob(shape) -> None:
    """A bottom of the layers that need (N, C, H, W): Pooling, SPP, LRN."""
    if len(shape) != 4:
        raise AllconvError(f"bottom shape {shape} is not 4-d (N, C, H, W)")
