"""Tile (tile_layer.cpp): the block of axes from ``axis`` on, repeated ``tiles`` times along
``axis``; the gradient sums the copies."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


@register("Tile")
class Tile(Layer):
    backward_ignores_input = True
    def setup(self, bottom_shapes, generator):
        tile = self.param.tile_param
        if not tile.HasField("tiles"):
            raise AllconvError("tile_param.tiles is required")
        if tile.tiles <= 0:
            raise AllconvError(f"tile_param.tiles {tile.tiles} must be positive")
        self.tiles = tile.tiles

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        self.axis = canonical_axis(self.param.tile_param.axis, len(shape))
        return [shape[:self.axis] + (shape[self.axis] * self.tiles,) + shape[self.axis + 1:]]

    def forward(self, x):
        repeats = [1] * x.dim()
        repeats[self.axis] = self.tiles
        return (x.repeat(repeats),)
