"""A dataset read in passes: the sample order of the current pass and the position in it.

Like Caffe's Data layer, the stream wraps around, so a draw may straddle two passes. The feeds
(``harness.feed.TrainFeed``, ``runtime.data.imagenet.ImageNetFeed``) take their indices from it
and save it with their checkpoints.
"""
from __future__ import annotations

import torch


class Passes:
    """Indices of ``size`` samples in passes: each pass a fresh ``randperm`` drawn from
    ``generator`` on the generator's device when ``shuffle``, else ``0 .. size-1``; the order is
    kept on ``device`` (default: the generator's). ``state_dict`` holds the order, the position
    and the generator (which a feed may share with its augmentation)."""

    def __init__(self, size: int, generator: torch.Generator, shuffle: bool = True,
                 device=None):
        self.size, self.generator, self.shuffle = size, generator, shuffle
        self.device = generator.device if device is None else torch.device(device)
        self.rewind()

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size, device=self.device)
        return torch.randperm(self.size, generator=self.generator,
                              device=self.generator.device).to(self.device)

    def rewind(self) -> None:
        """Start a new pass (unshuffled: from the first sample again)."""
        self.order, self.cursor = self._order(), 0

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` indices, on ``device``; a new pass starts where one runs out."""
        parts = []
        while count:
            if self.cursor == len(self.order):
                self.rewind()
            part = self.order[self.cursor:self.cursor + count]
            parts.append(part)
            self.cursor += len(part)
            count -= len(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict:
        return {"order": self.order.to("cpu", copy=True), "cursor": self.cursor,
                "generator": self.generator.get_state(), "device": str(self.generator.device)}

    def load_state_dict(self, state: dict) -> None:
        """Raises ValueError for a state drawn on another kind of device (a CUDA run's order
        goes on only on CUDA); a state saved before ``device`` was kept shows it when this
        generator refuses it."""
        mine = self.generator.device.type
        saved = torch.device(state.get("device", mine)).type
        if saved != mine:
            raise ValueError(f"the data order was drawn on {_named(saved)} and this run draws "
                             f"it on {_named(mine)}: resume the run on {_named(saved)}")
        self.order = state["order"].to(self.device, copy=True)
        self.cursor = int(state["cursor"])
        try:
            self.generator.set_state(state["generator"])
        except RuntimeError:
            raise ValueError(f"the data order's generator state does not fit this run's "
                             f"generator on {_named(mine)}: resume the run on the device it "
                             "trained on") from None


def _named(device_type: str) -> str:
    return {"cpu": "the CPU", "cuda": "CUDA"}.get(device_type, device_type)
