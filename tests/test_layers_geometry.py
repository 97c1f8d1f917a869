"""Geometry layers (Slice, Crop, Reshape, Tile, SPP, ArgMax, Reduction, Filter, BatchReindex,
Silence, Deconvolution) against hand-computed Caffe rules; bad parameters as one line naming
the layer and the field. Real Caffe's values are in tests/fixtures (test_caffe_fixtures.py)."""
import pytest
import torch
from google.protobuf import text_format

from runtime.errors import AllconvError
from runtime.layers import make_layer
from runtime.proto import pb

TRAIN, TEST = 0, 1


def build(text, *bottom_shapes, phase=TEST, seed=0):
    param = text_format.Parse(text, pb.LayerParameter())
    return make_layer(param, bottom_shapes, phase, torch.Generator().manual_seed(seed))


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- Slice

SLICE = "name: 'slice' type: 'Slice' bottom: 'x' {tops} slice_param {{ {body} }}"


def slice_layer(shape, body, tops=2):
    return build(SLICE.format(tops=" ".join(f"top: 't{i}'" for i in range(tops)), body=body),
                 shape)


def test_slice_points_and_gradient():
    x = rand(2, 6, 3).requires_grad_()
    layer = slice_layer(x.shape, "slice_point: 1 slice_point: 4", tops=3)
    assert layer.top_shapes == [(2, 1, 3), (2, 3, 3), (2, 2, 3)]
    a, b, c = layer(x)
    torch.testing.assert_close(torch.cat([a, b, c], 1), x)
    (a.sum() + 2 * b.sum() + 3 * c.sum()).backward()
    torch.testing.assert_close(x.grad[0, :, 0], torch.tensor([1., 2, 2, 2, 3, 3]))


def test_slice_equal_parts_axis_and_legacy_slice_dim():
    assert slice_layer((4, 3, 6), "axis: -1", tops=3).top_shapes == [(4, 3, 2)] * 3
    assert slice_layer((4, 3, 6), "slice_dim: 0").top_shapes == [(2, 3, 6)] * 2
    assert slice_layer((4, 6), "").top_shapes == [(4, 3)] * 2       # default axis 1
    # a slice point at the axis size leaves an empty last top, as in Caffe
    assert slice_layer((2, 4), "slice_point: 4").top_shapes == [(2, 4), (2, 0)]


@pytest.mark.parametrize("shape,body,tops,match", [
    ((2, 6), "axis: 1 slice_dim: 1", 2, "slice_param: give axis or slice_dim, not both"),
    ((2, 6), "slice_point: 2", 3, r"slice_param.slice_point: 1 point\(s\) for 3 tops"),
    ((2, 6), "slice_point: 3 slice_point: 2", 3, r"slice_point \[3, 2\] must increase"),
    ((2, 6), "slice_point: 0", 2, r"slice_point \[0\] must increase"),
    ((2, 6), "slice_point: 7", 2, r"at most the axis size 6"),
    ((2, 5), "", 2, "slice_param: 2 tops do not divide axis 1 of size 5"),
    ((2, 5), "slice_dim: 2", 2, "slice_param.slice_dim 2 is out of range"),
    ((2, 5), "axis: 2", 2, "axis 2 is out of range"),
])
def test_slice_errors_name_layer_and_field(shape, body, tops, match):
    with pytest.raises(AllconvError, match=r"^layer 'slice' \(Slice\): .*" + match):
        slice_layer(shape, body, tops)
