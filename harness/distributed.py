"""One run on several processes, started by torchrun: PyTorch's engine, nothing home-made.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `from_environment` joins the process group
(NCCL on CUDA, gloo on the CPU). Every rank draws the same global permutation and the same
random numbers for the global batch, and trains its own slice of it (`Ranks.part`);
DistributedDataParallel averages the gradients, so N processes compute what one process
computes on the whole global batch, up to float rounding.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Ranks", "SINGLE", "from_environment", "launched_by_torchrun"]


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` processes; rank 0 logs and writes."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, global_batch: int) -> slice:
        """This rank's positions in a global batch (equal slices, in rank order)."""
        size = global_batch // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` under DistributedDataParallel when there are several processes."""
        if self.world == 1:
            return module
        device = next(module.parameters()).device
        return torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device] if device.type == "cuda" else None,
            broadcast_buffers=False)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of ``value`` over the ranks (every rank must call it)."""
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world

    def min(self, value: torch.Tensor) -> torch.Tensor:
        """The smallest ``value`` over the ranks (every rank must call it)."""
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return value

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Ranks()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_environment(device: torch.device) -> Ranks:
    """Join torchrun's process group when WORLD_SIZE > 1 (once per process)."""
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
