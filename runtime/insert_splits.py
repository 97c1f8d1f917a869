"""Caffe's InsertSplits (util/insert_splits.cpp): a Split layer wherever one top feeds several
consumers, with Caffe's layer and blob names, so ``net.blobs`` and the layer lists match pycaffe's.

A consumer is a bottom reading the top, or the top's own explicit nonzero ``loss_weight``. Each
consumer then reads its own Split top ``<blob>_<layer>_<top index>_split_<k>``, numbered in layer
order; a loss use takes ``k = 0``, and the Split layer ``<blob>_<layer>_<top index>_split`` carries
that loss weight on its top 0 instead of the producing layer.
"""
from __future__ import annotations

from collections import Counter

from runtime.errors import AllconvError, printable
from runtime.layers import describe
from runtime.proto import pb
from runtime.registry import did_you_mean


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{split_layer_name(layer, blob, top_index)}_{split_index}"


def is_inserted_split(layer_param) -> bool:
    """Whether a layer is a Split that InsertSplits made: named ``split_layer_name`` of its
    bottom, its tops numbered after it (names the prototxt does not give)."""
    name = layer_param.name
    return (layer_param.type == "Split" and len(layer_param.bottom) == 1
            and name.startswith(f"{layer_param.bottom[0]}_") and name.endswith("_split")
            and list(layer_param.top) == [f"{name}_{k}" for k in range(len(layer_param.top))])


def _count_consumers(layers) -> tuple[dict, Counter, dict]:
    """(source top of each bottom, consumers of each top, explicit loss weight of each top);
    a top is (layer index, top index), the last writer of its blob name."""
    last_writer, source, consumers, loss_weight = {}, {}, Counter(), {}
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer.bottom):
            if name not in last_writer:
                raise AllconvError(f"{describe(layer)}: unknown bottom blob {name!r} "
                                   f"(no earlier layer produces it{_earlier(name, last_writer)})")
            source[i, j] = last_writer[name]
            consumers[last_writer[name]] += 1
        for j, name in enumerate(layer.top):
            last_writer[name] = (i, j)
        for j, weight in enumerate(layer.loss_weight[:len(layer.top)]):
            top = last_writer[layer.top[j]]
            loss_weight[top] = weight
            if weight:
                consumers[top] += 1
    return source, consumers, loss_weight


def _earlier(name: str, blobs) -> str:
    """"; did you mean A?" for the earlier blobs nearest ``name``, else "; the earlier blobs:
    ..." (the first 10), else "" when there are none."""
    blobs = list(blobs)
    near = did_you_mean(name, blobs)
    if near:
        return "; " + near.strip(" ()")
    if not blobs:
        return ""
    more = f", ... ({len(blobs)} in all)" if len(blobs) > 10 else ""
    return f"; the earlier blobs: {', '.join(map(printable, blobs[:10]))}{more}"


def insert_splits(net):
    """A copy of NetParameter ``net`` (already filtered to one phase) with Caffe's Split layers."""
    layers = list(net.layer)
    source, consumers, loss_weight = _count_consumers(layers)
    out = pb.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    next_split = Counter()
    for i, layer in enumerate(layers):
        copy = out.layer.add()
        copy.CopyFrom(layer)
        for j, name in enumerate(layer.bottom):
            top = source[i, j]
            if consumers[top] > 1:
                copy.bottom[j] = split_blob_name(layers[top[0]].name, name, top[1],
                                                 next_split[top])
                next_split[top] += 1
        for j, name in enumerate(layer.top):
            count = consumers[i, j]
            if count <= 1:
                continue
            split = out.layer.add(name=split_layer_name(layer.name, name, j), type="Split")
            split.bottom.append(name)
            split.top.extend(split_blob_name(layer.name, name, j, k) for k in range(count))
            weight = loss_weight.get((i, j), 0.0)
            if weight:
                split.loss_weight.extend([weight] + [0.0] * (count - 1))
                copy.ClearField("loss_weight")
                next_split[i, j] += 1
    return out
