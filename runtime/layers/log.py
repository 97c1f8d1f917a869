"""Log (log_layer.cpp): y = log_base(shift + scale·x), natural log when ``base`` is −1 (the
default); gradient scale / (ln base · (shift + scale·x))."""
from __future__ import annotations

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
        self.base_scale, self.scale, self.shift = 1.0 / ln_base, log.scale, log.shift

    def forward(self, x):
        return (torch.log(x * self.scale + self.shift) * self.base_scale,)
