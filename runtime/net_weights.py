"""A Net's weight files, net.cpp's other half: CopyTrainedLayersFrom (.caffemodel, binary or
HDF5), ShareTrainedLayersWith, ToProto and ToHDF5, and the shape check of a stored blob."""
from __future__ import annotations

import logging
import warnings

import torch

from runtime import hdf5_snapshot
from runtime.blob_shape import shape_equals
from runtime.caffemodel import (LegacyShaped, blob_to_array, no_weights, read_layers,
                                write_weights)
from runtime.errors import AllconvError
from runtime.layers import describe

log = logging.getLogger("allconv.net")


class NetWeights:
    """`Net`'s weights in and out of files, and shared with another net."""

    # what it reads of the Net: its name, its layers and its learnable blobs, once each (and
    # it calls the Net's _index_params when it has shared blobs)
    name: str
    layers: torch.nn.ModuleList
    learnable_params: list

    def _copy_prototxt_blobs(self) -> None:
        """A layer whose prototxt holds ``blobs`` starts from them, as Caffe's Layer takes them
        (before sharing: a sharer's own are replaced by its owner's)."""
        for layer in self.layers:
            given = [blob_to_array(b) for b in layer.param.blobs]
            if not given:
                continue
            if len(given) != len(layer.blobs):
                raise AllconvError(f"{describe(layer.param)}: the prototxt gives {len(given)} "
                                   f"blob(s), the layer has {len(layer.blobs)}")
            for i, (array, blob) in enumerate(zip(given, layer.blobs)):
                _copy_blob(blob, array, f"{describe(layer.param)}: blob {i}", "prototxt")

    def copy_from(self, path, *, require_all: bool = False, into=None,
                  hdf5: bool | None = None) -> None:
        """Copy weights from a .caffemodel by layer name (Caffe's CopyTrainedLayersFrom; the
        file is HDF5 if its name ends in .h5, as the reference build decides; BVLC master asks
        H5Fis_hdf5): each layer of the file, in order, into the first layer of that name (from
        an HDF5 file the last, as Caffe's CopyTrainedLayersFromHDF5 looks names up), whose
        blob count must match (a blob-less layer's too). As in Caffe, a file layer the net
        lacks is logged ("Ignoring source layer NAME") and net layers the file lacks keep their
        initial values; a UserWarning names those that have blobs (with ``require_all``, an
        AllconvError, before anything is copied). ``into(layer)``: the tensors its blobs go to
        (default: the blobs; a pack's member gives its blocks of them). ``hdf5``: read as HDF5
        or not whatever the name (None: by the name)."""
        hdf5 = hdf5_snapshot.is_hdf5(path) if hdf5 is None else hdf5
        stored = (hdf5_snapshot.read_weights(path, {layer.name for layer in self.layers})
                  if hdf5 else read_layers(path))
        # a net without learnable layers saves no blobs; an HDF5 file's data group says what
        # it is, and layers named like none of the net's are ignored, as Caffe ignores them
        if not hdf5 and self.learnable_params and not any(blobs for _, blobs in stored):
            raise no_weights(path)
        owners = self._blob_owners()
        target = {layer.name: layer
                  for layer in (self.layers if hdf5 else reversed(self.layers))}
        names = {name for name, _ in stored}
        missing = list(dict.fromkeys(layer.name for layer in self.layers
                                     if layer.blobs and layer.name not in names))
        if missing:
            held = (n for n, blobs in stored if blobs or blobs is None)   # None: not read
            message = (f"{path}: no weights for layer(s) {', '.join(missing)} (the file has: "
                       f"{', '.join(dict.fromkeys(held)) or 'none'})")
            if require_all:
                raise AllconvError(message)
        copies = []                     # all checked before any is made
        for name, source in stored:
            layer = target.get(name)
            if layer is None:
                log.info("Ignoring source layer %s", name)
                continue
            if hdf5 and len(source) <= len(layer.blobs):
                source = source + [None] * (len(layer.blobs) - len(source))
            if len(source) != len(layer.blobs):
                raise AllconvError(f"{path}: layer {layer.name!r} has {len(source)} blob(s) in "
                                   f"the file but {len(layer.blobs)} in the net")
            for i, (array, blob) in enumerate(zip(source, into(layer) if into else layer.blobs)):
                if array is None:     # HDF5 saves a blob once, with the layer that owns it
                    if owners[id(layer.blobs.owner(i))] is layer:
                        raise AllconvError(f"{path}: layer {layer.name!r} has no blob {i}")
                    continue
                _check_stored_blob(blob, array, f"{path}: layer {layer.name!r} blob {i}", "file")
                copies.append((blob, array))
        for blob, array in copies:
            _copy_values(blob, array)
        if missing:
            warnings.warn(message + "; they keep their fillers' values", UserWarning,
                          stacklevel=2)

    def share_trained_layers_with(self, other: NetWeights) -> None:
        """Caffe's ShareTrainedLayersWith (pycaffe's ``share_with``): each layer named like a
        layer of ``other`` uses that layer's learnable blobs (the same Parameters), so it sees
        ``other``'s training; their gradients are shared too, where Caffe shares the data
        alone. Blob counts and shapes must match; all are checked before anything is shared.
        Of layers with one name, the first is the target (Caffe scans from the front)."""
        mine = {layer.name: layer for layer in reversed(self.layers)}
        self.share_layer_blobs([(mine[l.name], l) for l in other.layers if l.name in mine])

    share_with = share_trained_layers_with

    def share_layer_blobs(self, pairs) -> None:
        """Each (this net's layer, another net's layer) pair: the first uses the second's
        learnable blobs, checked for count and shape before any is shared."""
        pairs = list(pairs)
        for target, source in pairs:
            if len(target.blobs) != len(source.blobs):
                raise AllconvError(f"cannot share layer {source.name!r}: {len(source.blobs)} "
                                   f"blob(s) in the trained net, {len(target.blobs)} in this one")
            for i, (blob, trained) in enumerate(zip(target.blobs, source.blobs)):
                if blob.shape != trained.shape:
                    raise AllconvError(f"cannot share layer {source.name!r} blob {i}: shape "
                                       f"{tuple(trained.shape)} in the trained net, "
                                       f"{tuple(blob.shape)} in this one")
        for target, source in pairs:
            for i, trained in enumerate(source.blobs.owners()):
                target.blobs.share(i, trained)
        self._index_params()

    def _blob_owners(self) -> dict:
        """{id(learnable blob): the first layer holding it}."""
        owners = {}
        for layer in self.layers:
            for blob in layer.blobs.owners():
                owners.setdefault(id(blob), layer)
        return owners

    def load_hdf5(self, path) -> None:
        """pycaffe's ``load_hdf5``: `copy_from` of an HDF5 .caffemodel whatever its name
        (CopyTrainedLayersFromHDF5, which fails on another kind of file)."""
        self.copy_from(path, hdf5=True)

    def save_hdf5(self, path, diff: bool = False) -> None:
        """Write the weights as Caffe's ToHDF5 does (``.caffemodel.h5``; a shared blob once),
        with every blob's diff (``.grad``; zeros where none) when ``diff``."""
        owners = self._blob_owners()
        hdf5_snapshot.write_weights(path, [
            (l.name, [b.detach().cpu().numpy() if owners[id(o)] is l else None
                      for b, o in zip(l.blobs, l.blobs.owners())])
            for l in self.layers], self._diffs() if diff else None)

    def save(self, path, diff: bool = False) -> None:
        """Write every layer, its definition and blobs, as a binary NetParameter (.caffemodel,
        V2 layers), with each blob's diff (``.grad``; zeros where none) when ``diff``, as
        Caffe's ToProto."""
        write_weights(path, [(l.to_proto(), [b.detach().cpu().numpy() for b in l.blobs])
                             for l in self.layers], net_name=self.name,
                      diffs=self._diffs() if diff else None)

    def _diffs(self) -> list[list]:
        """Every layer's blobs' diffs, as the solver left them (its last update)."""
        return [[(b.grad if b.grad is not None else torch.zeros_like(b)).detach().cpu().numpy()
                 for b in l.blobs] for l in self.layers]


def _check_stored_blob(blob, array, where: str, source: str) -> None:
    """Caffe's ShapeEquals check of a stored blob against ``blob`` (``where`` and ``source``,
    "file" or "prototxt", name it in the error)."""
    # a prototxt's blobs pass as legacy: Caffe's Layer takes their shape, and only some
    # layers check it
    legacy = isinstance(array, LegacyShaped) or source == "prototxt"
    if not shape_equals(array.shape, blob.shape, legacy):
        hint = ("; to learn this layer's parameters from scratch rather than copy them, "
                "rename the layer" if source == "file" else "")     # Caffe's hint
        raise AllconvError(f"{where}: shape {tuple(array.shape)} in the {source}, "
                           f"{tuple(blob.shape)} in the net{hint}")


def _copy_blob(blob, array, where: str, source: str) -> None:
    """A stored blob's values into ``blob`` after `_check_stored_blob`."""
    _check_stored_blob(blob, array, where, source)
    _copy_values(blob, array)


def _copy_values(blob, array) -> None:
    """A stored blob's values into ``blob`` (its shape checked already)."""
    with torch.no_grad():
        blob.copy_(torch.from_numpy(array).reshape(blob.shape))
