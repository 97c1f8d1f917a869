"""The three type registries refuse a second registration of a name, as Caffe's LayerRegistry
does, and keep the first entry."""
from __future__ import annotations

import pytest

from runtime.errors import AllconvError


def test_layer_registry_refuses_a_second_class_for_a_type():
    from runtime.layers import LAYERS, Layer, register

    first = LAYERS["ReLU"]
    with pytest.raises(AllconvError, match=r"layer type 'ReLU' is already registered \(by "
                                           r"runtime\.layers\.relu\.ReLU\)"):
        @register("ReLU")
        class Other(Layer):
            pass
    assert LAYERS["ReLU"] is first and first.type_name == "ReLU"


def test_filler_registry_refuses_a_second_filler_for_a_type():
    from runtime import fillers

    first = fillers.FILLERS["xavier"]
    with pytest.raises(AllconvError, match="filler type 'xavier' is already registered"):
        fillers._filler("xavier")(lambda tensor, param, generator: tensor)
    assert fillers.FILLERS["xavier"] is first


def test_converter_registry_refuses_a_second_converter_for_a_type():
    pytest.importorskip("onnx")
    from runtime.export import registry

    registry.exportable_types()            # loads every converter module
    first = registry.CONVERTERS["Pooling"]
    with pytest.raises(AllconvError, match="ONNX converter for layer type 'Pooling' is "
                                           "already registered"):
        registry.converter("Pooling")(lambda graph, layer, bottoms, tops, shapes: None)
    assert registry.CONVERTERS["Pooling"] is first


def test_a_new_name_registers():
    from runtime.registry import add_once

    table = {}
    assert add_once(table, "A", len, "thing") is len and table == {"A": len}
    with pytest.raises(AllconvError, match=r"thing 'A' is already registered \(by builtins\.len\)"):
        add_once(table, "A", abs, "thing")
