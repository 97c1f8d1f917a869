"""The training step as one function: the forward and backward of every member, Caffe's update
and the device-side bookkeeping (each member's loss sum, its first non-finite loss, a stop for
that member, the deferred label checks), with no host read. `TrainStep` runs it eagerly (the
CPU, and CUDA without --cuda-graphs) or, on CUDA with ``graphed``, captures it once as one CUDA
graph and replays it (issue 20, section 5).

Outside the step, on the host: the feed, which gathers and augments the next batch on the
device (its result is copied into the graph's static input buffers), and the schedule, which
writes the lr tensor the update reads only when a rate changes. The graph is captured after
``WARMUP`` eager steps on a side stream (cuDNN's autotuning, lazy allocations, the gradients'
first allocation). Dropout's masks are keyed by the run's device iteration counter
(runtime/layers/dropout.py `keyed_uniform`), which each replay reads, so the warm-up steps, the
replays and an eager run draw the same masks. An update rule that reads the iteration on the
host (Adam's bias correction) would be frozen at its captured value: such rules are refused.
"""
from __future__ import annotations

import torch

from runtime.errors import AllconvError

WARMUP = 3


class TrainStep:
    """``step(inputs)``: ``run.update(inputs)``, eagerly or as a replayed CUDA graph."""

    def __init__(self, run, graphed: bool):
        if graphed and run.optimizer.host_iteration:
            raise AllconvError(f"{type(run.optimizer).__name__} reads the iteration on the host "
                               "in its update, which a CUDA graph would freeze: use "
                               "--no-cuda-graphs")
        self.run, self.graphed = run, graphed
        self.graph, self.static, self.warm = None, None, 0

    def __call__(self, inputs: dict[str, torch.Tensor]) -> None:
        if not self.graphed:
            self.run.update(inputs)
            return
        if self.graph is None and self.warm < WARMUP:
            self._on_side_stream(inputs)
            self.warm += 1
            return
        if self.graph is None:
            self._capture(inputs)
        for name, value in inputs.items():
            self.static[name].copy_(value)
        self.graph.replay()
        for group in self.run.optimizer.param_groups:   # what the captured step() counted once
            group["iter"] += 1

    def _on_side_stream(self, inputs) -> None:
        side, main = torch.cuda.Stream(), torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self.run.update(inputs)
        main.wait_stream(side)

    def _capture(self, inputs) -> None:
        """Record one step into static input buffers; nothing runs until the first replay."""
        optimizer = self.run.optimizer
        self.static = {name: value.clone() for name, value in inputs.items()}
        optimizer.zero_grad(set_to_none=True)   # the backward allocates them in the graph's pool
        counted = [group["iter"] for group in optimizer.param_groups]
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.run.update(self.static)
        for group, iteration in zip(optimizer.param_groups, counted):
            group["iter"] = iteration
