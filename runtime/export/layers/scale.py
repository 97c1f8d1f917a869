"""Scale -> Mul by the factor (the learned blob, or bottom 1 reshaped) viewed to broadcast from
Caffe's axis, then Add of the learned bias. A learned blob over the batch axis exports only
with the prototxt's batch (``BatchFixed``)."""
from __future__ import annotations

from runtime.export.registry import batch_axis_fixes_the_batch, converter


def operand(graph, layer, value, shape, axis: int, rank: int, what: str) -> str:
    """A learned blob (``value`` a tensor) or a bottom (``value`` a name, ``shape`` its shape)
    as a value broadcasting against a ``rank``-axis bottom from ``axis``."""
    view = list(shape) + [1] * (rank - axis - len(shape))
    if not isinstance(value, str):
        batch_axis_fixes_the_batch(graph, axis if shape else None,
                                   f"layer {layer.name!r} has a learned {what} over the batch axis")
        return graph.constant(f"{layer.name}/{what}", value.detach().cpu().numpy().reshape(view))
    if list(shape) == view:
        return value
    if axis == 0 and shape:
        view[0] = 0      # the batch axis: copied, so it stays dynamic
    return graph.node("Reshape", [value, graph.shape(f"{layer.name}/{what}_shape", view)],
                      name=f"{layer.name}/{what}_view")


@converter("Scale")
def scale(graph, layer, bottoms, tops, shapes):
    rank = len(shapes[0])
    factor = (operand(graph, layer, layer.blobs[0], tuple(layer.blobs[0].shape), layer.axis,
                      rank, "factor") if layer.learned else
              operand(graph, layer, bottoms[1], shapes[1], layer.axis, rank, "factor"))
    if not layer.param.scale_param.bias_term:
        graph.node("Mul", [bottoms[0], factor], tops, name=layer.name)
        return
    product = graph.node("Mul", [bottoms[0], factor], name=layer.name)
    bias = operand(graph, layer, layer.blobs[-1], tuple(layer.blobs[-1].shape), layer.bias_axis,
                   rank, "bias")
    graph.node("Add", [product, bias], tops, name=f"{layer.name}/bias")
