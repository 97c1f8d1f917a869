"""Data (data_layer.cpp) and the base of every data layer (base_data_layer.cpp): tops from a
feed, ``feed(batch_size) -> (data, label, ...)``, in the feed's order."""
from __future__ import annotations

import warnings

import torch

from runtime.errors import AllconvError
from runtime.layers import Layer, describe, layer_errors, register


def seeded_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator of the layer's own, seeded from the net's (as Dropout seeds its masks),
    so a seeded net draws the same crops, flips and shuffles every run."""
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


class BaseData(Layer):
    """Caffe's BaseDataLayer: no bottoms; tops of ``batch_size`` samples from ``self.feed``.

    The feed is given by the Net (``feeds`` / ``set_feed``; it then delivers finished batches
    and ``transform_param`` is not applied) or opened by the subclass from its parameters
    (``open_feed``). A feed has ``sample_shape`` (the data top's; a second top is the
    (batch_size,) labels) or ``sample_shapes`` (one per top), and ``state_dict`` /
    ``load_state_dict`` for its read position, which snapshots keep.
    """

    num_bottoms = (0, 0)
    num_tops = (1, 2)
    accepts_feed = True
    param_field = "data_param"      # the message holding batch_size

    def setup(self, bottom_shapes, generator, feed=None, sample_shape=None):
        self.batch_size = getattr(self.param, self.param_field).batch_size
        if self.batch_size <= 0:
            raise AllconvError(f"{self.param_field}.batch_size must be positive")
        if feed is not None and self.param.HasField("transform_param"):
            warnings.warn(f"{describe(self.param)}: transform_param is not applied to a given "
                          "feed; the feed must deliver transformed batches", stacklevel=2)
        self.feed = feed if feed is not None else self.open_feed(generator)
        self.sample_shapes = self.feed_shapes(self.feed, sample_shape)
        # a database or image list read whole: each batch its first image's size, as Caffe's
        # top is reshaped per batch (and every layer below it in each forward)
        self.tops_sized_by_data = bool(getattr(self.feed, "sizes_vary", False))
        self.register_buffer("_device", torch.empty(0), persistent=False)

    def open_feed(self, generator):
        """The feed this layer reads from its own parameters (Caffe's DataLayerSetUp)."""
        raise NotImplementedError

    def feed_shapes(self, feed, sample_shape=None) -> list[tuple[int, ...]]:
        """One sample shape per top, from ``sample_shape``, the feed's, or ``input_shapes``."""
        shapes = getattr(feed, "sample_shapes", None)
        if shapes is None:
            shape = sample_shape if sample_shape is not None else getattr(feed, "sample_shape",
                                                                           None)
            if shape is None:
                raise AllconvError("no sample shape: give the feed a .sample_shape or pass "
                                   f"input_shapes={{{self.tops[0]!r}: (C, H, W)}} to Net")
            shapes = [shape, ()]
        if len(shapes) < len(self.tops):
            raise AllconvError(f"the feed gives {len(shapes)} sample shape(s) for "
                               f"{len(self.tops)} top(s)")
        return [tuple(int(d) for d in s) for s in shapes[:len(self.tops)]]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The data top's sample shape (Net.set_feed sets it from a new feed)."""
        return self.sample_shapes[0]

    @sample_shape.setter
    def sample_shape(self, shape) -> None:
        self.sample_shapes[0] = tuple(int(d) for d in shape)

    def reshape(self, bottom_shapes):
        return [(self.batch_size,) + shape for shape in self.sample_shapes]

    def forward(self):
        with layer_errors(self.param):
            if self.feed is None:
                raise AllconvError(self.no_feed_message())
            batch = tuple(self.feed(self.batch_size))
            if len(batch) < len(self.top_shapes):
                raise AllconvError(f"the feed returned {len(batch)} tensor(s) for "
                                   f"{len(self.top_shapes)} top(s)")
            tops = tuple(torch.as_tensor(t, dtype=torch.float32, device=self._device.device)
                         for t in batch[:len(self.top_shapes)])
            if self.tops_sized_by_data and all(t.shape[:1] == (self.batch_size,) for t in tops):
                # the shapes of this batch, which net.reshape() keeps
                self.sample_shapes[:len(tops)] = [tuple(t.shape[1:]) for t in tops]
                self.top_shapes = self.reshape([])
            for top, shape in zip(tops, self.top_shapes):
                if tuple(top.shape) != tuple(shape):
                    raise AllconvError(f"a fed batch has shape {tuple(top.shape)}, "
                                       f"expected {tuple(shape)}")
        return tops

    def no_feed_message(self) -> str:
        return "no feed to read"

    def transformed(self, feed, generator):
        """``feed`` with this layer's ``transform_param`` applied (Caffe's DataTransformer),
        drawing from a generator of the layer's own when the transform is random."""
        from runtime.data.transform import TransformedFeed, Transformer
        from runtime.proto import pb

        transformer = Transformer(self.param.transform_param, self.phase == pb.TRAIN)
        if transformer.random:
            transformer.generator = seeded_generator(generator)
        return TransformedFeed(feed, transformer)


@register("Data")
class Data(BaseData):
    """Tops ``data`` (batch_size, *sample_shape; from a database without a crop, each
    batch's first record's shape) and optionally ``label`` (batch_size,), read
    from ``data_param.source`` with ``runtime.data.open_source`` (a .npz, a CIFAR folder or
    an LMDB of Datum records, in order, wrapping around) through ``transform_param``, or from
    a given feed."""

    def open_feed(self, generator):
        from runtime.data import open_source
        p = self.param.data_param
        source = p.source
        try:
            feed = open_source(source, self.phase, p.backend, self.param.transform_param)
        except OSError as err:      # open_source's own errors name the source already
            raise AllconvError(f"data source {source}: cannot read: {err}") from None
        return self.transformed(feed, generator) if self.param.HasField("transform_param") \
            else feed
