"""Slice -> ONNX Split: the runtime's part sizes, or equal parts (which keep a sliced batch
axis dynamic). Slice points on the batch axis export only with a static batch of the
prototxt's size, the one they were written for (``BatchFixed``)."""
from __future__ import annotations

from runtime.export.registry import batch_axis_fixes_the_batch, converter


@converter("Slice")
def slice_(graph, layer, bottoms, tops, shapes):
    if not layer.points:
        equal = {"num_outputs": len(tops)} if graph.opset >= 18 else {}
        graph.node("Split", bottoms, tops, name=layer.name, axis=layer.axis, **equal)
        return
    batch_axis_fixes_the_batch(graph, layer.axis, f"layer {layer.name!r} slices the batch axis "
                               f"at slice_point {', '.join(map(str, layer.points))}")
    graph.node("Split", [bottoms[0], graph.shape(f"{layer.name}/split", layer.sizes)], tops,
               name=layer.name, axis=layer.axis)
