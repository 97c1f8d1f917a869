"""LRN (lrn_layer.cpp). ACROSS_CHANNELS: x·(k + Σ α/n·x²)^−β over n channels centred on
each one, summed as Caffe slides the window (``_scale``). WITHIN_CHANNEL, as Caffe composes
it: x·(1 + α·avg_{n×n}(x²))^−β with average pooling padded by (n−1)/2 (the divisor is always
n²; ``k`` is not used)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from runtime.blob_shape import check_blob_shape, check_int_field
from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import check_image_blob
from runtime.libm import powx
from runtime.proto import pb


@register("LRN")
class LRN(Layer):
    @property
    def diffs_whenever_run(self) -> tuple[int, ...]:
        """ACROSS_CHANNELS' Caffe Backward writes the bottom diff, propagate_down or not."""
        return () if self.within else (0,)

    def setup(self, bottom_shapes, generator):
        lrn = self.param.lrn_param
        check_int_field("lrn_param.local_size", (lrn.local_size,))
        self.size, self.alpha, self.beta, self.k = lrn.local_size, lrn.alpha, lrn.beta, lrn.k
        self.within = lrn.norm_region == pb.LRNParameter.WITHIN_CHANNEL
        if self.size % 2 != 1:
            raise AllconvError(f"local_size must be odd, got {self.size}")

    def reshape(self, bottom_shapes):
        check_image_blob(bottom_shapes[0])
        n, c, h, w = bottom_shapes[0]
        if not self.within:  # Caffe's padded_square: one image, channels padded by size - 1
            check_blob_shape((1, c + self.size - 1, h, w), "lrn_param.local_size")
        return [bottom_shapes[0]]

    def forward(self, x):
        if not self.within:
            return (x * powx(self._scale(x), -self.beta),)
        mean_sq = F.avg_pool2d(x * x, self.size, 1, (self.size - 1) // 2,
                               count_include_pad=True)
        return (x * powx(1 + self.alpha * mean_sq, -self.beta),)

    def _scale(self, x):
        """k + Σ α/n·x² over each channel's window, summed as Caffe slides it: k plus the
        first window's squares one by one, then each channel's scale from the last one plus
        the new head minus the old tail, each step a fused multiply-add as BLAS's axpy. So, as
        in Caffe, a huge square that has left the window leaves its rounding behind (k can be
        lost) and an infinite or NaN one leaves NaN (inf − inf)."""
        pre = (self.size - 1) // 2
        squares = F.pad(x * x, (0, 0, 0, 0, pre, self.size - 1 - pre))
        a = float(np.float32(self.alpha) / np.float32(self.size))     # Caffe's alpha_over_size
        scale = torch.full_like(x[:, 0], self.k)
        for j in range(self.size):
            scale = torch.add(scale, squares[:, j], alpha=a)
        scales = [scale]
        for c in range(1, x.shape[1]):
            scale = torch.add(torch.add(scale, squares[:, c + self.size - 1], alpha=a),
                              squares[:, c - 1], alpha=-a)
            scales.append(scale)
        return torch.stack(scales, 1)
