"""DummyData (dummy_data_layer.cpp): tops filled by fillers, no bottoms. A top with a constant
filler (the default: 0) is filled once; the others are refilled at every forward."""
from __future__ import annotations

import torch

from runtime.blob_shape import check_blob_shape
from runtime.errors import AllconvError
from runtime.fillers import fill
from runtime.layers import Layer, register
from runtime.layers.data import seeded_generator
from runtime.proto import pb


def _per_top(values, tops: int, what: str) -> list:
    if len(values) not in (1, tops):
        raise AllconvError(f"must specify {what!r} once, or once per top blob ({tops}); "
                           f"specified {len(values)}")
    return list(values) * tops if len(values) == 1 else list(values)


@register("DummyData")
class DummyData(Layer):
    """Shapes from ``shape`` (once, or once per top) or the legacy num/channels/height/width;
    ``data_filler`` once (or none: constant 0), or once per top."""

    num_bottoms = (0, 0)
    num_tops = (1, None)

    def setup(self, bottom_shapes, generator):
        p, tops = self.param.dummy_data_param, len(self.tops)
        if len(p.data_filler) not in (0, 1, tops):
            raise AllconvError(f"number of data fillers must be 0, 1 or equal to the number "
                               f"of tops: {tops}; you specified {len(p.data_filler)}")
        legacy = [getattr(p, f) for f in ("num", "channels", "height", "width")]
        if any(len(v) for v in legacy):
            if len(p.shape):
                raise AllconvError("both shape and legacy fields were specified")
            dims = [_per_top(v, tops, f) for v, f in zip(legacy, ("num", "channels", "height",
                                                                  "width"))]
            shapes = list(zip(*dims))
        else:
            shapes = [tuple(s.dim) for s in _per_top(p.shape, tops, "shape")]
        self.shapes = [check_blob_shape(s, f"top {name!r}") for s, name in zip(shapes, self.tops)]
        fillers = list(p.data_filler) or [pb.FillerParameter(type="constant", value=0)]
        self.fillers = fillers * tops if len(fillers) == 1 else fillers
        self.refill = [f.type != "constant" for f in self.fillers]
        self.generator = seeded_generator(generator) if any(self.refill) else None
        for i, (shape, filler, refill) in enumerate(zip(self.shapes, self.fillers, self.refill)):
            top = torch.zeros(shape) if refill else fill(torch.empty(shape), filler, generator)
            self.register_buffer(f"top{i}", top, persistent=False)

    def reshape(self, bottom_shapes):
        return self.shapes

    def forward(self):
        tops = []
        for i, (filler, refill) in enumerate(zip(self.fillers, self.refill)):
            top = getattr(self, f"top{i}")
            if refill:
                top = fill(torch.empty(top.shape), filler, self.generator).to(top.device)
            tops.append(top)
        return tuple(tops)

    def rng_state(self, member: int | None = None) -> dict:
        """The refilling generator's state (one for the layer: ``member`` does not split it)."""
        return {"cpu": self.generator.get_state()} if self.generator is not None else {}

    def set_rng_state(self, states: dict, member: int | None = None) -> None:
        if self.generator is not None and "cpu" in states:
            self.generator.set_state(states["cpu"])
