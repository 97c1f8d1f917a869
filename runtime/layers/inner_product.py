"""InnerProduct (inner_product_layer.cpp): y = x·Wᵀ + b over the axes from ``axis`` on."""
from __future__ import annotations

import torch.nn.functional as F

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis, count


@register("InnerProduct")
class InnerProduct(Layer):
    """Weights (num_output, K), or (K, num_output) with ``transpose``; bias (num_output,)."""
    backward_ignores_input = True

    def setup(self, bottom_shapes, generator):
        ip = self.param.inner_product_param
        shape = bottom_shapes[0]
        self.axis = canonical_axis(ip.axis, len(shape))
        self.transpose = ip.transpose
        if ip.num_output <= 0:
            raise AllconvError("num_output must be positive")
        k = count(shape, self.axis)
        self.add_weights((k, ip.num_output) if self.transpose else (ip.num_output, k),
                         ip, generator)

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        k = self.blobs[0].shape[0 if self.transpose else 1]
        if len(shape) <= self.axis or count(shape, self.axis) != k:
            raise AllconvError(f"bottom shape {shape} gives {count(shape, self.axis)} inputs "
                               f"from axis {self.axis}; the weights expect {k}")
        return [shape[:self.axis] + (self.param.inner_product_param.num_output,)]

    def forward(self, x):
        x = x.reshape(tuple(x.shape[:self.axis]) + (count(x.shape, self.axis),))  # N may be 0
        weight = self.blobs[0].t() if self.transpose else self.blobs[0]
        bias = self.blobs[1] if len(self.blobs) > 1 else None
        return (F.linear(x, weight, bias),)
