"""Pooling (pooling_layer.cpp): MAX and AVE with Caffe's output size, ties and divisors.

Caffe's windows start at o·s − p and are clipped to the real input; a MAX window starts at
−FLT_MAX and keeps the first value strictly greater, so NaN and −inf never win, and a window
of nothing greater (or wholly outside the input) yields −FLT_MAX (a second top, MAX only, is
Caffe's mask: each maximum's index h·W + w in its input plane, −1 for a window that found
none, as floats); an AVE window
sums the real input it covers and divides by its extent clipped to [−p, H+p) only (a
signed product, as Caffe computes it). Windows are built by padding explicitly and pooling
without padding; when PyTorch's own padded pooling gives the same windows it is used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.blob_shape import check_int_field
from runtime.errors import AllconvError
from runtime.geometry import pool_output_size
from runtime.layers import Layer, register
from runtime.layers.shapes import check_image_blob, hw_pair
from runtime.proto import pb

FLT_MAX = float(torch.finfo(torch.float32).max)
_P = pb.PoolingParameter


def _pair(pool, name: str, default: int | None) -> tuple[int, int] | None:
    """``name`` for both axes, or ``name_h``/``name_w``; not both forms. A ``kernel_size``
    beside a lone ``kernel_h`` or ``kernel_w`` is the kernel (pooling_layer.cpp's check lets
    that pass, and takes kernel_size); a lone ``pad_h`` or ``stride_h`` is refused."""
    field = "kernel_size" if name == "kernel" else name
    lone = name == "kernel" and pool.HasField(field) and (
        pool.HasField("kernel_h") != pool.HasField("kernel_w"))
    pair = None if lone else hw_pair(pool, name)
    if pair is not None:
        if pool.HasField(field):
            raise AllconvError(f"give {field} or {name}_h/{name}_w, not both")
        return check_int_field(f"pooling_param.{name}_h/{name}_w", pair)
    if pool.HasField(field) or default is not None:
        value = getattr(pool, field) if pool.HasField(field) else default
        return check_int_field(f"pooling_param.{field}", (value, value))
    return None


@register("Pooling")
class Pooling(Layer):
    """MAX or AVE pooling over the last two axes of a 4-d blob; STOCHASTIC builds, as in Caffe,
    and is refused where it would run (Caffe's CPU Forward is NOT_IMPLEMENTED; only its GPU
    kernels sample)."""

    num_tops = (1, 2)
    runs = (_P.MAX, _P.AVE)      # the methods that run (and export); STOCHASTIC only builds

    @property
    def backward_ignores_input(self) -> bool:
        return self.method == _P.AVE        # MAX's switches come from the input

    def setup(self, bottom_shapes, generator):
        pool = self.param.pooling_param
        self.method, self.ceil = pool.pool, pool.round_mode == _P.CEIL
        self.mask = len(self.param.top) == 2
        if self.mask and self.method != _P.MAX:
            raise AllconvError("only MAX pooling has a second top (the mask); AVE has one")
        self.kernel = _pair(pool, "kernel", None)
        self.pad, self.stride = _pair(pool, "pad", 0), _pair(pool, "stride", 1)
        if any(self.pad) and self.method not in self.runs:      # Caffe's check
            raise AllconvError("padding is implemented only for MAX and AVE pooling")
        if pool.global_pooling:
            if self.kernel is not None:
                raise AllconvError("global_pooling takes the kernel from the bottom; "
                                   "do not give kernel_size")
            if self.pad != (0, 0) or self.stride != (1, 1):
                raise AllconvError("global_pooling needs pad 0 and stride 1")
        elif self.kernel is None:
            raise AllconvError("kernel_size (or kernel_h and kernel_w) is required")
        elif min(self.kernel) <= 0 or min(self.stride) <= 0:
            raise AllconvError("kernel and stride must be positive")
        elif any(p >= k for p, k in zip(self.pad, self.kernel)):
            raise AllconvError(f"pad {self.pad} must be smaller than the kernel {self.kernel}")

    def windows(self, size) -> list[tuple[int, int, int, int, int]]:
        """Per spatial axis: (input size, kernel, pad, stride, output size)."""
        kernel = tuple(size) if self.kernel is None else self.kernel
        padded = any(self.pad)
        return [(h, k, p, s, pool_output_size(h, k, p, s, self.ceil, padded))
                for h, k, p, s in zip(size, kernel, self.pad, self.stride)]

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        check_image_blob(shape)
        out = tuple(w[4] for w in self.windows(shape[2:]))
        if min(out) <= 0:
            raise AllconvError(f"bottom shape {shape} is smaller than the kernel")
        return [shape[:2] + out] * (2 if self.mask else 1)

    def forward(self, x):
        if self.method not in self.runs:
            raise AllconvError(f"layer {self.name!r} (Pooling): STOCHASTIC pooling does not "
                               "run on the CPU in Caffe (its Forward_cpu is NOT_IMPLEMENTED) "
                               "nor here: MAX and AVE run")
        if self.method == _P.MAX:
            x = torch.where(x > -FLT_MAX, x, -FLT_MAX)     # what Caffe's strict > never takes
        tops = self._pool(x)
        if self.mask:   # a window of nothing above −FLT_MAX found no maximum
            tops = tops[0], torch.where(tops[0] > -FLT_MAX, tops[1], -1.0)
        return tops

    def _pool(self, x):
        win = self.windows(x.shape[2:])
        kernel, pad, stride = ([w[i] for w in win] for i in (1, 2, 3))
        if all(p <= k // 2 and (p > 0 or (o - 1) * s < h) for h, k, p, s, o in win):
            # PyTorch's padded pooling has exactly Caffe's windows and divisors here.
            if self.method == _P.MAX:
                if not self.mask:
                    return (F.max_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil),)
                y, index = F.max_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil,
                                        return_indices=True)
                return y, index.to(x.dtype)
            return (F.avg_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil,
                                 count_include_pad=True),)
        # Pad to cover exactly the windows that start inside the input (a negative right pad
        # crops unused input). A last window starting past it (pad 0, rounding up) reads
        # nothing: it is added to the output as -FLT_MAX (MAX) or a zero sum (AVE), with no
        # padded copy as large as the stride.
        pads, outside = [], []
        for h, k, p, s, o in reversed(win):
            inside = min(o, (h + p - 1) // s + 1)
            pads += [p, (inside - 1) * s + k - h - p]
            outside += [0, o - inside]
        if self.method == _P.MAX:
            padded = F.pad(x, pads, value=-FLT_MAX)
            if not self.mask:
                return (F.pad(F.max_pool2d(padded, kernel, stride), outside, value=-FLT_MAX),)
            y, index = F.max_pool2d(padded, kernel, stride, return_indices=True)
            return (F.pad(y, outside, value=-FLT_MAX),
                    F.pad(self._unpadded(index, padded.shape[3], pads, x), outside, value=-1))
        sums = F.pad(F.avg_pool2d(F.pad(x, pads), kernel, stride, divisor_override=1), outside)
        return (sums / self._divisors(win, x),)

    @staticmethod
    def _unpadded(index, padded_width, pads, x):
        """Indices into the padded plane as Caffe's mask, h·W + w of the real input (a maximum
        in the padding is −FLT_MAX, which `forward` marks −1)."""
        h, w = index // padded_width - pads[2], index % padded_width - pads[0]
        return (h * x.shape[3] + w).to(x.dtype)

    @staticmethod
    def _divisors(win, x):
        """Caffe's AVE divisor per output: window extents clipped to [−p, H+p), multiplied
        (made on the device, with no host copy: a CUDA graph may capture it)."""
        starts = [torch.arange(out, device=x.device) * s - p for h, k, p, s, out in win]
        extents = [((start + k).clamp(max=h + p) - start).to(x.dtype)
                   for start, (h, k, p, s, out) in zip(starts, win)]
        return extents[0][:, None] * extents[1][None, :]
