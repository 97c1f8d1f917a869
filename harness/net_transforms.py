"""The row's net on its one way from the generator to the `Net`s.

The generator's text is parsed once (`generator.render.rendered_net`); `transformed` passes that
NetParameter through a list of transforms, in order, and the TRAIN and TEST nets are built from
the result. A transform is a function NetParameter -> NetParameter that returns a changed copy
and leaves its argument alone, so the rendered message stays what the run folder records.
`Run.net_transforms` lists a run's transforms (Data layers become Input layers); a pack of K
runs is then `runtime.pack.packed_net` of the result, which needs the solo nets' weights.
"""
from __future__ import annotations

from typing import Callable, Iterable

from runtime.errors import AllconvError
from runtime.proto import pb

NetTransform = Callable[[pb.NetParameter], pb.NetParameter]


def transformed(param: pb.NetParameter, transforms: Iterable[NetTransform],
                phase: int | None = None) -> pb.NetParameter:
    """``param`` after each of ``transforms`` in turn, for ``phase`` when given (its state's
    phase set, which `runtime.pack.pack_net` filters by); ``param`` itself is not changed."""
    out = pb.NetParameter()
    out.CopyFrom(param)
    for transform in transforms:
        out = transform(out)
    if phase is not None:
        out.state.phase = phase
    return out


def data_as_input(batches: dict[int, int], sample_shape: tuple[int, ...]) -> NetTransform:
    """Each Data layer becomes an Input layer of its phase's batch (``batches``: phase -> batch
    size) of ``sample_shape`` samples and their labels: the loop feeds the tops itself, so no
    source is ever opened. A Data layer must name its phase in an include rule."""
    def transform(param: pb.NetParameter) -> pb.NetParameter:
        out = pb.NetParameter()
        out.CopyFrom(param)
        for layer in out.layer:
            if layer.type != "Data":
                continue
            phases = {rule.phase for rule in layer.include if rule.HasField("phase")}
            if len(phases) != 1:
                raise AllconvError(f"Data layer {layer.name!r} names no single phase in its "
                                   "include rules; the harness feeds each phase its own batch")
            batch = batches[phases.pop()]
            layer.type = "Input"
            for field in ("data_param", "transform_param"):
                layer.ClearField(field)
            shapes = [(batch, *sample_shape), (batch,)][:len(layer.top)]
            for shape in shapes:
                layer.input_param.shape.add().dim.extend(shape)
        return out
    return transform
