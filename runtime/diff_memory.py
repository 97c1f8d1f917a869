"""Where Caffe's backward differs from autograd's on the same graph, planned when a `Net` is
built (which bottoms get a diff, which loss terms count in the forward only, whose diff memory
a Reshape shares), and Caffe's diff memory read after a backward."""
from __future__ import annotations

import math
from collections import Counter

import torch

from runtime.backward_plan import backward_plan, refused_backward
from runtime.blob_shape import reshaped
from runtime.layers import Layer


class DiffMemory:
    """`Net`'s plan of Caffe's diffs, and the diff memory of its blobs."""

    # what it reads of the Net: its layers, blobs and outputs, each blob's shape, latest value
    # and in-place versions, the diffs held for blobs, what each layer's params and bottoms
    # propagate
    layers: torch.nn.ModuleList
    blobs: dict
    outputs: list[str]
    force_backward: bool
    retain_blob_diffs: bool
    _shapes: dict
    _values: dict
    _versions: dict
    _held_diffs: dict
    _top_loss_weights: dict
    _propagate_down: list
    _param_needs: list
    _frozen_uses: list
    _anchor: torch.Tensor

    def _plan_diffs(self) -> None:
        """Where Caffe's backward differs from autograd's on the same graph. A bottom that Caffe
        computes a diff for gets one even when nothing below it learns (``_fresh_diffs``: per
        layer, those bottoms; autograd would stop at a value that needs no gradient). A loss
        term whose top a later layer back-propagates into counts in the forward only
        (``_forward_only``: (layer, top) pairs): that layer's backward overwrites the loss
        weight Caffe put into the top's diff at set-up), and so does the loss of a layer that
        runs no backward (its top read by a layer that propagates nothing into it).
        ``_backward_refused``: why Caffe's Backward would abort on this net, if it would.
        ``_diff_shared_with``: {a Reshape's bottom: its top}, whose diff Caffe's bottom shows
        where nothing computes the bottom's own (and ``_diff_memory_of``, the other way: the
        top shows the bottom's where it has one); ``_scratch_readers``: {a blob: the one layer
        reading it as bottom 0 that may leave a scratch diff there}. ``_layer_need`` and
        ``_cut``: the plan's, per layer (whether it runs Backward; whether Caffe's skip rule
        stops it); ``_writer``: {blob: the layer writing it last}; ``_runs_backward``: {blob:
        whether that layer runs Backward}; ``_diff_read``: the loss terms a later layer
        overwrites. A layer whose Backward writes every param diff whenever it runs
        (``diffs_whenever_run``) gets them all, whatever `_param_propagate_down` said.
        ``_keeps`` and ``_passed_diffs``: see ``_plan_bottom_diffs``."""
        plan = backward_plan(self.layers, self._param_needs, self.force_backward)
        for i, layer in enumerate(self.layers):
            if plan.layer_need[i] and layer.diffs_whenever_run is not None:
                for blob in layer.blobs.owners():     # every param diff, whatever its lr_mult
                    blob.requires_grad_(True)
                self._frozen_uses[i] = ()
        self._cut, self._layer_need = plan.cut, plan.layer_need
        for layer, told in zip(self.layers, plan.told):
            layer.bottom_need_backward = told
        self._writer = {top: i for i, layer in enumerate(self.layers) for top in layer.tops}
        self._runs_backward = {top: plan.layer_need[i] for top, i in self._writer.items()}
        self._plan_bottom_diffs(plan)
        self._backward_refused = refused_backward(self.layers, plan)
        self._fresh_diffs = [tuple(j for j, need in enumerate(needs) if need and layer_need)
                             for layer_need, needs in zip(plan.layer_need, plan.bottom_need)]
        overwritten = {(k, b) for k, l in enumerate(self.layers)
                       for j, b in enumerate(l.bottoms) if j in self._fresh_diffs[k]
                       and not (j < len(l.tops) and l.tops[j] == b)}
        weighted = [(i, j, t) for i, l in enumerate(self.layers)
                    for j, (t, w) in enumerate(zip(l.tops, l.loss_weights)) if w]
        self._diff_read = {(i, j) for i, j, t in weighted if any(
            (k, t) in overwritten for k in range(i + 1, len(self.layers)))}
        self._forward_only = self._diff_read | {(i, j) for i, j, _ in weighted
                                                if not plan.layer_need[i]}
        self._diff_shared_with = {l.bottoms[0]: l.tops[0] for i, l in enumerate(self.layers)
                                  if l.top_diff_is_bottom_diff and l.tops[0] != l.bottoms[0]
                                  and (plan.layer_need[i] or not l.diff_shared_by_backward)}
        self._diff_memory_of = {top: bottom for bottom, top in self._diff_shared_with.items()}
        readers = [(l.bottoms[0], i) for i, l in enumerate(self.layers)
                   if l.bottoms and l.tops and l.tops[0] != l.bottoms[0]
                   and type(l).scratch_diff is not Layer.scratch_diff]
        read = Counter(b for b, _ in readers)
        self._scratch_readers = {b: i for b, i in readers if read[b] == 1}

    def _plan_bottom_diffs(self, plan) -> None:
        """Per layer, ``_keeps``: the bottoms whose diff its Backward writes (propagate_down,
        or ``diffs_whenever_run`` when it runs), the others read detached; ``_passed_diffs``:
        the in-place bottoms whose diff it does not write (not kept, or the layer is ``_cut``,
        stopped by Caffe's skip rule: its tops are read detached): their memory, shared with
        the top, hands the top's diff on unchanged."""
        self._keeps, self._passed_diffs = [], []
        for i, layer in enumerate(self.layers):
            whenever_run = layer.diffs_whenever_run or () if plan.layer_need[i] else ()
            kept = tuple(k or j in whenever_run for j, k in enumerate(self._propagate_down[i]))
            self._keeps.append(kept)
            self._passed_diffs.append(tuple(
                j for j, b in enumerate(layer.bottoms)
                if j < len(layer.tops) and layer.tops[j] == b
                and (plan.cut[i] or not kept[j])))

    def _diff_entry(self, name: str, diff, values: dict):
        """(the value, ``diff`` in its shape) where a diff in blob ``name``'s memory enters a
        backward: the blob, if its writer runs backward; else, for a top sharing its bottom's
        diff memory (a Reshape's), the lowest blob of that memory, whose writer reads it if it
        runs backward (a Split's sum); else None (nothing reads it)."""
        for blob in dict.fromkeys([name, self._diff_root(name)]):
            value = values.get(blob)
            if (self._runs_backward.get(blob) and value is not None and value.requires_grad
                    and value.numel() == diff.numel()):
                return value, diff.reshape(value.shape)
        return None

    def _diff_chain(self, name: str) -> list[str]:
        """``name``, then the blobs whose diff memory it shares, down the Reshapes."""
        chain = [name]
        while chain[-1] in self._diff_memory_of:
            chain.append(self._diff_memory_of[chain[-1]])
        return chain

    def _diff_root(self, name: str) -> str:
        """The lowest blob whose diff memory ``name`` shares (``name`` itself if none)."""
        return self._diff_chain(name)[-1]

    def _shared_memory_grad(self, name: str):
        """The gradient Caffe's diff memory of blob ``name`` ends with: a Reshape's top shares
        its bottom's memory, which the bottom's earliest gradient, written last, fills."""
        chain = self._diff_chain(name)
        grad = next((g for g in map(self._earliest_grad, reversed(chain)) if g is not None), None)
        if grad is None:
            return None
        shape = self._shapes[name]      # an input reshaped since: its memory, as Blob::Reshape
        return grad.reshape(shape) if grad.numel() == math.prod(shape) else reshaped(grad, shape)

    def _kept_grad(self, name: str):
        """``_shared_memory_grad`` where the pass kept the blobs' diffs (``retain_blob_diffs``),
        else None."""
        return self._shared_memory_grad(name) if self.retain_blob_diffs else None

    def _earliest_grad(self, name: str):
        """The gradient of the earliest value of blob ``name`` (in an in-place chain) that
        has one, or None."""
        return next((v.grad for v in self._versions.get(name, ())
                     if v.requires_grad and v.grad is not None), None)

    def _scratch_diff(self, name: str):
        """The diff the layer reading ``name`` as bottom 0 leaves there in Caffe while
        propagating nothing to it (``Layer.scratch_diff``), or None."""
        i = self._scratch_readers.get(name)
        if i is None or not self._versions.get(name) or 0 in self._fresh_diffs[i]:
            return None         # Backward writes bottom 0's diff: 0 where no loss reached it
        layer = self.layers[i]
        top = self._versions.get(layer.tops[0], [None])[0]
        top_diff = top.grad if top is not None and top.requires_grad else None
        learns = [b.requires_grad and k not in self._frozen_uses[i]
                  for k, b in enumerate(layer.blobs.owners())]
        gets = [self._earliest_grad(b) is not None for b in layer.bottoms]
        with torch.no_grad():
            return layer.scratch_diff([self._values[b] for b in layer.bottoms], top_diff,
                                      learns, gets)

    def _held_diff(self, name: str) -> torch.Tensor:
        """The diff memory of blob ``name`` (an output's, or one no backward wrote): zeros (a
        loss top's weight, as Caffe's set-up puts it there) that keep what is written into
        them, which the next backward starts from when the blob is an output (pycaffe's
        ``net.blobs[out].diff[...] = g``), and what each backward leaves there."""
        shape, anchor = self._shapes[name], self._anchor
        held = self._held_diffs.get(name)
        if held is None:
            grad = self._kept_grad(name)              # a backward's, before the first read
            held = (grad.detach().clone() if grad is not None else
                    torch.full(shape, self._top_loss_weights.get(name, 0.0)))
        elif tuple(held.shape) != tuple(shape):        # Blob::Reshape: the memory stays
            held = reshaped(held, shape)               # up to its capacity
        held = self._held_diffs[name] = held.to(anchor.device, anchor.dtype)
        return held

    def _keep_diffs(self, replaced) -> None:
        """Before the values of the blobs ``replaced`` are replaced, what the last backward
        left in their diffs becomes their diff memory (``_held_diff``), as Caffe's Forward
        leaves diffs alone: a later ``backward(start=)`` or ``.diff`` reads it (an output's
        memory is kept by ``backward`` itself)."""
        for name in replaced:
            if name not in self.outputs:
                grad = self._kept_grad(name)
                if grad is not None:
                    self._held_diffs[name] = grad.detach()

    def _part_seeds(self, first: int, last: int) -> dict:
        """{blob: the diff its memory holds} that Caffe's backward over layers ``first`` to
        ``last`` reads as it is: ``last``'s tops', and the outputs' whose memory lies in the
        part (written there, or shared down into it: a Reshape's top over a Split's), each
        memory once."""
        seeds, memories = {}, set()
        for name in [*self.layers[last].tops, *self.outputs]:
            root = self._diff_root(name)
            if root not in memories and (name in self.layers[last].tops
                                         or first <= self._writer[root] <= last):
                seeds[name] = self.blobs[name].diff.detach().clone()
                memories.add(root)
        return seeds
