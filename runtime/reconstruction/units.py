"""Choosing a unit of a blob, and reconstructing from it down to the net's input blob."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import describe
from runtime.reconstruction.rules import relu_rule


def input_blob(net) -> str:
    """The blob images go into: the first Input top, else the first Data layer's first top."""
    if net.inputs:
        return net.inputs[0]
    sources = [layer for layer in net.layers if layer.accepts_feed]
    if not sources:
        raise AllconvError("the net has no Input or Data layer to feed images to")
    return sources[0].tops[0]


def _feeds(net, images: torch.Tensor) -> dict:
    """``images`` as the input blob; the other tops of its layer (a Data layer's label) zeros."""
    name = input_blob(net)
    source = next(layer for layer in net.layers if not layer.bottoms and name in layer.tops)
    return {top: images if top == name else
            images.new_zeros((len(images),) + tuple(net.blobs[top].shape[1:]))
            for top in source.tops}


def check_blob(net, blob: str) -> None:
    """An unknown blob name is an error that lists the valid ones."""
    if blob not in net.blobs:
        raise AllconvError(f"unknown blob {blob!r} (blobs: {', '.join(net.blobs)})")


def parse_unit(text: str) -> tuple[int, ...]:
    """``C`` or ``C,Y,X`` as a tuple of ints."""
    try:
        unit = tuple(int(part) for part in text.split(","))
    except ValueError:
        unit = ()
    if len(unit) not in (1, 3) or min(unit) < 0:
        raise AllconvError(f"--unit {text!r}: give C or C,Y,X (non-negative integers)")
    return unit


def unit_text(unit: tuple[int, ...]) -> str:
    """A unit as ``--unit`` takes it: C, or C,Y,X."""
    return ",".join(map(str, unit))


def choose_unit(activation: torch.Tensor, unit: tuple[int, ...] | None,
                blob: str = "blob") -> tuple[int, ...]:
    """The unit's index in one sample's ``activation`` (C, ...): ``unit`` as given when it names
    every axis; channel ``unit[0]`` at its strongest position for ``(C,)``; the strongest unit
    of the blob for None. Ties go to the first in row-major order."""
    shape = tuple(activation.shape)
    if unit is None:
        return _unravel(int(torch.argmax(activation)), shape)
    if len(unit) not in (1, len(shape)):
        raise AllconvError(f"--unit names {len(unit)} value(s); blob {blob!r} has units "
                           f"{shape}: give C or one index per axis")
    if any(u >= n for u, n in zip(unit, shape)):
        raise AllconvError(f"unit {unit_text(unit)} is out of range for blob {blob!r} of "
                           f"shape {shape}")
    if len(unit) == len(shape):
        return unit
    channel = activation[unit[0]]
    return (unit[0],) + _unravel(int(torch.argmax(channel)), tuple(channel.shape))


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


@torch.no_grad()
def activations(net, blob: str, images: torch.Tensor) -> torch.Tensor:
    """The blob's value for a batch of images (N, C, H, W) on the net's device."""
    check_blob(net, blob)
    return net.blob_values(**_feeds(net, images))[blob]


def reconstruct(net, blob: str, images: torch.Tensor, method: str,
                units: list[tuple[int, ...]]) -> torch.Tensor:
    """For each image i, the signal at the input blob when ``blob``'s unit ``units[i]`` is set to
    1 and every other unit to 0, passed down with ``method``'s ReLU rule (input's shape)."""
    check_blob(net, blob)
    if len(units) != len(images):
        raise AllconvError(f"{len(units)} unit(s) for {len(images)} image(s)")
    with relu_rule(net, method), torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        top = net.blob_values(**_feeds(net, x))[blob]
    if not top.requires_grad:
        raise _unreachable(net, blob)
    seed = torch.zeros_like(top)
    for i, unit in enumerate(units):
        seed[(i,) + tuple(unit)] = 1
    (signal,) = torch.autograd.grad(top, x, seed, allow_unused=True)  # rules fixed at forward
    if signal is None:          # the blob depends on weights only (a Parameter's, say)
        raise _unreachable(net, blob)
    return signal


def _unreachable(net, blob: str) -> AllconvError:
    """Why no signal passes from ``blob`` down to the input blob: a layer between them that
    Caffe gives no backward (ArgMax, Threshold), one whose propagate_down stops it, or no path
    at all."""
    source = input_blob(net)
    fed, crossed = {source}, []             # the blobs computed from the input, forward
    for layer in net.layers:
        if fed & set(layer.bottoms):
            fed |= set(layer.tops)
            crossed.append(layer)
    needed, cut = {blob}, None              # the blobs ``blob`` is computed from, backward
    for layer in reversed(crossed):
        if needed & set(layer.tops):
            if not layer.has_backward:
                return AllconvError(f"blob {blob!r} depends on the input blob {source!r} only "
                                    f"through {describe(layer.param)}: Caffe's "
                                    f"{layer.type_name} layer has no backward")
            down = layer.param.propagate_down
            for j, bottom in enumerate(layer.bottoms):
                if len(down) and not down[j]:
                    if cut is None and bottom in fed:
                        cut = (layer, bottom)
                else:
                    needed.add(bottom)
    if cut is not None and source not in needed:
        return AllconvError(f"blob {blob!r} depends on the input blob {source!r} only through "
                            f"{describe(cut[0].param)}, whose propagate_down is false for "
                            f"bottom {cut[1]!r}")
    return AllconvError(f"blob {blob!r} does not depend on the input blob {source!r}")
