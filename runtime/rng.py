"""The random state of a net, by layer name: what makes a resumed run draw the same masks.

A layer with random draws (Dropout) offers ``rng_state()`` and ``set_rng_state(state)``; these
helpers collect and restore them as ``{layer name: state}``, the form checkpoints store.
"""
from __future__ import annotations

import logging

log = logging.getLogger("allconv.rng")

__all__ = ["net_rng_state", "set_net_rng_state"]


def net_rng_state(net) -> dict:
    """``{layer name: layer.rng_state()}`` for every layer of ``net`` that draws at random."""
    return {name: layer.rng_state() for name, layer in zip(net.layer_names, net.layers)
            if hasattr(layer, "rng_state")}


def set_net_rng_state(net, states: dict, where: str) -> None:
    """Restore `net_rng_state`; a name the net lacks is reported (``where``: file, net)."""
    layers = dict(zip(net.layer_names, net.layers))
    for name, state in states.items():
        layer = layers.get(name)
        if layer is None or not hasattr(layer, "set_rng_state"):
            log.warning("%s: the net has no random layer %r; its state is not restored",
                        where, name)
            continue
        layer.set_rng_state(state)
