"""allconv runtime: Caffe NetParameter -> torch module with Caffe semantics.

Exports are loaded lazily so that light modules (runtime.prototxt, runtime.errors) can be
imported without importing torch, and the console scripts' launcher (runtime.console) without
protobuf.
"""
from runtime.errors import AllconvError

_LAZY = {
    "TRAIN": "runtime.proto.pb",    # Caffe's Phase enum, as pycaffe's caffe.TRAIN
    "TEST": "runtime.proto.pb",     # and caffe.TEST
    "Net": "runtime.net",
    "SGDSolver": "runtime.solver",
    "NesterovSolver": "runtime.solver",
    "AdaGradSolver": "runtime.solver",
    "RMSPropSolver": "runtime.solver",
    "AdaDeltaSolver": "runtime.solver",
    "AdamSolver": "runtime.solver",
    "make_solver": "runtime.solver",
    "get_solver": "runtime.solver",
    "Solver": "runtime.solver",
    "CaffeSGD": "runtime.optim",
    "CaffeAdaGrad": "runtime.optim",
    "CaffeRMSProp": "runtime.optim",
    "CaffeAdaDelta": "runtime.optim",
    "CaffeAdam": "runtime.optim",
    "CaffeLR": "runtime.lr_policy",
    "set_mode_cpu": "runtime.mode",
    "set_mode_gpu": "runtime.mode",
    "set_device": "runtime.mode",
    "set_random_seed": "runtime.mode",
    "layer_type_list": "runtime.layers",
    "Layer": "runtime.python_layer_api",
    # pycaffe's net_spec names on the package (its `layers` is runtime.net_spec.layers here:
    # runtime.layers is the layers' code)
    "NetSpec": "runtime.net_spec",
    "params": "runtime.net_spec",
    "to_proto": "runtime.net_spec",
}

__all__ = ["AllconvError", *_LAZY]


def allconv_caffe_command() -> None:
    """The ``allconv-caffe`` console script."""
    from runtime.console import launch
    launch("runtime.cli", "allconv-caffe")


def allconv_prep_cifar_command() -> None:
    """The ``allconv-prep-cifar`` console script."""
    from runtime.console import launch
    launch("runtime.data.cli", "allconv-prep-cifar")


# pycaffe's submodules: ``caffe.io``, ``caffe.net_spec`` and ``caffe.proto`` work without
# importing them first
_SUBMODULES = ("io", "net_spec", "proto")


def __getattr__(name):
    import importlib
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"runtime.{name}")
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
