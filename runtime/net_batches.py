"""pycaffe's ``forward_all`` and ``forward_backward_all``: inputs of any length through a
`Net` in batches of its own size, the last one padded with zeros (pycaffe.py's ``_batch``)."""
from __future__ import annotations

import torch

from runtime.blob_views import as_numbers, fills
from runtime.errors import AllconvError


class BatchedPasses:
    """`Net`'s passes over inputs longer than its batch."""

    def forward_all(self, blobs=None, **inputs) -> dict:
        """pycaffe's ``forward_all``: Input blobs' values of any length, run through the net
        in batches of its own (the last one padded with zeros); returns each output (and
        ``blobs``) for every item, the padding cut off."""
        names = self._check_blob_names(blobs)
        if not inputs:
            raise AllconvError("forward_all needs the inputs' values, as name=array")
        count, batches = self._batches("forward_all", inputs, self._input_slots, "an Input")
        outs: dict[str, list] = {}
        for chunk in batches:
            _collect(outs, self.forward(blobs=names, **chunk), "forward_all")
        return _joined(outs, count) if count else self._no_items([*self.outputs, *names])

    def forward_backward_all(self, blobs=None, diffs=None, **values) -> tuple[dict, dict]:
        """pycaffe's ``forward_backward_all``: Input blobs' values and outputs' diffs (name=
        array, of one length) run through the net in batches of its own, each a forward
        and a backward (the last padded with zeros); returns ({output, and ``blobs``: values},
        {input, and ``diffs``: diffs}) for every item, the padding cut off."""
        names, diff_names = self._check_blob_names(blobs), self._check_blob_names(diffs)
        if not values:
            raise AllconvError("forward_backward_all needs the inputs' values or the outputs' "
                               "diffs, as name=array")
        count, batches = self._batches("forward_backward_all", values,
                                       [*self._input_slots, *self.outputs],
                                       "an Input or output")
        outs: dict[str, list] = {}
        grads: dict[str, list] = {}
        for chunk in batches:
            _collect(outs, self.forward(blobs=names, **{
                n: v for n, v in chunk.items() if n in self._input_slots}),
                "forward_backward_all")
            _collect(grads, self.backward(diffs=diff_names, **{
                n: v for n, v in chunk.items() if n in self.outputs}), "forward_backward_all")
        if not count:
            return (self._no_items([*self.outputs, *names]),
                    self._no_items([*self.inputs, *diff_names]))
        return _joined(outs, count), _joined(grads, count)

    def _no_items(self, names) -> dict:
        """What a pass over no items returns, as pycaffe's: each blob of ``names`` with none."""
        return {name: torch.empty((0, *self._shapes[name][1:])) for name in dict.fromkeys(names)}

    def _batches(self, method: str, values: dict, allowed, kind: str):
        """(items, padded batches) of ``values`` (name -> array of items shaped like the
        blob's), each batch the blob's size, the last padded with zeros, as pycaffe's
        ``_batch``."""
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise AllconvError(f"{method}({unknown[0]}=...): not {kind} blob (inputs: "
                               f"{', '.join(self.inputs)}; outputs: {', '.join(self.outputs)})")
        values = {name: as_numbers(v, f"{method}({name}=...)") for name, v in values.items()}
        for name, value in values.items():
            if not value.dim():
                raise AllconvError(f"{method}({name}=...): a single number; an array of items "
                                   f"of {self._shapes[name][1:]} expected")
        count = len(next(iter(values.values())))
        for name, value in values.items():
            # each item as pycaffe's assignment takes it: the blob's item shape, or broadcast to it
            if not fills(value.shape, (count, *self._shapes[name][1:])):
                raise AllconvError(f"{method}({name}=...): shape {tuple(value.shape)}; "
                                   f"{count} items of {self._shapes[name][1:]} expected")
        batch = self._shapes[next(iter(values))][0]

        def chunks():
            for start in range(0, count, batch):
                chunk = {name: torch.zeros(self._shapes[name]) for name in values}
                for name, value in values.items():
                    chunk[name][:len(value[start:start + batch])] = value[start:start + batch]
                yield chunk
        return count, chunks()


def _collect(parts: dict, batch: dict, method: str) -> None:
    """Add a batch's ``{blob: tensor}`` (a copy) to ``parts``' lists."""
    for name, value in batch.items():
        if value.dim() == 0:
            raise AllconvError(f"{method}: blob {name!r} has no batch axis")
        parts.setdefault(name, []).append(value.clone())


def _joined(parts: dict, count: int) -> dict:
    """`_collect`'s lists joined along the batch axis, the padding after ``count`` items cut."""
    return {name: torch.cat(batches)[:count] for name, batches in parts.items()}
