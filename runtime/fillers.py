"""Caffe's weight fillers (include/caffe/filler.hpp), keyed by FillerParameter.type."""
from __future__ import annotations

import math

import torch

from runtime.blob_shape import legacy_shape
from runtime.errors import AllconvError
from runtime.proto import pb
from runtime.registry import add_once

FILLERS = {}


def _filler(name):
    """Function decorator: the filler for FillerParameter.type ``name`` (registered once)."""
    def add(fn):
        return add_once(FILLERS, name, fn, "filler type")
    return add


def fan_in_out(shape, filler: str = "xavier") -> tuple[int, int]:
    """Caffe's fans: fan_in = count / num, fan_out = count / channels (the legacy accessors,
    which abort on a blob of more than 4 axes: an AllconvError naming ``filler``)."""
    num, channels, _, _ = legacy_shape(shape, f"the {filler} filler's blob")
    count = math.prod(shape)
    return count // num, count // channels


def _fan(shape, param) -> float:
    """The n of xavier/msra, chosen by ``variance_norm``."""
    fan_in, fan_out = fan_in_out(shape, param.type)
    if param.variance_norm == pb.FillerParameter.FAN_OUT:
        return fan_out
    if param.variance_norm == pb.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2
    return fan_in


@_filler("constant")
def _constant(tensor, param, generator):
    return tensor.fill_(param.value)


@_filler("uniform")
def _uniform(tensor, param, generator):
    # caffe_rng_uniform checks a <= b
    if not (math.isfinite(param.min) and math.isfinite(param.max) and param.min <= param.max):
        raise AllconvError(f"uniform filler needs finite min <= max, got min {param.min:g}, "
                           f"max {param.max:g}")
    return tensor.uniform_(param.min, param.max, generator=generator)


@_filler("gaussian")
def _gaussian(tensor, param, generator):
    # caffe_rng_gaussian checks sigma > 0, no more: a mean or std past the finite fills as
    # Caffe's does (NaN or infinite weights, which the solver's non-finite check then meets)
    if not param.std > 0:
        raise AllconvError(f"gaussian filler needs std > 0, got std {param.std:g}")
    if param.sparse >= 0 and param.sparse > tensor.shape[0]:  # caffe_rng_bernoulli's p <= 1
        raise AllconvError(f"gaussian filler: sparse {param.sparse} is more than the blob's "
                           f"{tensor.shape[0]} outputs (its non-zero probability, sparse / "
                           "outputs, must be at most 1)")
    tensor.normal_(param.mean, param.std, generator=generator)
    if param.sparse >= 0:
        keep = param.sparse / tensor.shape[0]  # mean non-zeros per output
        mask = torch.rand(tensor.shape, generator=generator) < keep
        tensor.mul_(mask)
    return tensor


@_filler("xavier")
def _xavier(tensor, param, generator):
    scale = math.sqrt(3.0 / _fan(tensor.shape, param))
    return tensor.uniform_(-scale, scale, generator=generator)


@_filler("msra")
def _msra(tensor, param, generator):
    return tensor.normal_(0.0, math.sqrt(2.0 / _fan(tensor.shape, param)), generator=generator)


@_filler("positive_unitball")
def _positive_unitball(tensor, param, generator):
    # U(0, 1), then each of the num rows (count / num values) divided by its sum
    num = legacy_shape(tensor.shape, "the positive_unitball filler's blob")[0]
    tensor.uniform_(0.0, 1.0, generator=generator)
    rows = tensor.view(num, -1)
    return rows.div_(rows.sum(1, keepdim=True)).view(tensor.shape)


@_filler("bilinear")
def _bilinear(tensor, param, generator):
    # (1 − |x/f − c|)(1 − |y/f − c|) over each k×k filter, f = ceil(k/2), c = (2f − 1 −
    # f mod 2)/(2f), in float32 as Caffe computes it: upsampling by f with a Deconvolution
    # (FCN). That c is (k − 1)/(2f) when k and f are both odd or both even; for the other
    # sizes (k = 2, 3, 6, 7, ...) the filter is off-centre, as real Caffe's is
    if tensor.dim() != 4 or tensor.shape[2] != tensor.shape[3]:
        raise AllconvError(f"bilinear filler needs a 4-d blob with square filters, got shape "
                           f"{tuple(tensor.shape)}")
    k = tensor.shape[3]
    f = math.ceil(k / 2)
    c = torch.tensor((2 * f - 1 - f % 2) / (2.0 * f), dtype=torch.float32)
    ramp = 1 - (torch.arange(k, dtype=torch.float32) / f - c).abs()
    return tensor.copy_(ramp[:, None] * ramp[None, :])


def fill(tensor: torch.Tensor, param, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` in place as Caffe's filler ``param`` would, drawing from ``generator``."""
    fn = FILLERS.get(param.type)
    if fn is None:
        raise AllconvError(f"unknown filler type {param.type!r} "
                           f"(supported: {', '.join(sorted(FILLERS))})")
    if param.sparse < -1:         # GaussianFiller's CHECK_GE(sparse, -1)
        raise AllconvError(f"filler {param.type!r}: sparse must be >= -1 (got {param.sparse})")
    if param.sparse >= 0 and param.type != "gaussian":
        raise AllconvError(f"filler {param.type!r} does not support `sparse` (only gaussian does)")
    if tensor.numel() == 0:
        raise AllconvError(f"cannot fill an empty blob of shape {tuple(tensor.shape)}")
    with torch.no_grad():
        return fn(tensor, param, generator)
