"""Dropout (dropout_layer.cpp): at TRAIN keep with probability 1−p and scale by 1/(1−p);
at TEST pass through. The phase is the layer's Caffe phase, not ``Module.training``."""
from __future__ import annotations

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.proto import pb


@register("Dropout")
class Dropout(Layer):
    """Masks come from a per-device generator seeded from the net's generator, so a seeded
    net drops the same units every run. Under torch.compile the device's default generator
    is used instead (compiled graphs cannot take generator objects)."""

    def setup(self, bottom_shapes, generator):
        self.ratio = self.param.dropout_param.dropout_ratio
        if not 0 < self.ratio < 1:
            raise AllconvError(f"dropout_ratio must be in (0, 1), got {self.ratio}")
        self.scale = 1.0 / (1.0 - self.ratio)
        self.seed = int(torch.randint(2**62, (), generator=generator))
        self._generators = {}

    def _generator(self, device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def rng_state(self) -> dict[str, torch.Tensor]:
        """{device: generator state} of the mask generators made so far."""
        return {str(device): g.get_state() for device, g in self._generators.items()}

    def set_rng_state(self, states: dict[str, torch.Tensor]) -> None:
        for device, state in states.items():
            self._generator(torch.device(device)).set_state(state)

    def forward(self, x):
        if self.phase != pb.TRAIN:
            return (x,)
        if torch.compiler.is_compiling():
            noise = torch.rand(x.shape, dtype=x.dtype, device=x.device)
        else:
            noise = torch.rand(x.shape, dtype=x.dtype, device=x.device,
                               generator=self._generator(x.device))
        return (x * (noise >= self.ratio) * self.scale,)
