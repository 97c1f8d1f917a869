"""Fixture cases for the Python layer, whose code is tests/fixtures/python_layers/
fixture_layers.py (on PYTHONPATH for Caffe, on sys.path for the tests). Collected by
make_fixtures.py: ``cases`` with the layer cases; its solver and data cases take ``chain``,
``SGD`` and ``data_layers``.

A conv's output through Python layers that scale it, learn a gain and a bias per channel
(their diffs added to), a ReLU with a Python layer in place after it (a positive factor: Caffe's
ReLU backward reads the blob that layer rewrote), and a Python loss of
weight 2: forward and backward, force_backward or propagate_down, and 8 SGD steps that move
the Python layer's blobs (lr_mult 2 on the gain, decay_mult 0 on the bias; iter_size 2). A
sequence reshapes the net between forwards. A Python data layer that draws its batch in
reshape, as layers that load an image there do, sizes the layers below it anew at every
forward; a Python layer's ``phase`` and ``param_str``."""
from __future__ import annotations

import json

import fixture_format as ff
from case_kit import L, conv, input_layer, net_case, normal

MODULE = "fixture_layers"


def python(name, layer, bottoms, tops, param_str="", extra=""):
    return L(name, "Python", bottoms, tops,
             f'{extra} python_param {{ module: "{MODULE}" layer: "{layer}" '
             f'param_str: {json.dumps(param_str)} }}')


def chain(head="", loss="loss_weight: 2", affine_specs=""):
    """Input data and target, then conv, Scaled, ChannelAffine, ReLU, Scaled in place (1.5)
    and the HalfSquaredDistance loss."""
    inputs = {"data": normal(2, 3, 5, 4), "target": normal(2, 4, 3, 2)}
    layers = [conv("conv", "data", "conv", "num_output: 4 kernel_size: 3"),
              python("scaled", "Scaled", "conv", "scaled", "2.5"),
              python("affine", "ChannelAffine", "scaled", "affine", extra=affine_specs),
              L("relu", "ReLU", "affine", "affine"),
              python("grow", "Scaled", "affine", "affine", "1.5"),
              python("loss", "HalfSquaredDistance", ["affine", "target"], "loss",
                     extra=f"{head} {loss}")]
    return inputs, layers


SGD = 'type: "SGD" base_lr: 0.002 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed"'


def cases():
    inputs, layers = chain()
    forced = net_case("python_chain_forced", "Python", inputs, layers, backward="loss")
    inputs, layers = chain(head="propagate_down: true propagate_down: false")
    held = net_case("python_chain_propagate_down", "Python", inputs, layers, backward="loss",
                    force_backward=False)
    steps = [{"inputs": {"data": normal(*shape)}, "forward": forward}
             for shape, forward in (((2, 3, 4, 4), True), ((3, 3, 2, 5), True),
                                    ((1, 3, 6, 2), False), ((2, 3, 3, 3), True))]
    sequence = {"kind": "sequence", "name": "python_reshaped_between_forwards",
                "group": "Python", "prototxt": input_layer(steps[0]["inputs"])
                + python("scaled", "Scaled", "data", "scaled", "-1.5")
                + python("affine", "ChannelAffine", "scaled", "affine"),
                "steps": steps, "weight_mode": "msra", "sample_size": ff.SAMPLE_SIZE,
                "note": "net.reshape() runs the layers' reshape; a reshape with no forward"}
    return [forced, held, sequence]


def data_layers(phase: str) -> list[str]:
    """TRAIN: a Source drawing its batch in each reshape, Scaled, MAX pooling (resized at every
    forward) and a Phase with a param_str; TEST: a Phase alone."""
    if phase == "TEST":
        return [python("phase", "Phase", (), "phase")]
    source = json.dumps({"seed": 3, "batch": 2, "channels": 3, "classes": 5})
    return [python("source", "Source", (), ["data", "label"], source),
            python("scaled", "Scaled", "data", "scaled", "2.5"),
            L("pool", "Pooling", "scaled", "pool",
              "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
            python("phase", "Phase", (), "phase", "0.25")]
