"""Slice -> ONNX Split: the runtime's part sizes, or equal parts (which keep a sliced batch
axis dynamic). Slice points on the batch axis export only with a static batch of the
prototxt's size, the one they were written for (``BatchFixed``)."""
from __future__ import annotations

from runtime.export.registry import BatchFixed, converter


@converter("Slice")
def slice_(graph, layer, bottoms, tops, shapes):
    if not layer.points:
        equal = {"num_outputs": len(tops)} if graph.opset >= 18 else {}
        graph.node("Split", bottoms, tops, name=layer.name, axis=layer.axis, **equal)
        return
    if layer.axis == 0 and not graph.batch_is_the_nets:
        raise BatchFixed(f"layer {layer.name!r} slices the batch axis at slice_point "
                         f"{', '.join(map(str, layer.points))}")
    graph.node("Split", [bottoms[0], graph.shape(f"{layer.name}/split", layer.sizes)], tops,
               name=layer.name, axis=layer.axis)
