"""Caffe's backward bookkeeping (net.cpp, Net::Init): which layers run Backward, and for which
bottoms each computes a diff.

A layer needs backward when a bottom blob does, or when one of its own params has a non-zero
lr_mult; its tops then need backward too. ``propagate_down`` given on a layer decides its
bottoms alone. Walking back from the losses, a layer that contributes to no loss, or whose
every top is read by a layer that propagates nothing to it, runs no backward. Under
``force_backward`` every layer runs backward, for every bottom but those its
``kept_from_force_backward`` names (Caffe's AllowForceBackward: labels, cont). A layer that
runs backward writes the diffs of its ``diffs_whenever_run`` bottoms, needed or not."""
from __future__ import annotations

from dataclasses import dataclass

from runtime.layers import describe


@dataclass(frozen=True)
class BackwardPlan:
    layer_need: tuple[bool, ...]
    bottom_need: tuple[tuple[bool, ...], ...]   # the bottoms whose diff a layer writes
    cut: tuple[bool, ...]       # layers under a loss that the skip rule stops from running
    told: tuple[tuple[bool, ...], ...]          # Caffe's bottom_need_backward_: the flags a
    #                                             layer's Backward gets (its propagate_down)


def backward_plan(layers, param_needs, force_backward: bool) -> BackwardPlan:
    """``layers``: the net's layers in order (``bottoms``, ``tops``, ``loss_weights``,
    ``param.propagate_down`` and ``kept_from_force_backward``); ``param_needs``: per layer,
    whether it computes a param diff."""
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
    under_loss, skipped, cut = set(), set(), [False] * len(layers)
    for i in reversed(range(len(layers))):
        layer = layers[i]
        contributes = any(w or t in under_loss for t, w in zip(layer.tops, layer.loss_weights))
        if layer_need[i] and all(t in skipped for t in layer.tops):
            layer_need[i], bottom_need[i] = False, [False] * len(layer.bottoms)
            cut[i] = contributes
        if not contributes:
            layer_need[i], bottom_need[i] = False, [False] * len(layer.bottoms)
        for j, b in enumerate(layer.bottoms):
            if contributes:
                under_loss.add(b)
            if not bottom_need[i][j]:
                skipped.add(b)
    if force_backward:
        layer_need, cut = [True] * len(layers), [False] * len(layers)
        bottom_need = [[need or j not in l.kept_from_force_backward for j, need in enumerate(b)]
                       for l, b in zip(layers, bottom_need)]
    told = tuple(tuple(b) for b in bottom_need)
    bottom_need = [[need or (run and j in (l.diffs_whenever_run or ())) for j, need in enumerate(b)]
                   for l, b, run in zip(layers, bottom_need, layer_need)]
    return BackwardPlan(tuple(layer_need), tuple(tuple(b) for b in bottom_need), tuple(cut),
                        told)


def refused_backward(layers, plan: BackwardPlan) -> str | None:
    """Why Caffe's Net::Backward would abort, at the last layer that aborts (Backward runs
    from the top down): a layer without a backward that runs one, or a bottom whose diff its
    Backward refuses to compute (``no_backward_to``). None when it runs through."""
    for layer, need, bottoms in reversed(list(zip(layers, plan.layer_need, plan.bottom_need))):
        if not need:
            continue
        if not layer.has_backward:
            return f"{describe(layer.param)}: Caffe's {layer.type_name} layer has no backward"
        for j, what in sorted(layer.no_backward_to.items()):
            j %= len(layer.bottoms)
            if bottoms[j]:
                return (f"{describe(layer.param)}: Caffe cannot back-propagate to bottom {j} "
                        f"{layer.bottoms[j]!r} ({what}), and this net asks for its diff "
                        "(force_backward, propagate_down or a learnable layer below it)")
    return None
