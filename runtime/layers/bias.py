"""Bias (bias_layer.cpp): bottom 0 plus a bias broadcast over the axes from ``axis`` on; the
bias is bottom 1, or a learned blob covering ``num_axes`` axes (filler default constant 0).

``affine_shape`` and ``broadcast`` are shared with Scale (scale_layer.cpp), which applies its
factor, and its optional bias, by the same rules."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import Layer, register
from runtime.layers.shapes import canonical_axis


def affine_shape(shape, axis: int, num_axes: int, field: str) -> tuple[int, ...]:
    """The shape of a learned blob covering ``num_axes`` axes (−1: all) of ``shape`` from
    ``axis`` on; ``field`` names the parameter message in errors."""
    start = canonical_axis(axis, len(shape))
    if num_axes < -1:
        raise AllconvError(f"{field}.num_axes {num_axes} must be >= 0, or -1 for all axes "
                           f"from axis")
    if num_axes >= 0 and start + num_axes > len(shape):
        raise AllconvError(f"{field}.num_axes {num_axes} from axis {start} runs past the "
                           f"{len(shape)}-axis bottom {shape}")
    return tuple(shape[start:] if num_axes == -1 else shape[start:start + num_axes])


def broadcast_axis(shape, operand, axis: int, what: str) -> int:
    """The axis of ``shape`` where ``operand`` (a shape) starts (0 for a scalar), checked to
    match ``shape`` there."""
    start = 0 if not operand else canonical_axis(axis, len(shape))
    if tuple(shape[start:start + len(operand)]) != tuple(operand):
        raise AllconvError(f"{what} shape {tuple(operand)} does not match bottom shape {shape} "
                           f"from axis {start}")
    return start


def broadcast(operand, start: int, ndim: int):
    """``operand`` viewed to broadcast against an ``ndim``-axis blob from axis ``start``."""
    return operand.reshape(tuple(operand.shape) + (1,) * (ndim - start - operand.dim()))


class BroadcastOperand:
    """Bias and Scale: a bottom 1 covers bottom 0's axes from ``self.axis`` on, over its
    ``self.operand_ndim`` axes (both set by ``reshape``)."""

    def operand_batch_axis(self, axis: int | None) -> int | None:
        """The axis of bottom 1 that holds bottom 0's ``axis`` (its batch, for ONNX export),
        or None where bottom 1 does not cover that axis."""
        if axis is None or not self.axis <= axis < self.axis + self.operand_ndim:
            return None
        return axis - self.axis


@register("Bias")
class Bias(BroadcastOperand, Layer):
    num_bottoms = (1, 2)

    @property
    def backward_ignores_input(self) -> bool:
        return len(self.bottoms) == 1

    def setup(self, bottom_shapes, generator):
        bias = self.param.bias_param
        if len(bottom_shapes) == 1:
            shape = affine_shape(bottom_shapes[0], bias.axis, bias.num_axes, "bias_param")
            self.add_blob(shape, bias.filler, generator)

    def reshape(self, bottom_shapes):
        operand = bottom_shapes[1] if len(bottom_shapes) > 1 else tuple(self.blobs[0].shape)
        self.operand_ndim = len(operand)
        self.axis = broadcast_axis(bottom_shapes[0], operand, self.param.bias_param.axis, "bias")
        return [bottom_shapes[0]]

    def forward(self, x, *bias):
        operand = bias[0] if bias else self.blobs[0]
        return (x + broadcast(operand, self.axis, x.dim()),)
