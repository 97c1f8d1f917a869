"""One layer made from its prototxt text, and seeded random tensors, for the layer tests."""
import torch
from google.protobuf import text_format

from runtime.layers import make_layer
from runtime.proto import pb


def build(text, *bottom_shapes, phase=pb.TEST, seed=0, **options):
    """The layer ``text`` describes, set up for ``bottom_shapes`` in ``phase``."""
    param = text_format.Parse(text, pb.LayerParameter())
    return make_layer(param, bottom_shapes, phase, torch.Generator().manual_seed(seed), **options)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
