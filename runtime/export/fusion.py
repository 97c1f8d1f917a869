"""Which layers export together: a BatchNorm whose output only a channel-wise learned Scale
reads (Caffe's BatchNorm + Scale pair, as in ResNet) becomes one ONNX BatchNormalization."""
from __future__ import annotations

from collections import Counter


def batchnorm_scale_pairs(layers, outputs) -> dict[int, object]:
    """``{id(Scale layer): its BatchNorm layer}`` for the pairs among ``layers`` (in net order)
    where the BatchNorm's top is read by the Scale alone and is not a final output."""
    producer, readers, reads = {}, Counter(), {}
    for layer in layers:
        for bottom in layer.bottoms:
            source = producer.get(bottom)
            readers[source] += 1
            reads[(id(layer), bottom)] = source
        producer.update((top, (id(layer), layer)) for top in layer.tops)
    final = {producer[o] for o in outputs if o in producer}
    pairs = {}
    for layer in layers:
        if layer.param.type != "Scale" or not _channel_factor(layer):
            continue
        source = reads[(id(layer), layer.bottoms[0])]
        if (source is not None and source[1].param.type == "BatchNorm"
                and readers[source] == 1 and source not in final):
            pairs[id(layer)] = source[1]
    return pairs


def _channel_factor(scale) -> bool:
    """A Scale with its own (C,) factor on axis 1."""
    return scale.learned and scale.axis == 1 and scale.blobs[0].dim() == 1
