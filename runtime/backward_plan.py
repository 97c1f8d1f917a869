"""Caffe's backward bookkeeping (net.cpp, Net::Init): which layers run Backward, and for which
bottoms each computes a diff.

A layer needs backward when a bottom blob does, or when one of its own params has a non-zero
lr_mult; its tops then need backward too. ``propagate_down`` given on a layer decides its
bottoms alone. Walking back from the losses, a layer that contributes to no loss, or whose
every top is read by a layer that propagates nothing to it, runs no backward. Under
``force_backward`` every layer runs backward, for every bottom."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackwardPlan:
    layer_need: tuple[bool, ...]
    bottom_need: tuple[tuple[bool, ...], ...]


def backward_plan(layers, param_needs, force_backward: bool) -> BackwardPlan:
    """``layers``: the net's layers in order (``bottoms``, ``tops``, ``loss_weights`` and
    ``param.propagate_down``); ``param_needs``: per layer, whether it computes a param diff."""
    blob_need, layer_need, bottom_need = {}, [], []
    for layer, params in zip(layers, param_needs):
        down = layer.param.propagate_down
        bottom_need.append([down[j] if len(down) else blob_need[b]
                            for j, b in enumerate(layer.bottoms)])
        need = any(blob_need[b] for b in layer.bottoms) or params
        layer_need.append(need)
        for j, top in enumerate(layer.tops):
            in_place = j < len(layer.bottoms) and layer.bottoms[j] == top
            blob_need[top] = need or (in_place and blob_need[top])
    under_loss, skipped = set(), set()
    for i in reversed(range(len(layers))):
        layer = layers[i]
        contributes = any(w or t in under_loss for t, w in zip(layer.tops, layer.loss_weights))
        if layer_need[i] and all(t in skipped for t in layer.tops):
            layer_need[i], bottom_need[i] = False, [False] * len(layer.bottoms)
        if not contributes:
            layer_need[i], bottom_need[i] = False, [False] * len(layer.bottoms)
        for j, b in enumerate(layer.bottoms):
            if contributes:
                under_loss.add(b)
            if not bottom_need[i][j]:
                skipped.add(b)
    if force_backward:
        layer_need = [True] * len(layers)
        bottom_need = [[True] * len(l.bottoms) for l in layers]
    return BackwardPlan(tuple(layer_need), tuple(tuple(b) for b in bottom_need))
