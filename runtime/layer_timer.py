"""Per-layer forward and backward times, as Caffe's ``time`` command reports them (caffe.cpp).

Module hooks time each layer's forward. In the backward, tensor hooks note when the diff of a
layer's tops is complete and when the diffs it computes (its bottoms', its learnable blobs')
are: the layer's backward is the time between. Autograd runs the layers' backwards one after
another from the top, as Caffe's Net::Backward does, so the spans do not overlap in a chain.
Every mark synchronises the device first, as Caffe's per-layer timers wait for the GPU.
"""
from __future__ import annotations

import time
from typing import Callable

import torch


class LayerTimer:
    """Use as ``with LayerTimer(net, sync) as timer:`` around forward and backward passes;
    ``forward`` and ``backward`` hold each layer's summed seconds, by layer name."""

    def __init__(self, net, sync: Callable[[], None]):
        self.layers, self.sync = net.layers, sync
        self.forward = {layer.name: 0.0 for layer in self.layers}
        self.backward = dict.fromkeys(self.forward, 0.0)
        self._handles, self._leaf_handles, self._spans, self._start = [], [], [], 0.0

    def __enter__(self) -> "LayerTimer":
        for layer in self.layers:
            self._handles.append(layer.register_forward_pre_hook(self._before))
            self._handles.append(layer.register_forward_hook(self._after))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _now(self) -> float:
        self.sync()
        return time.perf_counter()

    def _before(self, layer, args) -> None:
        self._start = self._now()

    def _after(self, layer, args, outputs) -> None:
        self.forward[layer.name] += self._now() - self._start
        tops = [t for t in outputs if t.requires_grad]
        computed = [a for a in args if torch.is_tensor(a) and a.requires_grad]
        computed += [b for b in layer.blobs if b.requires_grad]
        if not tops or not computed:
            return
        span = {"layer": layer.name, "top": None, "done": None}
        self._spans.append(span)
        for top in tops:
            top.register_hook(lambda grad, span=span: self._mark(span, "top"))
        for tensor in computed:       # a learnable blob keeps its hook: removed after backward
            handle = tensor.register_hook(lambda grad, span=span: self._mark(span, "done"))
            if tensor.is_leaf:
                self._leaf_handles.append(handle)

    def _mark(self, span: dict, key: str) -> None:
        span[key] = self._now()

    def collect_backward(self) -> None:
        """After ``loss.backward()``: add each layer's span to ``backward``; drop the hooks."""
        for span in self._spans:
            if span["top"] is not None and span["done"] is not None:
                self.backward[span["layer"]] += max(0.0, span["done"] - span["top"])
        self._spans.clear()
        for handle in self._leaf_handles:
            handle.remove()
        self._leaf_handles.clear()
