"""SPP (spp_layer.cpp): spatial pyramid pooling. Level l (0 .. pyramid_height − 1) pools the
(N, C, H, W) bottom into 2^l × 2^l bins with Caffe's Pooling layer: kernel ⌈H / 2^l⌉, stride
the kernel, pad (kernel·2^l − H + 1) // 2 (likewise for W). The levels are flattened and
concatenated in order; with one level the top is that Pooling's 4-d top."""
from __future__ import annotations

import math

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import check_image_blob
from runtime.layers.pooling import Pooling
from runtime.proto import pb


def level_param(name: str, level: int, height: int, width: int, pool: int):
    """The PoolingParameter-carrying LayerParameter of pyramid level ``level``."""
    bins = 2 ** level
    param = pb.LayerParameter(name=f"{name}/level{level}", type="Pooling", bottom=["x"],
                              top=["y"])
    p = param.pooling_param
    p.pool = pool
    p.kernel_h, p.kernel_w = (math.ceil(size / bins) for size in (height, width))
    p.stride_h, p.stride_w = p.kernel_h, p.kernel_w
    p.pad_h = (p.kernel_h * bins - height + 1) // 2
    p.pad_w = (p.kernel_w * bins - width + 1) // 2
    return param


@register("SPP")
class SPP(Layer):
    def setup(self, bottom_shapes, generator):
        spp = self.param.spp_param
        if spp.pyramid_height < 1:
            raise AllconvError("spp_param.pyramid_height must be at least 1")
        if spp.pool == pb.SPPParameter.STOCHASTIC:
            raise AllconvError("spp_param.pool STOCHASTIC is not supported (MAX, AVE)")

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        check_image_blob(shape)
        if min(shape[2:]) <= 0:
            raise AllconvError(f"bottom shape {shape} has an empty spatial axis")
        spp = self.param.spp_param
        self.levels = []
        for level in range(spp.pyramid_height):
            try:
                self.levels.append(Pooling(level_param(self.name, level, *shape[2:], spp.pool),
                                           [shape], self.phase, None))
            except AllconvError as err:
                raise AllconvError(f"spp_param.pyramid_height {spp.pyramid_height}: level "
                                   f"{level} on a {shape[2]}x{shape[3]} bottom: {err}") from None
        if len(self.levels) == 1:
            return self.levels[0].top_shapes
        return [shape[:1] + (sum(math.prod(p.top_shapes[0][1:]) for p in self.levels),)]

    def forward(self, x):
        pooled = [p(x)[0] for p in self.levels]
        if len(pooled) == 1:
            return (pooled[0],)
        return (torch.cat([y.flatten(1) for y in pooled], 1),)
