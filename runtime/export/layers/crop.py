"""Crop -> ONNX Slice of the cropped axes from the offsets, to the reference's sizes (the
runtime's). Cropping the batch axis does not export (the batch is dynamic)."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.export.registry import converter


@converter("Crop")
def crop(graph, layer, bottoms, tops, shapes):
    if layer.axis == 0:
        raise AllconvError(f"layer {layer.name!r}: cropping the batch axis (crop_param.axis 0) "
                           "does not export (the batch is dynamic)")
    axes = range(layer.axis, len(shapes[0]))
    starts = [layer.offsets[a] for a in axes]
    ends = [layer.offsets[a] + shapes[1][a] for a in axes]
    graph.node("Slice", [bottoms[0], graph.shape(f"{layer.name}/starts", starts),
                         graph.shape(f"{layer.name}/ends", ends),
                         graph.shape(f"{layer.name}/axes", list(axes))], tops, name=layer.name)
