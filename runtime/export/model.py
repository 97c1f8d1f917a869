"""``to_onnx`` and ``build_model``: a runtime ``Net`` as an ONNX model, checked and written."""
from __future__ import annotations

import math
import os
import secrets
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from runtime.caffemodel import PROTOBUF_LIMIT
from runtime.errors import AllconvError
from runtime.export import DEFAULT_OPSET, MIN_OPSET, check, preprocessing
from runtime.export.batch_flow import batch_axes, own_extents
from runtime.export.builder import GraphBuilder
from runtime.export.registry import BatchFixed, exportable_types
from runtime.export.walker import add_net, needed_layers, used_inputs
from runtime.files import (atomic_write_bytes, check_writable, json_text, link_target,
                           sync_folder, sync_tree)
from runtime.layers import NoFillerWarning, data_sized, describe
from runtime.net import Net
from runtime.proto import pb

BATCH_DIM = "N"
DEPLOY = "export a deploy net (gen-prototxt --deploy)"


def to_onnx(net, path, *, outputs=None, static_batch: int | None = None,
            opset: int = DEFAULT_OPSET, fp16: bool = False, whitening=None,
            variant: str | None = None, classes=None, metadata: dict | None = None,
            check_model: bool = True, fuse_batchnorm: bool = True) -> dict[str, float]:
    """Export the TEST-phase ``net`` with its current weights to the ONNX file ``path``.

    ``outputs``: blob names (default: the net's outputs, Caffe's blobs no layer consumes, but
    for Input tops). ``static_batch``: fix the batch dimension (default: dynamic, named
    ``N``; the prototxt's, with a warning, for a net exact only there: ``BatchFixed``).
    ``fp16``: a float16 net. ``whitening`` (a ``runtime.data.preprocess.Whitening``): the graph
    takes ``image``, uint8 N×32×32×3 RGB, and applies the paper's GCN+ZCA before the net.
    ``variant`` (the generator's name of the net) and ``classes`` (class names in label order)
    become ``allconv.variant`` and ``allconv.classes``; ``metadata``: further
    ``metadata_props`` (``allconv.provenance``, ...). Unless ``check_model`` is False, the model
    is validated against the runtime with onnxruntime first and nothing is written on a
    mismatch.
    ``fuse_batchnorm``: a BatchNorm read only by a channel-wise Scale exports with it as one
    BatchNormalization (False: one node group per layer).
    Returns the largest onnxruntime difference per optimisation level (empty when unchecked).
    """
    check_writable(path)
    if not outputs:
        _warn_rewritten_inputs(net)
    outputs = list(outputs or default_outputs(net))
    net = exported_part(net, outputs)
    options = dict(outputs=outputs, opset=opset, fp16=fp16, whitening=whitening,
                   variant=variant, classes=classes, metadata=metadata,
                   check_model=check_model, fuse_batchnorm=fuse_batchnorm)
    try:
        return _export(net, path, static_batch, **options)
    except BatchFixed as fixed:
        batch = net_batch(net, outputs)
        if static_batch == batch:
            raise
        if static_batch is not None:
            raise AllconvError(f"{fixed}: nothing was written; it exports at the prototxt's "
                               f"batch: give --static-batch {batch}") from None
        warnings.warn(f"{fixed}: the model's batch is fixed at the prototxt's, {batch} (as "
                      f"--static-batch {batch})")
        return _export(net, path, batch, **options)


def _export(net, path, static_batch, *, outputs, opset, fp16, whitening, variant, classes,
            metadata, check_model, fuse_batchnorm) -> dict[str, float]:
    """``to_onnx`` at one batch setting."""
    model, values = build_model(net, outputs=outputs, static_batch=static_batch, opset=opset,
                                fp16=fp16, whitening=whitening, variant=variant, classes=classes,
                                metadata=metadata, fuse_batchnorm=fuse_batchnorm)

    def validate(source=None) -> dict[str, float]:
        if not check_model:
            return {}
        return check.validate(model, net, _net_inputs(net, whitening), values, fp16,
                              static_batch, source)
    if model.ByteSize() > PROTOBUF_LIMIT:
        return _write_external(model, Path(path), validate)
    worst = validate()
    atomic_write_bytes(path, model.SerializeToString())
    return worst


def build_model(net, *, outputs=None, static_batch=None, opset=DEFAULT_OPSET, fp16=False,
                whitening=None, variant=None, classes=None, metadata=None,
                fuse_batchnorm=True) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The ONNX model of ``net`` (see ``to_onnx``) and ``{blob: value name}``."""
    _check_options(net, opset, static_batch)
    outputs = _outputs(net, outputs)
    names, layers = used_inputs(net, outputs), needed_layers(net, outputs)
    unnamed = next((layer for layer in layers if "" in layer.tops), None)
    if unnamed is not None:     # Caffe takes it; ONNX's empty name is a missing optional input
        raise AllconvError(f"layer {unnamed.name!r} writes a blob named \"\", which ONNX cannot "
                           "name (it means a missing input): give the top a name")
    axes, own = batch_axes(layers), own_extents(layers)
    prototxt_batch = net_batch(net, outputs)
    graph = GraphBuilder(opset, np.float16 if fp16 else np.float32,
                         batch_is_the_nets=static_batch == prototxt_batch, blob_names=net.blobs)
    if whitening is not None:
        check_image_net(net)
        inputs = [preprocessing.image_input(static_batch or BATCH_DIM)]
        sources = {names[0]: preprocessing.add_preprocessing(graph, whitening)}
        described = preprocessing.describe_input(whitening)
    else:
        shapes = {name: _dims(net, name, axes, static_batch or BATCH_DIM, prototxt_batch, own)
                  for name in names}
        if static_batch:
            _check_scaled(net, shapes, axes, static_batch, prototxt_batch)
        inputs, sources, described = _blob_inputs(graph, shapes,
                                                   _float32_indices(net, layers) if fp16 else set())
    values = add_net(graph, net, outputs, sources, fuse_batchnorm)
    _copies_to_outputs_as_dropout(graph.nodes, outputs)
    declared = _output_dims(net, outputs, axes, static_batch, prototxt_batch, own)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        helper.make_graph(graph.nodes, net.name or "net", inputs,
                          [helper.make_tensor_value_info(o, graph.elem_type, declared[o])
                           for o in outputs],
                          graph.initializers),
        # the oldest file format the opset allows (onnx writes its newest, which a runtime
        # that runs the opset may not read: onnxruntime 1.16 runs opset 18, reads IR 9 at most)
        opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="allconv")
    _set_props(model, {"allconv.net": net.name, "allconv.variant": variant,
                       "allconv.classes": None if classes is None else list(classes),
                       "allconv.input": described, **(metadata or {})})
    return model, values


def _set_props(model: onnx.ModelProto, props: dict) -> None:
    """The model's metadata: each value that is not None, a string as it is, else as JSON."""
    helper.set_model_props(model, {k: v if isinstance(v, str) else json_text(v)
                                   for k, v in props.items() if v is not None})


def _check_options(net, opset: int, static_batch: int | None) -> None:
    """What an export needs whatever the net: the TEST phase, an opset this onnx knows and the
    export can use, a positive static batch."""
    if net.phase != pb.TEST:
        raise AllconvError("export needs a TEST-phase net (Dropout passes through only there)")
    if opset < MIN_OPSET:
        raise AllconvError(f"opset {opset} is too old; the export needs opset {MIN_OPSET} or newer")
    if opset > onnx.defs.onnx_opset_version():
        raise AllconvError(f"opset {opset} is newer than this onnx supports "
                           f"({onnx.defs.onnx_opset_version()})")
    if static_batch is not None and static_batch <= 0:
        raise AllconvError(f"the static batch must be positive, not {static_batch}")


def _outputs(net, outputs) -> list[str]:
    """The blobs to export (by default the net's outputs), each once, and fed by an Input."""
    if not outputs:
        _warn_rewritten_inputs(net)
    outputs = list(outputs or default_outputs(net))
    if not outputs:
        ends = ", ".join(describe(layer.param) for layer in net.layers
                         if layer.bottoms and not layer.tops)
        raise AllconvError(f"the net has no output blob: a layer reads every top ({ends or 'none'}"
                           " among the last): name the blobs to export (--outputs)")
    twice = sorted({o for o in outputs if outputs.count(o) > 1})
    if twice:
        raise AllconvError(f"output blob(s) {', '.join(map(repr, twice))} named more than once")
    if not used_inputs(net, outputs):
        sources = ", ".join(describe(layer.param) for layer in needed_layers(net, outputs)
                            if not layer.bottoms)
        raise AllconvError(f"the net has no Input layer that its outputs depend on (they come "
                           f"from {sources or 'no layer without bottoms'}): {DEPLOY}")
    return outputs


def _blob_inputs(graph: GraphBuilder, shapes: dict[str, list], exact: set[str]):
    """The graph's inputs for the net's own input blobs of ``shapes`` (float32 where in
    ``exact``, else the graph's type), their values, and the metadata's record of them."""
    inputs = [helper.make_tensor_value_info(
                  name, TensorProto.FLOAT if name in exact else graph.elem_type, shape)
              for name, shape in shapes.items()]
    sources = {name: graph.reserve(name) for name in shapes}
    records = [_input_record(name, "float32" if name in exact else str(graph.dtype), shape)
               for name, shape in shapes.items()]
    return inputs, sources, records[0] if len(records) == 1 else records


def _input_record(name: str, dtype: str, shape: list) -> dict:
    """An input as the metadata describes it: its layout only where it has an image's 4 axes."""
    layout = {"layout": "NCHW"} if len(shape) == 4 else {}
    return {"name": name, **layout, "dtype": dtype, "shape": shape}


def _copies_to_outputs_as_dropout(nodes, outputs) -> None:
    """An Identity that writes a graph output from another node's output becomes a Dropout (in
    inference, the identity too). onnxruntime's EliminateIdentity (1.32, every optimisation
    level from basic) loses that value where it also feeds a Pad fused into a Conv or
    AveragePool, directly or through the Identities of a Split: "Node input ... is not a graph
    input"; a Dropout it removes soundly."""
    made = {name for node in nodes for name in node.output}
    for node in nodes:
        if node.op_type == "Identity" and node.output[0] in outputs and node.input[0] in made:
            node.op_type = "Dropout"


def exported_part(net, outputs):
    """``net`` itself, or where ``outputs`` need only some of its layers (a train_val net's
    scores without its loss and Accuracy), a net of those layers alone on the same device,
    each using the learnable blobs of the layer it copies, its inputs at their present
    shapes: the export and its check at other batches then run what the model computes, not
    a layer beside it (a loss reading a label of the prototxt's batch) that would pin the
    batch. A part that would not export (no Input, a layer of no converter) is not built:
    ``build_model`` refuses the net as it is."""
    layers = needed_layers(net, outputs) if outputs else net.layers
    exportable = exportable_types()
    if len(layers) == len(net.layers) or not used_inputs(net, outputs) or any(
            layer.param.type not in exportable for layer in layers):
        return net
    param = pb.NetParameter(name=net.name)
    for layer in layers:
        kept = param.layer.add()
        kept.CopyFrom(layer.param)
        del kept.include[:], kept.exclude[:]    # chosen already, for the net's phase and stages
    with warnings.catch_warnings():             # the fillers' values are replaced
        warnings.simplefilter("ignore", NoFillerWarning)
        part = Net(param, net.phase, seed=0).to(net.device)
    part.share_layer_blobs(zip(part.layers, layers, strict=True))
    for name in part.inputs:
        part.blobs[name].reshape(*net.blobs[name].shape)
    part.reshape()
    return part


def _warn_rewritten_inputs(net) -> None:
    """Say which of Caffe's outputs `default_outputs` leaves out though a layer computes
    them: Input tops rewritten in place, whose name is the graph input's."""
    read = {bottom for layer in net.layers for bottom in layer.bottoms}
    kept = default_outputs(net)
    left = [o for o in net.outputs if o in net.inputs and o in read and o not in kept]
    if left:
        warnings.warn(f"output blob(s) {', '.join(map(repr, left))} of the net are Input tops "
                      "rewritten in place: the graph input keeps the name, so the export "
                      "leaves them out (to export such a value, write it to a top of its own)",
                      stacklevel=3)


def default_outputs(net) -> list[str]:
    """Caffe's net outputs (blobs no layer consumes) but for Input tops, which a deploy net
    may leave unread (a ``label``); all of them if that leaves none."""
    return [o for o in net.outputs if o not in net.inputs] or list(net.outputs)


def net_batch(net, outputs=None) -> int:
    """The prototxt's batch: the extent, on its batch axis, of the first input that
    ``outputs`` (default: ``default_outputs``) depend on, and not an index of its own length
    (``own_extents``); 1 without one."""
    outputs = list(outputs or default_outputs(net))
    layers = needed_layers(net, outputs)
    axes, own = batch_axes(layers), own_extents(layers)
    return next((net.blobs[n].shape[axes.get(n, 0)] for n in used_inputs(net, outputs)
                 if axes.get(n, 0) is not None and net.blobs[n].shape and n not in own), 1)


def _dims(net, blob: str, axes: dict[str, int], batch, net_batch: int | None = None,
          own=frozenset()) -> list:
    """The blob's shape with ``batch`` on its batch axis (axis 1 of a recurrent layer's
    T × N × … blobs, else 0); a 0-d blob (a Reduction over every axis) and a blob of no batch
    axis (``batch_axes``: None, or past its last axis) keep their shape. An extent
    there other than the first input's ``net_batch`` (a Concat over the batch: 2N) scales
    with a static batch, and is left unnamed with a dynamic one; so is the extent of a blob
    in ``own`` (a BatchReindex index's length, ``own_extents``) even where it equals the
    batch, but it keeps the prototxt's with a static batch."""
    dims, axis = list(net.blobs[blob].shape), axes.get(blob, 0)
    if axis is not None and axis < len(dims):
        if blob in own:
            dims[axis] = dims[axis] if isinstance(batch, int) else None
        elif net_batch is None or dims[axis] == net_batch:
            dims[axis] = batch
        elif isinstance(batch, int) and batch * dims[axis] % net_batch == 0:
            dims[axis] = batch * dims[axis] // net_batch
        else:
            dims[axis] = None
    return dims


def _check_scaled(net, shapes: dict[str, list], axes, static_batch: int,
                  prototxt_batch: int) -> None:
    """Each input's batch axis at ``static_batch`` must be a whole extent: another input's
    (2 where the first has 3) scales with the batch, and at 5 would be 10/3."""
    for name, dims in shapes.items():
        axis = axes.get(name, 0)
        if axis is not None and axis < len(dims) and dims[axis] is None:
            extent = net.blobs[name].shape[axis]
            step = prototxt_batch // math.gcd(extent, prototxt_batch)
            raise AllconvError(f"--static-batch {static_batch}: input {name!r} has {extent} on "
                               f"its batch axis where the first input has {prototxt_batch}, "
                               f"which scales to no whole size at {static_batch}: give a "
                               f"multiple of {step}; nothing was written")


def _output_dims(net, outputs, axes, static_batch, prototxt_batch, own) -> dict[str, list]:
    """Each output's declared shape, from the runtime's own shapes (Caffe's Reshape) with the
    inputs at another batch (each as its graph input declares it at a static batch; twice its
    prototxt extent for a dynamic one): at a static batch, its shapes there; with a dynamic
    one, an axis that keeps its extent keeps it, one that follows the batch is the batch
    dimension, and any other that changes is left unnamed (a Reshape that moves the batch
    into a wider axis: (1, 3N)). Where the net takes no other batch (it is exact only at its
    own), an input's extent is not known, or for a blob of an extent of its own
    (``own_extents``), `_dims` says it from the batch axes alone; the rows a Filter keeps
    (``data_sized``) are unnamed, at a static batch too."""
    batch = static_batch or BATCH_DIM
    declared = {o: _dims(net, o, axes, batch, prototxt_batch, own) for o in outputs}
    sized = data_sized(needed_layers(net, outputs))[1]
    for o in sized.intersection(outputs):
        axis = axes.get(o, 0)
        if axis is not None and axis < len(declared[o]):
            declared[o][axis] = None
    resized = {}
    for name in used_inputs(net, outputs):
        axis, shape = axes.get(name, 0), list(net.blobs[name].shape)
        if axis is not None and name not in own and axis < len(shape):
            shape[axis] = (_dims(net, name, axes, static_batch, prototxt_batch, own)[axis]
                           if static_batch else 2 * shape[axis])
            resized[name] = shape
    if not resized or None in (s for shape in resized.values() for s in shape):
        return declared
    try:
        with check.inputs_shaped(net, resized):
            there = {o: net.blobs[o].shape for o in outputs}
    except AllconvError:
        return declared
    here = {o: net.blobs[o].shape for o in outputs}
    for o in outputs:
        if o in own or o in sized:
            continue
        if static_batch:
            declared[o] = list(there[o])
        else:
            declared[o] = [a if a == b else BATCH_DIM if (a, b) == (prototxt_batch, 2 * a)
                           else None for a, b in zip(here[o], there[o])]
    return declared


def _float32_indices(net, layers) -> set[str]:
    """The inputs a float16 model keeps float32: those read as indices (Embed's, BatchReindex's
    bottom 1, directly or through Splits), as float16 holds integers exactly only up to 2048.
    Refused when a layer also reads one as values."""
    indices, source = check.index_ranges(net), {}
    for layer in layers:
        if layer.param.type == "Split":
            source.update((top, source.get(layer.bottoms[0], layer.bottoms[0]))
                          for top in layer.tops)
            continue
        for i, bottom in enumerate(layer.bottoms):
            name = source.get(bottom, bottom)
            if name in indices and i not in check.index_bottoms(layer):
                raise AllconvError(f"--fp16: input {name!r} holds indices and layer "
                                   f"{layer.name!r} reads it as values; export it in float32")
    return set(indices)


def check_image_net(net) -> None:
    """--with-preprocessing needs one N×3×32×32 input, and its graph input's name for itself
    (the net's input may have it: the graph input takes its place)."""
    shapes = [net.blobs[name].shape for name in net.inputs]
    if len(shapes) != 1 or tuple(shapes[0][1:]) != preprocessing.NET_SHAPE:
        raise AllconvError("--with-preprocessing needs a net with one 3×32×32 input; this net's "
                           f"input(s): {', '.join(f'{n} {s}' for n, s in zip(net.inputs, shapes))}")
    if preprocessing.IMAGE in net.blobs and preprocessing.IMAGE not in net.inputs:
        raise AllconvError(f"--with-preprocessing names its graph input "
                           f"{preprocessing.IMAGE!r}, and so does a blob of the net: rename it")


def _net_inputs(net, whitening):
    """Feeds of the graph -> the runtime net's float32 inputs."""
    if whitening is None:
        return lambda feeds: {k: v.astype(np.float32) for k, v in feeds.items()}
    return lambda feeds: {net.inputs[0]: whitening(
        feeds[preprocessing.IMAGE].transpose(0, 3, 1, 2), device="cpu")}


def _write_external(model: onnx.ModelProto, path: Path, validate) -> dict[str, float]:
    """A model over protobuf's 2 GB: saved with its weights in ``<name>.<8 hex>.data`` to a
    temporary folder beside ``path`` (onnxruntime checks it from there: ``validate(saved
    file)``), then moved beside ``path`` (a link to a file in its own folder is written
    through, as `atomic_writer` writes; one into another folder is refused: onnxruntime reads
    the data only beside the model's own path). The data goes in under its own new name, then
    the model replaces the one before, whose data file is removed last: stopped at any point,
    the model at ``path`` reads the data written with it. Errors name ``path``."""
    real = link_target(path)
    if real.parent != link_target(path.parent):
        raise AllconvError(f"{path}: a link into another folder ({real.parent}): a model over "
                           "2 GB keeps its weights in a file beside it, which onnxruntime reads "
                           f"only beside the model's own path; give -o {real}")
    location = f"{real.name}.{secrets.token_hex(4)}.data"
    try:
        with tempfile.TemporaryDirectory(prefix=f".{real.name}.", dir=real.parent) as tmp:
            source = Path(tmp) / real.name
            onnx.save_model(model, str(source), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=location)
            worst = validate(source)
            before = _data_files(real)
            sync_tree(Path(tmp))
            os.replace(Path(tmp) / location, real.parent / location)
            os.replace(source, real)
            sync_folder(real.parent)
    except OSError as err:
        raise AllconvError(f"{path}: cannot write: {err.strerror or err}") from None
    for name in before - {location}:
        try:
            (real.parent / name).unlink()
        except OSError:
            pass
    return worst


def _data_files(model_path: Path) -> set[str]:
    """The files beside it that the ONNX model at ``model_path`` keeps its weights in (none if
    it is not there or not an ONNX model)."""
    try:
        old = onnx.load(str(model_path), load_external_data=False)
    except (OSError, DecodeError):      # not there, or not a model: it holds no data files
        return set()
    return {entry.value for tensor in old.graph.initializer for entry in tensor.external_data
            if entry.key == "location" and Path(entry.value).name == entry.value}
