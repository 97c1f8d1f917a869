"""Caffe's upgrade_proto: older nets and solvers brought to the current form, in place.

What Caffe's own readers do before building a net:

* V1 nets (``layers { type: CONVOLUTION ... }``, pre-2015) become V2 ``layer``
  entries: the enum type becomes its string name, ``blobs_lr`` /
  ``weight_decay`` / ``param`` / ``blob_share_mode`` become ``ParamSpec``
  ``lr_mult`` / ``decay_mult`` / ``name`` / ``share_mode``, every ``*_param``
  is carried over, and the old per-layer preprocessing fields of data layers
  (``scale``, ``mean_file``, ``crop_size``, ``mirror``) move to
  ``transform_param``.
* Net-level ``input`` + ``input_shape`` / ``input_dim`` become an ``Input``
  layer named ``"input"`` placed first.
* BatchNorm layers with three ``param`` entries lose them (Caffe's BatchNorm
  sets its own multipliers).
* Solvers: the old ``solver_type`` enum becomes the ``type`` string. Caffe does
  not upgrade a solver's inline nets (``net_param`` etc.), so one holding V1
  ``layers`` or a net ``input`` is refused (Caffe would build it without them).
  They still get the BatchNorm ``param`` strip (Caffe's BatchNorm holds its
  statistics at lr_mult 0 either way).
"""
from __future__ import annotations

import warnings

from runtime.errors import AllconvError
from runtime.proto import pb

# V1LayerParameter.LayerType value name -> V2 type string.
_V1_TYPE_NAMES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Old solver_type enum name -> type string.
_SOLVER_TYPE_NAMES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# Data layers whose own *_param once carried the preprocessing settings.
_DATA_PARAM_FIELDS = {
    "DATA": "data_param",
    "IMAGE_DATA": "image_data_param",
    "WINDOW_DATA": "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def upgrade_net(net):
    """Bring a NetParameter to the current form in place; returns it."""
    if len(net.layers):
        if len(net.layer):
            raise AllconvError(
                "net mixes V2 `layer` and V1 `layers` entries; use one form only"
            )
        _upgrade_v1_layers(net)
    _upgrade_inputs(net)
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            del layer.param[:]
    return net


def _upgrade_v1_layers(net) -> None:
    v1_enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    upgraded = []
    for old in net.layers:
        if old.HasField("type"):
            enum_name = v1_enum.values_by_number[old.type].name
        else:
            enum_name = "NONE"
        new = pb.LayerParameter()
        if old.HasField("name"):
            new.name = old.name
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        if enum_name != "NONE":
            new.type = _V1_TYPE_NAMES[enum_name]
        new.blobs.extend(old.blobs)
        new.loss_weight.extend(old.loss_weight)

        specs = (
            ("name", list(old.param)),
            ("share_mode", list(old.blob_share_mode)),
            ("lr_mult", list(old.blobs_lr)),
            ("decay_mult", list(old.weight_decay)),
        )
        count = max(len(values) for _, values in specs)
        for _ in range(count):
            new.param.add()
        for field, values in specs:
            for spec, value in zip(new.param, values):
                setattr(spec, field, value)

        for field, value in old.ListFields():
            if field.name.endswith("_param") and hasattr(new, field.name):
                getattr(new, field.name).CopyFrom(value)

        data_field = _DATA_PARAM_FIELDS.get(enum_name)
        if data_field and new.HasField(data_field):
            _move_transform_fields(getattr(new, data_field), new.transform_param)
        upgraded.append(new)
    del net.layers[:]
    net.layer.extend(upgraded)


def _move_transform_fields(source, transform) -> None:
    """A V1 data layer's preprocessing fields into its transform_param, over what that
    holds, as Caffe's UpgradeNetDataTransformation moves them."""
    for name in _TRANSFORM_FIELDS:
        if source.HasField(name):
            setattr(transform, name, getattr(source, name))
            source.ClearField(name)


def _upgrade_inputs(net) -> None:
    names = list(net.input)
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    if not names:       # Caffe's UpgradeNetInput runs only for `input` names
        if has_shape or has_dim:
            warnings.warn("input_shape / input_dim given without any `input` name: ignored, "
                          "as Caffe ignores them", stacklevel=2)
        return
    # Caffe's UpgradeNetInput reads the first shape (or four input_dim values) per input and
    # ignores the rest; reading past the end would be undefined there
    if has_shape and len(net.input_shape) < len(names):
        raise AllconvError(
            f"{len(names)} net input(s) but {len(net.input_shape)} input_shape entries"
        )
    if not has_shape and not has_dim:
        # UpgradeNetInput: `input` names alone are a legacy caffemodel's, dropped; a layer
        # that reads one then meets an unknown bottom, as in Caffe
        net.ClearField("input")
        return
    if not has_shape:
        if len(net.input_dim) < 4 * len(names):
            raise AllconvError(
                f"{len(names)} net input(s) need {4 * len(names)} input_dim values, "
                f"got {len(net.input_dim)}"
            )
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(names)
    for i in range(len(names)):
        shape = layer.input_param.shape.add()
        if has_shape:
            shape.CopyFrom(net.input_shape[i])
        else:
            shape.dim.extend(net.input_dim[4 * i: 4 * i + 4])
    rest = list(net.layer)
    del net.layer[:]
    net.layer.extend([layer] + rest)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def upgrade_solver(solver):
    """Bring a SolverParameter to the current form in place (its solver_type); returns it.
    An inline net holding V1 ``layers`` or a net ``input`` is refused: Caffe builds it
    without them."""
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise AllconvError(
                "solver sets both the old `solver_type` enum and the `type` string; "
                "keep only `type`"
            )
        enum_desc = pb.SolverParameter.DESCRIPTOR.enum_types_by_name["SolverType"]
        solver.type = _SOLVER_TYPE_NAMES[enum_desc.values_by_number[solver.solver_type].name]
        solver.ClearField("solver_type")
    inline = [(f, getattr(solver, f)) for f in ("net_param", "train_net_param")
              if solver.HasField(f)]
    for name, net in inline + [(f"test_net_param #{i}", n)
                               for i, n in enumerate(solver.test_net_param)]:
        # Caffe upgrades the nets it reads from files; an inline one is built as it stands
        old = ["V1 `layers`"] * bool(len(net.layers)) + ["the net's `input`"] * bool(net.input)
        if old:
            raise AllconvError(f"the solver's inline {name} holds {' and '.join(old)}, which "
                               "Caffe does not upgrade in a solver (it would build without "
                               "them): write `layer` entries and an Input layer")
    return solver
