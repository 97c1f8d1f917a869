"""Validation of an exported model before it is written: the ONNX checker, then onnxruntime
(CPU provider, graph optimisations off and fully on) against the runtime on random inputs at
the prototxt's batch and three times it (1 and 3 for a deploy net of batch 1), or the static
batch.

Tolerance on every output, max |onnxruntime − runtime|: 1e-4·max(1, max|runtime|) for a
float32 model (relative for outputs of large values, absolute below 1); 1e-2·max(1,
max|runtime|) for a float16 model, float16's 11-bit mantissa through a whole net.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper

from runtime.errors import AllconvError
from runtime.export.registry import BatchFixed

TOL_FP32 = 1e-4
TOL_FP16 = 1e-2
LEVELS = {"optimisations off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "optimisations on": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class Mismatch(AllconvError):
    """onnxruntime and the runtime disagree beyond the tolerance."""


def tolerance(reference: np.ndarray, fp16: bool) -> float:
    """The largest difference allowed on an output: relative to its largest finite value,
    at least 1 (so absolute for small outputs)."""
    finite = np.abs(reference[np.isfinite(reference)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return (TOL_FP16 if fp16 else TOL_FP32) * scale


def largest_difference(got: np.ndarray, reference: np.ndarray) -> float:
    """max |got − reference|, infinite for arrays of different shapes; NaN in both at a
    position counts as equal (Caffe's AVE gives 0/0 for a window of zero width), and so does
    the same infinity in both; NaN in one of them is a difference of NaN."""
    if got.shape != reference.shape:
        return float("inf")
    got = got.astype(np.float32)
    with np.errstate(invalid="ignore"):                                 # inf − inf
        diff = np.atleast_1d(np.abs(got - reference))                   # 0-d: a scalar blob
    diff[np.atleast_1d((got == reference) | (np.isnan(got) & np.isnan(reference)))] = 0
    return float(diff.max()) if diff.size else 0.0


def session(model, level) -> ort.InferenceSession:
    """An onnxruntime CPU session of ``model`` (ModelProto, bytes or path)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 4      # its failures come back as one line, not logged
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own pybind11 classes
        detail = " ".join(str(err).split())
        raise Mismatch(f"onnxruntime cannot load the model ({detail}); nothing was "
                       "written") from None


@contextlib.contextmanager
def inputs_shaped(net, shapes: dict[str, tuple[int, ...]]):
    """``net`` with the input blobs of ``shapes`` reshaped to them and every blob's shape
    inferred again (Caffe's Net::Reshape); on exit the net is as it was (``Net.unchanged``:
    the caller's blobs, values and recurrent states)."""
    with net.unchanged():
        for name, shape in shapes.items():
            net.blobs[name].reshape(*shape)
        net.reshape()
        yield net


def run_runtime(net, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every blob's final value (float32) after a forward of ``net`` on ``inputs`` at their
    batch size, from reset recurrent states (as the graph starts); the net's input shapes
    and recurrent states are restored afterwards."""
    with inputs_shaped(net, {name: value.shape for name, value in inputs.items()}):
        for layer in net.layers:
            if hasattr(layer, "reset"):
                layer.reset()
        with torch.no_grad():
            net.forward(**{k: torch.from_numpy(v) for k, v in inputs.items()})
            return {name: blob.data.float().cpu().numpy().copy()
                    for name, blob in net.blobs.items()}


class IndexRange(NamedTuple):
    """An input read as indices 0 … high − 1 (Embed's input_dim; BatchReindex's: the batch of
    the blob it indexes, ``within_batch``, so never past the batch checked)."""
    high: int
    within_batch: bool = False


def random_feeds(model: onnx.ModelProto, batch: int, seed: int,
                 index_ranges: dict[str, IndexRange] | None = None,
                 selectors: set[str] = frozenset()) -> dict[str, np.ndarray]:
    """Random values for each graph input (``batch`` on its dynamic axis): uint8 images
    0-255, integers for an input read as indices (``index_ranges``), 0s and 1s for a Filter's
    selector (``selectors``: half the rows dropped, so that the check sees sizes that follow
    the data), or N(0, 1) floats."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if dtype == np.uint8:
            feeds[value.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif value.name in (index_ranges or {}):
            high, within_batch = index_ranges[value.name]
            high = max(1, min(high, batch)) if within_batch else high
            feeds[value.name] = rng.integers(0, high, shape).astype(dtype)
        elif value.name in selectors:       # half of the rows kept (one of one)
            size = int(np.prod(shape))
            kept = np.zeros(size, dtype)
            kept[rng.permutation(size)[:max(1, size // 2)]] = 1
            feeds[value.name] = kept.reshape(shape)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def index_bottoms(layer) -> list[int]:
    """The bottoms ``layer`` reads as indices: all of Embed's (``index_range``),
    BatchReindex's ``batch_index_bottom``."""
    if layer.index_range:
        return list(range(len(layer.bottoms)))
    return [] if layer.batch_index_bottom is None else [layer.batch_index_bottom]


def index_ranges(net) -> dict[str, IndexRange]:
    """The net inputs that a layer reads as indices (``index_range``: Embed's; BatchReindex's
    ``batch_index_bottom``: the prototxt's batch of the blob it indexes, and never past the
    batch checked), directly or through Splits, with their range (the smallest of several)."""
    ranges = {}
    for layer in reversed(net.layers):
        if read_as_indices := index_bottoms(layer):
            found = (IndexRange(layer.index_range) if layer.index_range else
                     IndexRange(net.blobs[layer.bottoms[0]].shape[0], within_batch=True))
            ranges.update((layer.bottoms[i], found) for i in read_as_indices)
        elif layer.param.type == "Split" and any(top in ranges for top in layer.tops):
            known = [ranges[top] for top in layer.tops if top in ranges]
            ranges[layer.bottoms[0]] = IndexRange(min(k.high for k in known),
                                                  any(k.within_batch for k in known))
    return {name: ranges[name] for name in net.inputs if name in ranges}


def selector_inputs(net) -> set[str]:
    """The net inputs that a Filter reads as its selector (its last bottom), directly or
    through Splits."""
    found = set()
    for layer in reversed(net.layers):
        if layer.param.type == "Filter":
            found.add(layer.bottoms[-1])
        elif layer.param.type == "Split" and found.intersection(layer.tops):
            found.add(layer.bottoms[0])
    return found.intersection(net.inputs)


def prototxt_batch(model, net) -> int:
    """The batch the net's prototxt declares: an input blob's extent on its graph input's
    dynamic axis (for the preprocessing's ``image``, axis 0 of the net's input); 1 if the
    graph has no dynamic axis."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        axis = next((i for i, d in enumerate(dims) if d.HasField("dim_param")), None)
        if axis is not None:
            if value.name in net.blobs:
                return net.blobs[value.name].shape[axis]
            return net.blobs[net.inputs[0]].shape[0]
    return 1


def validate(model, net, to_net_inputs, values: dict[str, str], fp16: bool,
             static_batch: int | None, source=None) -> dict[str, float]:
    """Check ``model`` against ``net``; ``to_net_inputs(feeds)`` gives the net's inputs for the
    graph's feeds; ``source``: the saved file of a model over 2 GB (its weights are outside
    the proto). The runtime runs first, at each batch checked (``BatchFixed`` where it cannot).
    Returns the largest difference per optimisation level; raises Mismatch naming the output
    and the first blob that differs."""
    nb = prototxt_batch(model, net)
    ranges, selectors = index_ranges(net), selector_inputs(net)
    cases = [_case(net, model, to_net_inputs, batch, seed, ranges, selectors)
             for seed, batch in enumerate([static_batch] if static_batch else [nb, 3 * nb])]
    try:
        onnx.checker.check_model(source or model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        detail = " ".join(str(err).split())
        raise AllconvError(f"the ONNX checker refuses the model ({detail}); nothing was "
                           "written") from None
    outputs = [o.name for o in model.graph.output]
    declared = {o.name: o.type.tensor_type.shape.dim for o in model.graph.output}
    ranked = {top for layer in net.layers if layer.param.type == "ArgMax" for top in layer.tops}
    notes = {o: (" (float16 rounds near-equal values to ties or reorders them, and an ArgMax "
                 "then picks other indices: export the blob it reads)")
             for o in outputs if fp16 and o in ranked}

    def wrong_at_prototxt_batch(ort_session, label: str, feeds) -> bool:
        """Whether the model also differs on the same rows, a third at a time, at the
        prototxt's batch: then its values are wrong (a float16 overflow, say), not a size
        some converter took from that batch."""
        return any(_differs(run(ort_session, outputs, rows, label, nb), reference, outputs, fp16)
                   for rows, reference in _thirds(model, net, to_net_inputs, feeds))
    worst = {}
    for label, level in LEVELS.items():
        ort_session = session(source or model, level)
        worst[label] = 0.0
        for batch, feeds, reference in cases:
            try:
                for name, got in zip(outputs, run(ort_session, outputs, feeds, label, batch)):
                    _check_declared(name, declared[name], got.shape, f"{label}, batch {batch}")
                    worst[label] = max(worst[label], _compare(
                        got, reference, name, fp16, f"{label}, batch {batch}",
                        lambda: "not searched (a model over 2 GB)" if source else repr(
                            first_difference(model, level, feeds, reference, values, fp16)),
                        notes.get(name, "")))
            except Mismatch as err:
                if static_batch or batch == nb or wrong_at_prototxt_batch(ort_session, label,
                                                                          feeds):
                    raise
                # right at the prototxt's batch only: a size some converter took from it
                raise BatchFixed(f"the model is exact only at the prototxt's batch ({err})"
                                 .replace("; nothing was written", "")) from None
    return worst


def _thirds(model, net, to_net_inputs, feeds):
    """(feeds, the runtime's blobs) of each third of ``feeds`` (the check's three times the
    prototxt's batch) along each graph input's dynamic axis: the prototxt's batch again, on
    the same rows; none where a third cannot run alone (the net mixes rows)."""
    axes = {value.name: next((i for i, d in enumerate(value.type.tensor_type.shape.dim)
                              if d.HasField("dim_param")), None) for value in model.graph.input}
    for k in range(3):
        rows = {name: value if axes.get(name) is None else np.take(
                    value, range(k * (n := value.shape[axes[name]] // 3), (k + 1) * n),
                    axis=axes[name]) for name, value in feeds.items()}
        try:
            yield rows, run_runtime(net, to_net_inputs(rows))
        except AllconvError:
            return


def _differs(got, reference, outputs, fp16: bool) -> bool:
    return any(not largest_difference(value, reference[name]) <= tolerance(reference[name], fp16)
               for name, value in zip(outputs, got))


def _check_declared(name: str, dims, shape: tuple[int, ...], where: str) -> None:
    """Mismatch unless the output's shape is the one the model declares (a fixed extent, or
    any on a named or unnamed dynamic axis): onnxruntime only logs the difference."""
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(fixed) != len(shape) or any(f is not None and f != s for f, s in zip(fixed, shape)):
        shown = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
        raise Mismatch(f"onnxruntime ({where}) gives output {name!r} the shape {shape}, where "
                       f"the model declares {shown}; nothing was written")


def _compare(got, reference, name: str, fp16: bool, where: str, first_differing,
             note: str = "") -> float:
    """The largest difference on output ``name``; Mismatch past the tolerance, naming the
    first blob that differs (``first_differing()``, searched only then) and adding ``note``."""
    diff = largest_difference(got, reference[name])
    if not diff <= tolerance(reference[name], fp16):
        note += (_beyond_float16(reference[name]) if fp16 else "") + _near_overflow(reference)
        by = (f"in shape, {got.shape} against {reference[name].shape}"
              if got.shape != reference[name].shape else
              "by NaN (NaN on one side only)" if np.isnan(diff) else f"by {diff:.3g}")
        raise Mismatch(f"onnxruntime ({where}) differs from the runtime on output {name!r} "
                       f"{by}; the first blob that differs is {first_differing()}{note}; "
                       "nothing was written")
    return diff


def _near_overflow(blobs: dict[str, np.ndarray]) -> str:
    """A note when the runtime's blobs come within a factor of 1024 of float32's largest value
    or pass it (not counting ±FLT_MAX itself: Caffe's MAX over an empty window gives
    -FLT_MAX), else ""."""
    top = np.finfo(np.float32).max
    peak = max((float(np.abs(v[np.isfinite(v) & (np.abs(v) != top)]).max(initial=0))
                for v in blobs.values()), default=0.0)
    infinite = any(np.isinf(v).any() for v in blobs.values())
    if peak < top / 1024 and not infinite:
        return ""
    reach = " and ".join(([f"{peak:.3g}"] if peak >= top / 1024 else []) +
                         (["infinity"] if infinite else []))
    return (f" (the runtime's blobs reach {reach}, near float32's 3.4e+38: whether a sum "
            "overflows there depends on the order it adds in; are the weights right?)")


def _beyond_float16(values) -> str:
    """A note when finite ``values`` exceed float16's range, else ""."""
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size or finite.max() <= np.finfo(np.float16).max:
        return ""
    return (f" (the runtime's values reach {finite.max():.3g}, past float16's 65504: a MAX "
            "pooling window over nothing gives Caffe's -FLT_MAX, for one; export in float32)")


def _case(net, model, to_net_inputs, batch: int, seed: int, ranges, selectors):
    """(batch, feeds, the runtime's blobs) for one check; Filter ``selectors`` drop half the
    rows, or keep all for a net that runs only so (a Concat of filtered and unfiltered blobs)."""
    for drop in ([True, False] if selectors else [False]):
        try:
            feeds = random_feeds(model, batch, seed, ranges, selectors if drop else set())
            return batch, feeds, run_runtime(net, to_net_inputs(feeds))
        except AllconvError as err:
            failure = err
        except (MemoryError, torch.OutOfMemoryError):
            raise AllconvError(f"checking at batch {batch} does not fit in memory: give a "
                               "smaller --static-batch, or --skip-check; nothing was "
                               "written") from None
    raise BatchFixed(f"at batch {batch} the net does not run ({failure})") from None


def run(ort_session, outputs, feeds, label: str, batch: int) -> list[np.ndarray]:
    """The session's ``outputs``; onnxruntime's own failure (a shape it cannot take) is one
    line naming the batch."""
    try:
        return ort_session.run(outputs, feeds)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own pybind11 classes
        detail = " ".join(str(err).split())
        raise Mismatch(f"onnxruntime ({label}) cannot run the model at batch {batch} ({detail}); "
                       "nothing was written") from None


def first_difference(model, level, feeds, reference, values, fp16) -> str:
    """The first blob, in the net's order, whose onnxruntime value is off the runtime's."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inputs = {i.name for i in probe.graph.input}
    known = {o.name for o in probe.graph.output}
    elem_type = probe.graph.output[0].type.tensor_type.elem_type
    blobs = [b for b in values if b in reference and values[b] not in inputs]
    probe.graph.output.extend(helper.make_tensor_value_info(values[b], elem_type, None)
                              for b in blobs if values[b] not in known)
    names = [values[b] for b in blobs]
    got = dict(zip(names, session(probe, level).run(names, feeds)))
    for blob in blobs:
        diff = largest_difference(got[values[blob]], reference[blob])
        if not diff <= tolerance(reference[blob], fp16):
            return blob
    return "none of the blobs"
