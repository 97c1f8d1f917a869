"""BatchNorm -> ONNX. With global statistics (a TEST net's default): BatchNormalization with
the stored mean and variance divided by the scale factor (0 when it is 0), scale 1, bias 0; a
BatchNorm read only by a channel-wise learned Scale is exported with it as one
BatchNormalization carrying the Scale's factor and bias (``batch_norm_with_scale``, chosen by
``runtime.export.fusion``). With batch statistics: ReduceMean over all axes but 1 (a
constant channel's own value, as the runtime takes), (x − μ) / √(σ² + eps) composed."""
from __future__ import annotations

import numpy as np

from runtime.export.registry import converter


@converter("BatchNorm")
def batch_norm(graph, layer, bottoms, tops, shapes):
    ones = np.ones(layer.channels)
    _normalize(graph, layer, bottoms[0], tops[0], ones, np.zeros(layer.channels), len(shapes[0]))


def batch_norm_with_scale(graph, layer, scale, bottoms, tops, shapes):
    """The BatchNorm ``layer`` followed by the Scale ``scale`` (one learned (C,) factor on
    axis 1, optional bias) as one normalisation writing the Scale's top."""
    factor = scale.blobs[0].detach().cpu().numpy()
    bias = (scale.blobs[1].detach().cpu().numpy() if len(scale.blobs) > 1
            else np.zeros(layer.channels))
    _normalize(graph, layer, bottoms[0], tops[0], factor, bias, len(shapes[0]))


def _normalize(graph, layer, x, top, factor, bias, rank):
    name = layer.name
    if layer.use_global_stats:
        mean, var = (t.cpu().numpy() for t in layer.statistics())
        graph.node("BatchNormalization", [x, graph.constant(f"{name}/scale", factor),
                                          graph.constant(f"{name}/bias", bias),
                                          graph.constant(f"{name}/mean", mean),
                                          graph.constant(f"{name}/var", var)], [top],
                   name=name, epsilon=layer.eps)
        return
    axes = [0, *range(2, rank)]
    mean = graph.group_mean(x, axes, f"{name}/mean")
    centred = graph.node("Sub", [x, mean], name=f"{name}/centre")
    var = graph.reduce("ReduceMean", graph.node("Mul", [centred, centred], name=f"{name}/square"),
                       axes, f"{name}/var")
    std = graph.node("Sqrt", [graph.node("Add", [var, graph.constant(f"{name}/eps", layer.eps)],
                                         name=f"{name}/var_eps")], name=f"{name}/std")
    view = (-1,) + (1,) * (rank - 2)
    if np.all(factor == 1) and not np.any(bias):
        graph.node("Div", [centred, std], [top], name=name)
        return
    normalized = graph.node("Div", [centred, std], name=name)
    scaled = graph.node("Mul", [normalized, graph.constant(f"{name}/factor",
                                                           factor.reshape(view))],
                        name=f"{name}/factor")
    graph.node("Add", [scaled, graph.constant(f"{name}/shift", bias.reshape(view))], [top],
               name=f"{name}/shift")
