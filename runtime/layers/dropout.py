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
        self.seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
        self._generators = {}
        self._key = None

    def _generator(self, device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def key_masks(self, iteration: int, offset: int, global_batch: int) -> None:
        """Draw the next masks from (seed, iteration) alone, for the whole ``global_batch``,
        and keep the rows from ``offset`` on: a sample's mask then depends on its position in
        the global batch, not on how many processes share the batch (and not on the
        generator's history, so a resumed run needs no saved state)."""
        self._key = (int(iteration), int(offset), int(global_batch))

    def _noise(self, x):
        generator = self._generator(x.device)
        if self._key is None:
            return torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        iteration, offset, global_batch = self._key
        generator.manual_seed((self.seed + iteration * 0x9E3779B97F4A7C15) % 2**63)
        noise = torch.rand((global_batch, *x.shape[1:]), dtype=x.dtype, device=x.device,
                           generator=generator)
        return noise[offset:offset + len(x)]

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
            noise = self._noise(x)
        return (x * (noise >= self.ratio) * self.scale,)
