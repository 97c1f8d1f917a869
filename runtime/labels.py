"""Labels as class indices, for the layers that index class scores by label (SoftmaxWithLoss,
Accuracy, InfogainLoss, MultinomialLogisticLoss, HingeLoss: ``reads_class_labels = True``).

Caffe only DCHECKs the range, so a release build reads out of bounds on a label past the class
count. Here such a label is an error that names the layer, the label and the class count:

- checked at once (one host read) by default: on the CPU, for `Net` and `allconv-caffe` users;
- or, when a training loop gives the layer a device record (`defer_label_checks`), the label
  is clamped into range before the gather (an out-of-range gather on the GPU asserts on the
  device before any flag could be read) and recorded there, for the loop to read with its
  other device flags at its next host sync (`label_records`, `deferred_label_error`).
"""
from __future__ import annotations

import torch

from runtime.errors import AllconvError

NONE_SEEN = 0


def class_indices(layer, labels: torch.Tensor, classes: int,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """``labels`` (int64) as indices into ``classes`` scores: 0 where not ``valid`` (ignored
    labels; None: all valid), out-of-range valid labels refused (see the module docstring)."""
    bad = (labels < 0) | (labels >= classes)
    if valid is not None:
        bad &= valid
    record = getattr(layer, "label_record", None)
    if record is None:
        if bool(bad.any()):
            raise AllconvError(_message(layer, int(labels[bad][0]), classes))
        return labels if valid is None else torch.where(valid, labels, 0)
    flat = bad.reshape(-1)
    first = labels.reshape(-1).index_select(0, flat.long().argmax().reshape(1))[0]
    seen = flat.any() & (record[0] == NONE_SEEN)
    found = torch.stack([torch.ones_like(first), first, torch.full_like(first, classes)])
    record.copy_(torch.where(seen, found, record))
    return torch.where(~bad if valid is None else valid & ~bad, labels, 0)


def defer_label_checks(net) -> list:
    """Give every label-indexing layer of ``net`` a device record (see the module docstring);
    returns those layers, for `deferred_label_error`."""
    layers = [layer for layer in net.layers if getattr(layer, "reads_class_labels", False)]
    for layer in layers:
        layer.label_record = torch.zeros(3, dtype=torch.long, device=net.device)
    return layers


def label_records(layers) -> torch.Tensor:
    """The layers' records as one (layers, 3) device tensor, for a caller that reads it with
    its other device values in one host read."""
    return torch.stack([layer.label_record for layer in layers]).reshape(len(layers), 3)


def deferred_label_error(layers, records=None) -> AllconvError | None:
    """The error for the first out-of-range label the records hold, or None; ``records``:
    `label_records` already read to the host (default: read them now)."""
    if not layers:
        return None
    if records is None:
        records = label_records(layers).cpu()
    for layer, (seen, label, classes) in zip(layers, records.long().tolist()):
        if seen != NONE_SEEN:
            return AllconvError(_message(layer, label, classes))
    return None


def _message(layer, label: int, classes: int) -> str:
    shown = (f"{label} (a NaN, infinite or huge value, as int64 reads it)"
             if label in (torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max) else label)
    return (f"layer {layer.name!r} ({layer.param.type}): label {shown} is outside its "
            f"{classes} classes (0 to {classes - 1})")
