"""Deconvolution -> ONNX ConvTranspose: the same weight layout (C, num_output / group, *kernel),
symmetric pads and output size s(H − 1) + d(k − 1) + 1 − 2p."""
from __future__ import annotations

from runtime.export.layers.convolution import window_node
from runtime.export.registry import converter


@converter("Deconvolution")
def deconvolution(graph, layer, bottoms, tops, shapes):
    window_node(graph, "ConvTranspose", layer, bottoms, tops, shapes)
