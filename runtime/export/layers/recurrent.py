"""``unrolled``: the part the RNN and LSTM converters share, Caffe's unrolled net over the
fixed T timesteps for any number N of streams: x (T × N × …) reshaped to T × N × K and
transformed once, the static input transformed once, each step reading x_t and cont_t
(Gather on axis 0), the outputs stacked on axis 0. States start at zero (the runtime's state
after ``reset``), or come from the ``expose_hidden`` bottoms."""
from __future__ import annotations


def linear(graph, name: str, x: str, weight, bias=None) -> str:
    """x · Wᵀ (+ b) on x's last axis."""
    y = graph.node("MatMul", [x, graph.weight(f"{name}_t", weight, transpose=True)],
                   name=name)
    if bias is None:
        return y
    return graph.node("Add", [y, graph.weight(f"{name}_bias", bias)], name=f"{name}/bias")


def unrolled(graph, layer, bottoms, tops, step):
    """Append the layer's nodes; ``step(graph, name, states, inputs_t, cont_t)`` appends one
    timestep (``inputs_t``: W·x_t + b [+ W_s·x_static], N × G) and returns (output_t,
    new states)."""
    name, blobs = layer.name, layer.blobs
    x, cont = bottoms[:2]
    flat = graph.node("Reshape", [x, graph.shape(f"{name}/x_shape", [0, 0, -1])],
                      name=f"{name}/x_flat")
    x_in = linear(graph, f"{name}/x_transform", flat, blobs[0], blobs[1])
    static_in = None
    if layer.has_static:
        static = graph.node("Reshape", [bottoms[2], graph.shape(f"{name}/static_shape", [0, -1])],
                            name=f"{name}/static_flat")
        static_in = linear(graph, f"{name}/static_transform", static, blobs[2])
    first, second = graph.shape(f"{name}/axis0", [0]), graph.shape(f"{name}/axis1", [1])
    if layer.exposed:
        states = [graph.node("Squeeze", [b, first], name=f"{name}/{state}_0")
                  for b, state in zip(bottoms[2 + layer.has_static:], layer.states)]
    else:
        dims = graph.node("Concat", [
            graph.node("Slice", [graph.node("Shape", [x], name=f"{name}/x_dims"),
                                 graph.shape(f"{name}/one", [1]), graph.shape(f"{name}/two", [2])],
                       name=f"{name}/streams"),
            graph.shape(f"{name}/hidden", [layer.hidden])], name=f"{name}/state_dims", axis=0)
        zeros = graph.node("Expand", [graph.constant(f"{name}/zero", 0.0), dims],
                           name=f"{name}/zero_state")
        states = [zeros] * len(layer.states)
    outputs = []
    for t in range(layer.timesteps):
        index = graph.constant(f"{name}/t{t}", t, dtype="int64")
        inputs_t = graph.node("Gather", [x_in, index], name=f"{name}/x_{t + 1}", axis=0)
        if static_in is not None:
            inputs_t = graph.node("Add", [inputs_t, static_in], name=f"{name}/static_{t + 1}")
        cont_t = graph.node("Unsqueeze", [graph.node(
            "Gather", [cont, index], name=f"{name}/cont_{t + 1}", axis=0), second],
            name=f"{name}/cont_{t + 1}")
        output, states = step(graph, f"{name}/step{t + 1}", states, inputs_t, cont_t)
        outputs.append(graph.node("Unsqueeze", [output, first], name=f"{name}/out_{t + 1}"))
    graph.node("Concat", outputs, [tops[0]], name=name, axis=0)
    for top, state in zip(tops[1:], states):
        graph.node("Unsqueeze", [state, first], [top], name=f"{name}/{top}")


def recurrent_term(graph, name: str, h: str, cont_t: str, weight) -> str:
    """W · (cont_t · h_{t−1}), the recurrent input of a step."""
    return linear(graph, f"{name}/recur", graph.node("Mul", [h, cont_t], name=f"{name}/cont"),
                   weight)
