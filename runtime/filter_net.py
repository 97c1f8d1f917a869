"""Caffe's FilterNet (net.cpp): the layers of a NetParameter that its ``state`` (phase, level,
stages) includes, by each layer's include and exclude rules."""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.layers import describe
from runtime.proto import pb


def state_meets_rule(state, rule) -> bool:
    """Caffe's StateMeetsRule: phase, level range, all ``stage``s present, no ``not_stage``."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def included(layer, state) -> bool:
    """Caffe's FilterNet: no include rules → kept unless an exclude rule matches;
    include rules → kept if one matches."""
    if len(layer.include) and len(layer.exclude):
        raise AllconvError(f"{describe(layer)}: give include rules or exclude rules, not both")
    if len(layer.include):
        return any(state_meets_rule(state, rule) for rule in layer.include)
    return not any(state_meets_rule(state, rule) for rule in layer.exclude)


def filter_net(param):
    """Caffe's FilterNet: a copy of NetParameter ``param`` keeping the layers its state includes."""
    kept = pb.NetParameter()
    kept.CopyFrom(param)
    del kept.layer[:]
    kept.layer.extend(layer for layer in param.layer if included(layer, param.state))
    return kept
