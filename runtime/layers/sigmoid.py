"""Sigmoid (sigmoid_layer.cpp): y = 1 / (1 + e^−x); Caffe's gradient y·(1 − y) is the
derivative autograd takes."""
from __future__ import annotations

import torch

from runtime.layers import Layer, register


@register("Sigmoid")
class Sigmoid(Layer):
    def forward(self, x):
        return (torch.sigmoid(x),)
