"""Datasets for allconv: official CIFAR readers, GCN+ZCA preprocessing, Data-layer sources."""
from runtime.data.cifar import load_cifar
from runtime.data.preprocess import prepared_cifar
from runtime.data.source import open_source

__all__ = ["load_cifar", "prepared_cifar", "open_source"]
