"""One run on several processes, started by torchrun: PyTorch's engine, nothing home-made.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `from_environment` joins the process group
(NCCL on CUDA, gloo on the CPU). Two ways to split the work:

* the harness (replicate): every rank draws the same global permutation and the same random
  numbers for the global batch and trains its slice of it (`Ranks.part`); DistributedDataParallel
  averages the gradients, so N processes compute what one process computes on the global batch;
* Caffe's multi-GPU (allconv-caffe train): each rank takes a whole batch_size batch, the ranks
  reading the one data stream in turn (`RankFeed`, Caffe's shared DataReader), and the summed
  gradients are divided by the number of ranks (`Ranks.average_gradients`, as Caffe's NCCL
  callback does), so the effective batch is N x batch_size.
"""
from __future__ import annotations

import gc
import inspect
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runtime.errors import AllconvError

__all__ = ["Ranks", "RankFeed", "SINGLE", "from_environment", "launched_by_torchrun", "leave",
           "local_device", "not_process_zero", "said_once"]


# No buffer sync in each forward (the net's buffers are its rank-local Input batches). torch
# 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers and warns about the old name.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` processes; rank 0 logs and writes."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"       # where collectives' tensors live (NCCL: the rank's GPU)

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
            module, device_ids=[device] if device.type == "cuda" else None, **_NO_BUFFER_SYNC)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of ``value`` over the ranks (every rank must call it)."""
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world

    def average_gradients(self, params) -> None:
        """Every rank's ``.grad`` becomes the mean over the ranks (one all-reduce)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        torch._foreach_copy_(grads, [t.view_as(g) for t, g in
                                     zip(flat.split([g.numel() for g in grads]), grads)])

    def min(self, value: torch.Tensor) -> torch.Tensor:
        """The smallest ``value`` over the ranks (every rank must call it)."""
        if self.world == 1:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return value

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one (every rank must call it)."""
        if self.world == 1:
            return flag
        return bool(self.min(torch.tensor(0 if flag else 1, device=self.device)) == 0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE = Ranks()


class RankFeed:
    """A Data layer's feed shared by the ranks as Caffe shares one DataReader: rank r takes
    batches r, r + N, r + 2N, ... of the stream (each rank reads the whole stream and keeps
    its own, so no rank waits for another)."""

    def __init__(self, feed, ranks: Ranks):
        self.feed, self.ranks = feed, ranks
        self.sample_shape = getattr(feed, "sample_shape", None)

    def __call__(self, batch_size: int):
        mine = None
        for r in range(self.ranks.world):
            batch = self.feed(batch_size)
            if r == self.ranks.rank:
                mine = batch
        return mine

    def state_dict(self) -> dict:
        return self.feed.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.feed.load_state_dict(state)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def not_process_zero() -> bool:
    """Under torchrun, a process other than rank 0, before the process group is joined:
    what every process finds alike (a refused option, the device), process 0 alone says."""
    return launched_by_torchrun() and os.environ.get("RANK", "0") != "0"


# how long another process waits before it exits on an error process 0 says: torchrun stops
# every process once one exits, and process 0, started a moment later, must be let say why
# (its exit ends the wait at once)
SAY_GRACE_SECONDS = 30.0


def said_once(check, *args):
    """``check(*args)``; every process finds the same error, so only process 0 says it."""
    try:
        return check(*args)
    except AllconvError:
        if not_process_zero():
            time.sleep(SAY_GRACE_SECONDS)
            raise SystemExit(2) from None
        raise


def from_environment(device: torch.device) -> Ranks:
    """Join torchrun's process group when WORLD_SIZE > 1 (once per process)."""
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), str(device))


def leave(ranks: Ranks) -> None:
    """Leave torchrun's process group once every rank is done with it (a barrier, then destroy):
    a gloo group left to the interpreter's exit aborts now and then ("terminate called without
    an active exception", SIGABRT: 5 in 32 two-process runs here, 0 in 50 with this). A
    finished run's DistributedDataParallel sits in a reference cycle until the collector runs,
    and holds the group past its destroy, so it is collected first (once in a CI run under
    load, 2026-12-04, the group still aborted at exit)."""
    if ranks.world > 1 and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
