"""The receptive field of every 4-d blob's units in the input, from the layers' own geometry."""
from __future__ import annotations

from runtime.geometry import Window


def _through(layer, windows, bottom_shape):
    """A conv or pooling layer's top windows from its bottom's (global pooling: whole map)."""
    if layer.type_name == "Convolution":
        if len(layer.kernel) != 2:
            return None
        return tuple(w.through(k, p, s, d) for w, k, p, s, d in
                     zip(windows, layer.kernel, layer.pad, layer.stride, layer.dilation))
    kernel = layer.kernel or tuple(bottom_shape[2:])
    return tuple(w.through(k, p, s) for w, k, p, s in
                 zip(windows, kernel, layer.pad, layer.stride))


def _union(windows):
    """Windows of several bottoms with one stride: the smallest window holding them all."""
    if any(w is None for w in windows) or len({(h.jump, v.jump) for h, v in windows}) != 1:
        return None
    return tuple(Window(min(w[axis].start for w in windows),
                        max(w[axis].start + w[axis].size for w in windows)
                        - min(w[axis].start for w in windows), windows[0][axis].jump)
                 for axis in (0, 1))


def receptive_windows(net) -> dict:
    """``{blob: (row Window, column Window)}`` for each 4-d blob whose units see a window of
    the input; None where a unit sees the whole input (after InnerProduct, for example)."""
    shapes = {name: blob.shape for name, blob in net.blobs.items()}
    windows = {}
    for layer in net.layers:
        if not layer.bottoms:
            windows.update((top, (Window(), Window()) if len(shapes[top]) == 4 else None)
                           for top in layer.tops)
            continue
        if layer.type_name in ("Convolution", "Pooling"):
            for i, top in enumerate(layer.tops):     # top i from bottom i (a mask: bottom 0)
                bottom = layer.bottoms[min(i, len(layer.bottoms) - 1)]
                spatial = len(shapes[bottom]) == 4 and windows.get(bottom) is not None
                found = _through(layer, windows[bottom], shapes[bottom]) if spatial else None
                windows[top] = found if len(shapes[top]) == 4 else None
            continue
        found = _union([windows.get(b) for b in layer.bottoms])
        for top in layer.tops:
            same = found is not None and len(shapes[top]) == 4 \
                and shapes[top][2:] == shapes[layer.bottoms[0]][2:]
            windows[top] = found if same else None
    return windows
