"""Member blocks of a packed tensor (runtime/pack.py): member k of K holds rows [k·n, (k+1)·n)
of axis 0, n = rows / K, in every learnable blob of a pack and in state shaped like one. The
update rules (runtime/optim) and the pack read them here."""
from __future__ import annotations

from typing import Sequence

import torch

from runtime.errors import AllconvError


def member_block(tensor: torch.Tensor, k: int, members: int) -> torch.Tensor:
    """Member ``k``'s block of a packed learnable blob, or of a tensor shaped like one: rows
    [k·n, (k+1)·n) of axis 0, n = rows / members (a view: writes reach the pack)."""
    rows, left = divmod(tensor.shape[0], members)
    if left or not 0 <= k < members:
        raise AllconvError(f"no member {k} of {members} in a blob of shape "
                           f"{tuple(tensor.shape)}")
    return tensor.narrow(0, k * rows, rows)


def member_rows(values: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """Per-member ``values`` (K,) spread over the rows of ``tensor``'s member blocks (axis 0,
    as `member_block` splits it), broadcastable against ``tensor``: a per-member learning
    rate, clip factor or stop mask applied to a packed parameter."""
    members = values.numel()
    rows, left = divmod(tensor.shape[0], members)
    if left:
        raise AllconvError(f"{members} member values do not split a blob of shape "
                           f"{tuple(tensor.shape)} along axis 0")
    return values.repeat_interleave(rows).reshape(-1, *(1,) * (tensor.dim() - 1))


def member_state(tensors: Sequence[torch.Tensor], k: int, members: int) -> list[torch.Tensor]:
    """Member ``k``'s blocks (views) of packed tensors shaped like the parameters."""
    return [member_block(t, k, members) for t in tensors]
