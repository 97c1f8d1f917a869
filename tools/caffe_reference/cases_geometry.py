"""Fixture cases for the geometry layers: Slice, Crop, Reshape, Tile, SPP, ArgMax, Reduction,
Filter, BatchReindex, Silence, Deconvolution (collected by make_fixtures.layer_cases)."""
from __future__ import annotations

from make_fixtures import L, conv, labels, net_case, normal, ties


def slice_cases():
    c = []

    def add(name, shape, body, tops):
        c.append(net_case(f"slice_{name}", "Slice", {"data": normal(*shape)},
                          [L("slice", "Slice", "data", [f"s{i}" for i in range(tops)],
                             f"slice_param {{ {body} }}")]))

    add("points_axis1", (2, 7, 3, 2), "slice_point: 2 slice_point: 3 slice_point: 5", 4)
    add("equal_axis_neg1", (2, 3, 6), "axis: -1", 3)
    add("legacy_slice_dim0", (4, 3, 2), "slice_dim: 0", 2)
    return c


def cases():
    return slice_cases()
