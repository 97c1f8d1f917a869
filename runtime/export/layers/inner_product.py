"""InnerProduct -> Reshape to (N, ..., K), MatMul by Wᵀ (W with ``transpose``), Add bias. On
axis 0 the batch is among the K inputs: it exports only with the prototxt's batch
(``BatchFixed``)."""
from __future__ import annotations

from runtime.export.registry import batch_axis_fixes_the_batch, converter
from runtime.layers.shapes import count


@converter("InnerProduct")
def inner_product(graph, layer, bottoms, tops, shapes):
    shape, name = shapes[0], layer.name
    batch_axis_fixes_the_batch(graph, layer.axis, f"layer {name!r} folds the batch into its "
                                                  "inputs (inner_product_param.axis 0)")
    flat = graph.node("Reshape", [bottoms[0], graph.shape(   # 0: keep that axis, batch or not
        f"{name}/shape", [0] * layer.axis + [count(shape, layer.axis)])], name=f"{name}/flatten")
    weight = graph.weight(f"{name}/weight_t", layer.blobs[0], transpose=not layer.transpose)
    if len(layer.blobs) == 1:
        graph.node("MatMul", [flat, weight], tops, name=name)
        return
    product = graph.node("MatMul", [flat, weight], name=name)
    graph.node("Add", [product, graph.weight(f"{name}/bias", layer.blobs[1])], tops,
               name=f"{name}/bias")
