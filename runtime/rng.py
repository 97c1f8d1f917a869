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
    return {name: layer.rng_state(*member_arg(member))
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
        layer.set_rng_state(state, *member_arg(member))


def member_arg(member: int | None) -> tuple:
    """The arguments that ask a layer for one member's state: none for a solo net, so that
    layers which cannot be packed (DummyData) need not take a ``member``."""
    return () if member is None else (member,)
