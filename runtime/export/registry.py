"""The ``CONVERTERS`` registry: one ONNX converter per Caffe layer type, beside ``runtime.layers``.

A converter is ``convert(graph, layer, bottoms, tops, shapes)``: it appends the nodes that
compute the runtime ``layer`` to ``graph`` (a ``GraphBuilder``), reading value names
``bottoms`` and writing exactly the value names ``tops``; ``shapes`` are the bottom shapes
the runtime inferred (batch included). A converter exact only at the prototxt's batch raises
``BatchFixed`` unless ``graph.batch_is_the_nets``.
"""
from __future__ import annotations

import importlib
import pkgutil

from runtime.errors import AllconvError
from runtime.layers import describe
from runtime.registry import add_once

CONVERTERS: dict = {}


class BatchFixed(AllconvError):
    """The net computes what Caffe computes only at its prototxt's batch (why: the message);
    ``to_onnx`` then fixes the model's batch there."""


def batch_axis_fixes_the_batch(graph, axis: int | None, why: str) -> None:
    """A converter whose layer works on ``axis`` 0, the batch, is exact only at the
    prototxt's batch: ``BatchFixed(why)`` unless the model's batch is fixed there."""
    if axis == 0 and not graph.batch_is_the_nets:
        raise BatchFixed(why)


def converter(type_name: str):
    """Function decorator: the ONNX converter for Caffe layer type ``type_name`` (one per
    type: a second is an error)."""
    def add(fn):
        return add_once(CONVERTERS, type_name, fn, "ONNX converter for layer type")
    return add


def converter_for(layer, reads: str | None = None):
    """The converter of a runtime layer, or an error naming the layer and what exports
    (for a loss or Accuracy layer, the blob it reads: ``reads``, the prototxt's name for
    bottom 0)."""
    _load()
    fn = CONVERTERS.get(layer.param.type)
    if fn is None and (layer.is_loss or layer.param.type == "Accuracy"):
        what = ("a loss layer computes a training loss" if layer.is_loss else
                "an Accuracy layer scores predictions against labels")
        raise AllconvError(f"{describe(layer.param)}: {what}, not an inference output, and "
                           "does not export to ONNX; export the blob it reads instead "
                           f"(--outputs {reads or layer.bottoms[0]})")
    if fn is None:
        raise AllconvError(f"{describe(layer.param)}: this layer type does not export to ONNX "
                           f"(exportable: {', '.join(exportable_types())})")
    return fn


def exportable_types() -> list[str]:
    """Caffe layer types that export (Input is the graph's input)."""
    _load()
    return sorted(["Input", *CONVERTERS])


def _load() -> None:
    from runtime.export import layers
    for module in pkgutil.iter_modules(layers.__path__):
        importlib.import_module(f"{layers.__name__}.{module.name}")
