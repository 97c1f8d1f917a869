"""ONNX export of a runtime ``Net``: ``to_onnx(net, path, ...)``.

The graph is built with ``onnx.helper``, one converter per Caffe layer type
(``runtime/export/layers/``, registered in ``registry.CONVERTERS``), from the runtime's own
layers and the shapes it inferred; it is checked against the runtime with onnxruntime before
anything is written (``check.py``). The export takes what it records as arguments (the
variant's name, the class names); the command line ``export-onnx`` (harness/export_onnx.py) reads
them from a run folder or the registries.

onnx and onnxruntime (the ``[onnx]`` extra) are imported on first use of these names, so that
``export-onnx`` can say how to install them when they are missing.
"""
MIN_OPSET, DEFAULT_OPSET = 17, 18     # here, not in model.py: `export-onnx --help` needs no onnx

_LAZY = {
    "to_onnx": "runtime.export.model",
    "build_model": "runtime.export.model",
    "check_image_net": "runtime.export.model",
    "DEPLOY": "runtime.export.model",
    "exportable_types": "runtime.export.registry",
}

__all__ = ["MIN_OPSET", "DEFAULT_OPSET", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runtime.export' has no attribute {name!r}")
