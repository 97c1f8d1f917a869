"""Scale (scale_layer.cpp): bottom 0 times a factor broadcast over the axes from ``axis`` on,
plus an optional bias (``bias_term``). The factor is bottom 1, or a learned blob covering
``num_axes`` axes filled by ``filler`` (default constant 1). The bias is a learned blob over
the factor's axes, filled by ``bias_filler`` (default constant 0). Blobs: [factor, bias] with
one bottom, [bias] with two. A learned factor with as many values as bottom 0 keeps only the
last backward's diff, as Caffe writes it (``iter_size`` and sharing do not add to it)."""
from __future__ import annotations

from runtime.layers import Layer, register
from runtime.layers.shapes import count
from runtime.layers.bias import BroadcastOperand, affine_shape, broadcast, broadcast_axis
from runtime.proto import pb


@register("Scale")
class Scale(BroadcastOperand, Layer):
    num_bottoms = (1, 2)

    @property
    def backward_ignores_input(self) -> bool:
        return self.learned             # a factor from a second bottom depends on the input

    def setup(self, bottom_shapes, generator):
        scale = self.param.scale_param
        shape = bottom_shapes[0]
        self.learned = len(bottom_shapes) == 1
        if self.learned:
            filler = scale.filler if scale.HasField("filler") else pb.FillerParameter(
                type="constant", value=1)
            self.add_blob(affine_shape(shape, scale.axis, scale.num_axes, "scale_param"),
                          filler, generator)
        if scale.bias_term:
            num_axes = scale.num_axes if self.learned else len(bottom_shapes[1])
            self.add_blob(affine_shape(shape, scale.axis, num_axes, "scale_param"),
                          scale.bias_filler, generator)

    def reshape(self, bottom_shapes):
        shape, axis = bottom_shapes[0], self.param.scale_param.axis
        factor = tuple(self.blobs[0].shape) if self.learned else bottom_shapes[1]
        self.operand_ndim = len(factor)
        self.axis = broadcast_axis(shape, factor, axis, "scale")
        # Caffe's Backward writes a learned factor's diff instead of adding to it, so each
        # backward's replaces the last, where no axis lies before the factor's (outer_dim 1:
        # batch 1, or axis 0) and it is eltwise (inner_dim 1) or holds more than one value
        # (its gemv's beta is 0 there)
        outer, inner = count(shape[:self.axis]), count(shape[self.axis + len(factor):])
        overwritten = self.learned and outer == 1 and (inner == 1 or count(factor) > 1)
        self.overwritten_diffs = (0,) if overwritten else ()
        if self.param.scale_param.bias_term:
            self.bias_axis = broadcast_axis(shape, tuple(self.blobs[-1].shape), axis, "bias")
        return [shape]

    def forward(self, x, *factor):
        y = x * broadcast(self.blobs[0] if self.learned else factor[0], self.axis, x.dim())
        if self.param.scale_param.bias_term:
            y = y + broadcast(self.blobs[-1], self.bias_axis, x.dim())
        return (y,)

    def scratch_diff(self, bottoms, top_diff, learns, bottom_diffs):
        """While Caffe sums the factor's diff it keeps the product top diff × bottom 0 in
        bottom 0's diff (not in place, and for a factor with fewer values than bottom 0)."""
        factor_diff = learns[0] if self.learned else bottom_diffs[1]
        x, factor = bottoms[0], self.blobs[0] if self.learned else bottoms[1]
        if top_diff is None or not factor_diff or factor.numel() == x.numel():
            return None
        return top_diff * x
