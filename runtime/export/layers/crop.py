"""Crop -> ONNX Slice of the cropped axes from the offsets, to the reference's sizes (the
runtime's). Cropping the batch axis exports only with the prototxt's batch (``BatchFixed``)."""
from __future__ import annotations

from runtime.export.registry import batch_axis_fixes_the_batch, converter


@converter("Crop")
def crop(graph, layer, bottoms, tops, shapes):
    batch_axis_fixes_the_batch(graph, layer.axis, f"layer {layer.name!r} crops the batch axis "
                                                  "(crop_param.axis 0)")
    axes = range(layer.axis, len(shapes[0]))
    starts = [layer.offsets[a] for a in axes]
    ends = [layer.offsets[a] + shapes[1][a] for a in axes]
    graph.node("Slice", [bottoms[0], graph.shape(f"{layer.name}/starts", starts),
                         graph.shape(f"{layer.name}/ends", ends),
                         graph.shape(f"{layer.name}/axes", list(axes))], tops, name=layer.name)
