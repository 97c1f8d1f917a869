"""What a Python layer's module finds as ``caffe`` (pycaffe's names): ``Layer``, the base of
its class, with ``param_str``, ``phase``, ``type`` and ``blobs``; ``TRAIN`` and ``TEST``; and
the blobs its ``setup``, ``reshape``, ``forward`` and ``backward`` are handed, each with
float32 numpy ``data`` and ``diff``, ``reshape(*shape)``, ``shape``, ``count`` and the legacy
``num``, ``channels``, ``height``, ``width``.

``runtime.layers.python`` imports the module with this one standing in for ``caffe`` and
runs the class; nothing here knows the Net.
"""
from __future__ import annotations

import math
import operator
import types

import numpy as np

from runtime.blob_shape import check_blob_shape, legacy_shape
from runtime.errors import AllconvError

TRAIN, TEST = 0, 1


class BlobBase:
    """The shape-derived attributes every blob shows; ``shape`` comes from the subclass."""

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def _legacy(self, axis: int) -> int:
        return legacy_shape(self.shape, "blob")[axis]

    num = property(lambda self: self._legacy(0), doc="legacy axis 0")
    channels = property(lambda self: self._legacy(1), doc="legacy axis 1")
    height = property(lambda self: self._legacy(2), doc="legacy axis 2")
    width = property(lambda self: self._legacy(3), doc="legacy axis 3")


class Memory(BlobBase):
    """A bottom's or top's blob as Caffe's Blob holds it: float32 data and diff kept up to
    their capacity across reshapes (a larger shape gets new memory of zeros). A top is shaped
    by the layer's ``reshape``; until then it has none."""

    def __init__(self, name: str):
        self.name, self.shape = name, None
        self._data = self._diff = np.zeros(0, np.float32)

    def reshape(self, *shape, **kwargs) -> None:
        if kwargs:
            raise TypeError("Blob.reshape takes no kwargs")
        shape = check_blob_shape([operator.index(d) for d in shape],
                                 f"reshape of blob {self.name!r}")
        count = math.prod(shape)
        if count > self._data.size:
            self._data, self._diff = np.zeros(count, np.float32), np.zeros(count, np.float32)
        self.shape = shape

    @property
    def count(self) -> int:
        return 0 if self.shape is None else math.prod(self.shape)

    @property
    def data(self) -> np.ndarray:
        return self._view(self._data)

    @property
    def diff(self) -> np.ndarray:
        return self._view(self._diff)

    def _view(self, memory: np.ndarray) -> np.ndarray:
        if self.shape is None:
            raise AllconvError(f"blob {self.name!r} has no shape yet: the layer's reshape "
                               "gives it one (top[i].reshape(...))")
        return memory[:self.count].reshape(self.shape)

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape})"


class BlobVec:
    """``self.blobs``: the layer's learnable blobs. ``add_blob(*shape)`` (in ``setup``) adds
    one of zeros; each is a view the runtime layer gives (``blob(i)``, ``add(shape)``)."""

    def __init__(self, owner):
        self._owner = owner

    def add_blob(self, *shape, **kwargs) -> None:
        if kwargs:
            raise TypeError("add_blob takes no kwargs")
        self._owner.add_learnable([operator.index(d) for d in shape])

    def __len__(self) -> int:
        return self._owner.learnable_count()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"blob index {index} out of range ({len(self)} blobs)")
        return self._owner.learnable(index % len(self))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class Layer:
    """The base of a Python layer's class, as pycaffe's ``caffe.Layer``. Before ``setup`` the
    layer gets ``param_str`` (python_param's) and ``phase`` (0 TRAIN, 1 TEST); ``blobs`` are
    its learnable blobs. A subclass defines ``setup`` and ``reshape`` (without them Caffe's
    calls recurse into themselves), ``forward`` and, where the net back-propagates through it,
    ``backward``."""

    type = "Python"

    def __init__(self, param=None):
        self.param_str, self.phase = "", TRAIN

    @property
    def blobs(self) -> "BlobVec":
        """The layer's learnable blobs (a property, as pycaffe's: the runtime layer hands
        them over before setup)."""
        return self.__dict__.get("_caffe_blobs")


def module() -> types.ModuleType:
    """A module named ``caffe`` holding ``Layer``, ``TRAIN`` and ``TEST``: what the layer's
    module imports while the runtime loads it."""
    stand_in = types.ModuleType("caffe", "allconv's stand-in for pycaffe's caffe, for the "
                                "Python layers a net names")
    stand_in.Layer, stand_in.TRAIN, stand_in.TEST = Layer, TRAIN, TEST

    def missing(name):
        raise AttributeError(f"caffe.{name}: a Python layer run by allconv finds only "
                             "caffe.Layer, caffe.TRAIN and caffe.TEST (the rest is pycaffe's)")
    stand_in.__getattr__ = missing
    return stand_in
