"""A ``Net`` built on PyTorch's meta device: every blob shape and parameter count from the
runtime's own layers (Caffe's Reshape), without allocating or filling a single weight.

This is how ``gen-prototxt --list`` counts the 77 M parameters of Large All-CNN instantly.
"""
from __future__ import annotations

import warnings

import torch

from runtime.errors import AllconvError
from runtime.net import Net


class ShapeOnlyFeed:
    """A Data-layer feed that declares its sample shape and serves no batches."""

    def __init__(self, sample_shape: tuple[int, ...]):
        self.sample_shape = tuple(sample_shape)

    def __call__(self, batch_size: int):
        raise AllconvError("a meta-device net holds shapes only and cannot be run")


def meta_net(prototxt, phase: int, sample_shape: tuple[int, ...] | None = None) -> Net:
    """``Net(prototxt, phase)`` with meta tensors; Data layers get ``sample_shape`` (C, H, W).

    Data layers' ``transform_param`` warnings are silenced: nothing is fed here.
    """
    feed = ShapeOnlyFeed(sample_shape) if sample_shape is not None else None
    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*transform_param is not applied")
        return Net(prototxt, phase, seed=0, feeds=feed)


def count_params(net: Net) -> int:
    """Learnable values of ``net``, each shared blob counted once (Caffe's net.params sizes)."""
    return sum(p.numel() for p in net.learnable_params)
