"""The random state of a net, by layer name: what makes a resumed run draw the same masks.

A layer with random draws (Dropout) offers ``rng_state(member=None)`` and
``set_rng_state(state, member=None)``; these helpers collect and restore them as
``{layer name: state}``, the form checkpoints store. In a packed net (runtime/pack.py) the state
is per member, and member k's is the form of its solo net's, so it saves and restores alone.
"""
from __future__ import annotations

import logging

log = logging.getLogger("allconv.rng")

__all__ = ["net_rng_state", "set_net_rng_state"]


def net_rng_state(net, member: int | None = None) -> dict:
    """``{layer name: layer.rng_state(member)}`` for every layer of ``net`` that draws at
    random (``member``: of a packed net)."""
    return {name: layer.rng_state() if member is None else layer.rng_state(member)
            for name, layer in zip(net.layer_names, net.layers) if hasattr(layer, "rng_state")}


def set_net_rng_state(net, states: dict, where: str, member: int | None = None) -> None:
    """Restore `net_rng_state` (into ``member`` of a packed net); a name the net lacks is
    reported (``where``: file, net)."""
    layers = dict(zip(net.layer_names, net.layers))
    for name, state in states.items():
        layer = layers.get(name)
        if layer is None or not hasattr(layer, "set_rng_state"):
            log.warning("%s: the net has no random layer %r; its state is not restored",
                        where, name)
            continue
        if member is None:   # a solo net's layers (DummyData, ...) need not know of members
            layer.set_rng_state(state)
        else:
            layer.set_rng_state(state, member)
