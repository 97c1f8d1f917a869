"""Where the batch lies in each blob of a net, for the ONNX graph's dims: its axis
(``batch_axes``) and the blobs whose batch axis holds an extent of their own (``own_extents``),
from what the layers declare (``Layer.batch_axes``, ``batch_index_bottom``,
``operand_batch_axis``)."""
from __future__ import annotations


def batch_axes(layers) -> dict[str, int]:
    """The axis of each blob that holds the batch: what a layer's ``batch_axes`` (bottom
    axes, top axes) says (the recurrent layers' T × N × … blobs: axis 1), else the axis of
    the layer's first bottom; a source's top takes the axis its first reader expects, back
    through the layers that keep it (Split), else 0. None: the blob has no batch axis (a
    Scale's or Bias's bottom 1 that covers only axes after the batch)."""
    wanted = {}
    for layer in reversed(layers):
        if layer.batch_axes is not None:
            wanted.update(zip(layer.bottoms, layer.batch_axes[0]))
        elif layer.bottoms:
            read = [wanted[top] for top in layer.tops if top in wanted]
            if read:
                wanted[layer.bottoms[0]] = read[0]
            if len(layer.bottoms) > 1 and layer.operand_batch_axis is not None:
                wanted[layer.bottoms[1]] = layer.operand_batch_axis(read[0] if read else 0)
    axes = {}
    for layer in layers:
        if layer.batch_axes is not None:
            axes.update(zip(layer.tops, layer.batch_axes[1]))
        elif layer.bottoms:
            axes.update((top, axes.get(layer.bottoms[0], 0)) for top in layer.tops)
        else:
            axes.update((top, wanted.get(top, 0)) for top in layer.tops)
    return axes


def own_extents(layers) -> set[str]:
    """The blobs whose batch axis holds an extent of their own, not the net's batch: a
    BatchReindex's top (as long as its index, whatever the data's batch), its index and what the
    index is computed from, back to an Input (through Splits, a Power, ...), and on to what
    layers compute from all of these."""
    own, index = set(), set()
    for layer in layers:
        if layer.batch_index_bottom is not None:
            own.update(layer.tops)
            index.add(layer.bottoms[layer.batch_index_bottom])
    for layer in reversed(layers):
        if layer.bottoms and index.intersection(layer.tops):
            index.add(layer.bottoms[0])
    own |= index
    for layer in layers:
        if layer.bottoms and layer.bottoms[0] in own:
            own.update(layer.tops)
    return own
