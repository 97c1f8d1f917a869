"""ArgMax -> ONNX TopK on the input reversed along the axis (TopK puts the lower index first
among equal values, Caffe the larger), indices mapped back and cast to float; without an axis
on (N, −1), the indices (then the values) reshaped to Caffe's (N, 1 or 2, top_k, 1, ...).
Along the batch axis it exports only with the prototxt's batch (``BatchFixed``)."""
from __future__ import annotations

import numpy as np

from runtime.errors import AllconvError
from runtime.export.builder import FP16_EXACT
from runtime.export.registry import batch_axis_fixes_the_batch, converter
from runtime.layers.shapes import count

INT64_MIN = -2**63


@converter("ArgMax")
def argmax(graph, layer, bottoms, tops, shapes):
    name, x, axis = layer.name, bottoms[0], layer.axis
    batch_axis_fixes_the_batch(graph, axis, f"layer {name!r} ranks along the batch axis "
                                            "(argmax_param.axis 0)")
    if axis is None:
        x = graph.node("Flatten", [x], name=f"{name}/flatten", axis=1)
    size = count(shapes[0], 1) if axis is None else shapes[0][axis]
    gives_indices = axis is None or not layer.out_max_val
    if gives_indices and graph.dtype == np.float16 and size - 1 > FP16_EXACT:
        raise AllconvError(f"--fp16: ArgMax {layer.name!r} gives indices up to {size - 1}; "
                           f"float16 holds integers exactly only up to {FP16_EXACT}: export "
                           "it in float32")
    along = 1 if axis is None else axis
    reversed_ = graph.node("Slice", [x, graph.shape(f"{name}/starts", [-1]),
                                     graph.shape(f"{name}/ends", [INT64_MIN]),
                                     graph.shape(f"{name}/axes", [along]),
                                     graph.shape(f"{name}/steps", [-1])], name=f"{name}/reverse")
    values, flipped = graph.fresh(f"{name}/values"), graph.fresh(f"{name}/flipped")
    graph.node("TopK", [reversed_, graph.shape(f"{name}/k", [layer.k])], [values, flipped],
               name=f"{name}/topk", axis=along, largest=1, sorted=1)
    last = graph.constant(f"{name}/last", size - 1, np.int64)
    index = graph.node("Cast", [graph.node("Sub", [last, flipped], name=f"{name}/index")],
                       name=f"{name}/float", to=graph.elem_type)
    if axis is not None:
        graph.node("Identity", [values if layer.out_max_val else index], tops, name=name)
        return
    parts = [index, values] if layer.out_max_val else [index]
    both = parts[0] if len(parts) == 1 else graph.node("Concat", parts, name=f"{name}/both",
                                                       axis=1)
    graph.node("Reshape", [both, graph.shape(f"{name}/shape", [-1, *layer.top_shapes[0][1:]])],
               tops, name=name)
