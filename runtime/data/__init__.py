"""Datasets for allconv: the dataset registry, official CIFAR readers, GCN+ZCA preprocessing,
Data-layer sources."""
from runtime.data.datasets import get_dataset
from runtime.data.preprocess import prepared_cifar
from runtime.data.source import open_source

__all__ = ["get_dataset", "prepared_cifar", "open_source"]
