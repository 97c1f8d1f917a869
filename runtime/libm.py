"""The C library's float ``logf``, ``expf`` and ``powf``: what Caffe<float>'s setup code calls
where it writes ``log``, ``exp`` or ``pow`` of a Dtype (Exp's and Log's constants); and
``powx``, torch's pow over a tensor with C's special values, for Caffe's ``caffe_powx``
(Power, LRN).

Measured against the reference Caffe build, these give its constants bit for bit; numpy's and
torch's float32 versions differ from them by an ulp in 2-14 % of bases. Where no C math library
loads, the double result rounded to float32 stands in (it differs in about 1 base of 400).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np
import torch


@functools.cache
def _library():
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    library = ctypes.CDLL(path)
    for name, arity in (("logf", 1), ("expf", 1), ("powf", 2)):
        function = getattr(library, name)
        function.argtypes, function.restype = [ctypes.c_float] * arity, ctypes.c_float
    return library


def _call(name: str, fallback, *args: float) -> np.float32:
    library = _library()
    if library is None:
        with np.errstate(all="ignore"):
            return np.float32(fallback(*(np.float64(np.float32(a)) for a in args)))
    return np.float32(getattr(library, name)(*args))


def logf(x: float) -> np.float32:
    return _call("logf", np.log, x)


def expf(x: float) -> np.float32:
    return _call("expf", np.exp, x)


def powf(x: float, y: float) -> np.float32:
    return _call("powf", lambda x, y: powx(torch.tensor(x), float(y)).item(), x, y)


def powx(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """torch's pow with C pow's special values (infinities, zeros and their signs, NaN): torch
    takes sqrt and rsqrt for ±0.5, which give NaN at −inf where pow gives +inf and +0, and −0
    and −inf at −0 where pow gives +0 and +inf. Finite values stay torch's, within an ulp or
    so of C's powf (x·x·x for 3, 1/(x·x) for −2)."""
    y = base.pow(exponent)
    if exponent == 0.5:
        return torch.where(base == -math.inf, math.inf, y) + 0.0      # −0 + 0 = +0
    if exponent == -0.5:
        return torch.where(base == -math.inf, 0.0, torch.where(base == 0, math.inf, y))
    return y
