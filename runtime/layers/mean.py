"""``group_mean``: BatchNorm's and MVN's mean, with a constant group's own value."""
from __future__ import annotations

import torch


def group_mean(x: torch.Tensor, dims, keepdim: bool = False) -> torch.Tensor:
    """The mean of ``x`` over ``dims``, but exactly the value of a group whose values are all
    equal, so that it centres to 0 (a mean can miss it by an ulp, which 1/√eps or
    1/(σ + eps) then amplifies: Caffe's sums give 0 for most such groups)."""
    mean = x.mean(dims, keepdim=True)
    if x.numel():
        first = x[tuple(slice(0, 1) if d in dims else slice(None) for d in range(x.dim()))]
        mean = torch.where(x.amax(dims, keepdim=True) == x.amin(dims, keepdim=True),
                           first, mean)
    return mean if keepdim else mean.reshape([s for d, s in enumerate(mean.shape)
                                              if d not in dims])
