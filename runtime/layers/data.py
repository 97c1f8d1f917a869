"""Data: batches from a feed, ``feed(batch_size) -> (data, label)``, in the feed's order."""
from __future__ import annotations

import warnings

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, describe, layer_errors, register


@register("Data")
class Data(Layer):
    """Tops ``data`` (batch_size, *sample_shape) and optionally ``label`` (batch_size,).

    The feed is given by the Net (``feeds`` / ``set_feed``) or opened from
    ``data_param.source`` with ``runtime.data.open_source``. ``transform_param`` is not
    applied here: a feed delivers batches already transformed.
    """

    num_bottoms = (0, 0)
    num_tops = (1, 2)
    accepts_feed = True

    def setup(self, bottom_shapes, generator, feed=None, sample_shape=None):
        self.batch_size = self.param.data_param.batch_size
        if self.batch_size <= 0:
            raise AllconvError("data_param.batch_size must be positive")
        if self.param.HasField("transform_param"):
            warnings.warn(f"{describe(self.param)}: transform_param is not applied by the "
                          "runtime; the feed must deliver transformed batches", stacklevel=2)
        self.feed = feed if feed is not None else self._open_source()
        shape = sample_shape if sample_shape is not None else getattr(self.feed, "sample_shape", None)
        if shape is None:
            raise AllconvError("no sample shape: give the feed a .sample_shape or pass "
                               f"input_shapes={{{self.tops[0]!r}: (C, H, W)}} to Net")
        self.sample_shape = tuple(int(d) for d in shape)
        self.register_buffer("_device", torch.empty(0), persistent=False)

    def _open_source(self):
        from runtime.data import open_source
        source = self.param.data_param.source
        try:
            return open_source(source, self.phase)
        except (AllconvError, OSError) as err:
            raise AllconvError(f"cannot open data source {source!r}: {err}") from None

    def reshape(self, bottom_shapes):
        return [(self.batch_size,) + self.sample_shape, (self.batch_size,)][:len(self.tops)]

    def forward(self):
        with layer_errors(self.param):
            batch = tuple(self.feed(self.batch_size))
            if len(batch) < len(self.top_shapes):
                raise AllconvError(f"the feed returned {len(batch)} tensor(s) for "
                                   f"{len(self.top_shapes)} top(s)")
            tops = tuple(torch.as_tensor(t, dtype=torch.float32, device=self._device.device)
                         for t in batch[:len(self.top_shapes)])
            for top, shape in zip(tops, self.top_shapes):
                if tuple(top.shape) != tuple(shape):
                    raise AllconvError(f"a fed batch has shape {tuple(top.shape)}, "
                                       f"expected {tuple(shape)}")
        return tops
