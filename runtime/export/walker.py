"""Walk a runtime ``Net`` in layer order and append its ONNX nodes, one converter per layer.

Value names: the last layer writing a blob produces the value named like the blob (so graph
outputs and Caffe's in-place chains keep Caffe's blob names); earlier writers of an in-place
blob produce ``<blob>/<layer>``. Layers that no requested output depends on are left out.
Below a Filter the batch follows the selector's values, so a converter exact only at a fixed
batch (``BatchFixed``) is refused there, static batch or not.
"""
from __future__ import annotations

import contextlib

from runtime.errors import AllconvError
from runtime.export.fusion import batchnorm_scale_pairs
from runtime.export.layers.batch_norm import batch_norm_with_scale
from runtime.export.registry import BatchFixed, converter_for
from runtime.insert_splits import is_inserted_split


def needed_layers(net, outputs) -> list:
    """The layers the blobs ``outputs`` depend on, in the net's order."""
    unknown = [o for o in outputs if o not in net.blobs]
    if unknown:
        inserted = {top for layer in net.layers if is_inserted_split(layer.param)
                    for top in layer.tops}
        raise AllconvError(f"unknown output blob(s) {', '.join(map(repr, unknown))} (blobs: "
                           f"{', '.join(b for b in net.blobs if b not in inserted)})")
    return net.layers_below(outputs)


def used_inputs(net, outputs) -> list[str]:
    """The Input tops that the layers computing ``outputs`` read (the graph's inputs);
    ``outputs`` must be blobs and not Input tops (their name is the graph input's)."""
    given = [o for o in outputs if o in net.inputs]
    if given:
        raise AllconvError(f"output blob(s) {', '.join(map(repr, given))} are net inputs (an "
                           "Input top names the graph input, even where a layer rewrites it "
                           "in place); name a blob computed by a layer")
    read = {b for layer in needed_layers(net, outputs) for b in layer.bottoms}
    return [name for name in net.inputs if name in read]


def add_net(graph, net, outputs, sources: dict[str, str],
            fuse_batchnorm: bool = True) -> dict[str, str]:
    """Append the nodes computing ``outputs`` from the Input tops (``sources``: Input top ->
    value name); returns ``{blob: value name of its final value}``. ``fuse_batchnorm``:
    BatchNorm + Scale pairs as one BatchNormalization (``runtime.export.fusion``)."""
    layers = needed_layers(net, outputs)
    last_writer = {top: layer for layer in layers for top in layer.tops}
    pairs = batchnorm_scale_pairs(layers, outputs) if fuse_batchnorm else {}
    fused = {id(bn) for bn in pairs.values()}
    values, selected = dict(sources), {}
    split_from = {top: l.bottoms[0] for l in net.layers if is_inserted_split(l.param)
                  for top in l.tops}     # the prototxt's name of an inserted Split's top
    converters = _converters(layers, fused | set(pairs), split_from)
    read = {}       # each blob's shape as the next reader sees it (in place, MVN's 4-d top)
    for layer in layers:
        written = dict(zip(layer.tops, map(tuple, layer.top_shapes)))
        if layer.param.type == "Input" or id(layer) in fused:
            read.update(written)
            continue
        filters = {selected[b] for b in layer.bottoms if b in selected}
        selected.update((top, next(iter(filters), layer.name)) for top in layer.tops
                        if filters or layer.tops_sized_by_data)
        first = pairs.get(id(layer), layer)      # a fused pair reads the BatchNorm's bottom
        bottoms = [values[b] for b in first.bottoms]
        tops = [graph.reserve(top) if last_writer[top] is layer and top not in sources
                else graph.fresh(f"{top}/{layer.name}") for top in layer.tops]
        shapes = [read[b] for b in first.bottoms]
        try:
            with _batch_follows_data(graph, filters):
                if first is layer:
                    converters[id(layer)](graph, layer, bottoms, tops, shapes)
                else:
                    batch_norm_with_scale(graph, first, layer, bottoms, tops, shapes)
        except BatchFixed as fixed:
            if not filters:
                raise
            raise AllconvError(f"{fixed}, and its input's batch follows the selection of "
                               f"Filter {sorted(filters)[0]!r}: it does not export") from None
        values.update(zip(layer.tops, tops, strict=True))
        read.update(written)
    return values


def _converters(layers, fused: set, split_from: dict) -> dict:
    """``{id(layer): its converter}`` but for Input layers and those ``fused`` (ids), looked up
    before any converts: a layer that does not export is the error, not what a converter
    before it finds (a fixed batch's warning)."""
    converters = {}
    for layer in layers:
        if layer.param.type != "Input" and id(layer) not in fused:
            reads = layer.bottoms[0] if layer.bottoms else None
            converters[id(layer)] = converter_for(layer, split_from.get(reads, reads))
    return converters


@contextlib.contextmanager
def _batch_follows_data(graph, filters):
    """While converting a layer below a Filter (``filters`` not empty), the graph's batch is
    not the prototxt's, even in a static export."""
    kept = graph.batch_is_the_nets
    graph.batch_is_the_nets = kept and not filters
    try:
        yield
    finally:
        graph.batch_is_the_nets = kept
