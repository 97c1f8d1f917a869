"""Log (log_layer.cpp): y = log_base(shift + scale·x), natural log when ``base`` is −1 (the
default); gradient scale / (ln base · (shift + scale·x)). The factor 1/ln base is Caffe's float32
value (the C library's logf, then a float divide)."""
from __future__ import annotations

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.exp import log_base


@register("Log")
class Log(Layer):
    def setup(self, bottom_shapes, generator):
        log = self.param.log_param
        ln_base = log_base(log.base, "log_param.base")
        if ln_base == 0:
            raise AllconvError("log_param.base 1 has no logarithm (ln 1 = 0)")
        self.base_scale = float(np.float32(1) / ln_base)
        self.scale, self.shift = log.scale, log.shift

    def forward(self, x):
        return (torch.log(x * self.scale + self.shift) * self.base_scale,)
