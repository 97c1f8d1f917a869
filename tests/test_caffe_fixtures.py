"""The runtime against real BVLC Caffe: every fixture in tests/fixtures/*.npz.

The fixtures are made by ``tools/caffe_reference/make_fixtures.sh`` (real Caffe, CPU); this
module never imports caffe. It regenerates the seeded inputs and weights
(``fixture_format.make_input`` / ``make_weight``, pinned by checksums stored in each fixture),
runs the same computation in the runtime and compares with Caffe's values.

Relative error = max|runtime - caffe| / max|caffe| per array (sampled arrays: samples and
sums, see fixture_format.rel_error). Tolerances (fp32, CPU):

* single layers and small nets: forward values, blob diffs, parameter gradients <= 1e-5
* the 14 generated networks (TEST phase, forward + backward): <= 1e-4
* solvers: weights after every recorded step <= 1e-5 (All-CNN-C: 20 steps)
* round trips through .caffemodel files: outputs <= 1e-5 (1e-4 for the All-CNN-C net),
  loaded weights exact
* fillers (random, so statistical): mean / std / range / KS distance, in standard errors

ReLU kinks in whole networks: a ReLU input a hair from zero (|x| <= 2e-5 max|x|; fp32 rounding
differs between Caffe and the runtime by ~1e-6 max|x|) can land on the other side of zero in
the runtime; its gradient mask then flips and every gradient below it changes by O(1) although
both computations are correct to fp32. For the generated networks and the All-CNN-C solver the
fixture records Caffe's values at those positions (a few per million), and ``install_kinks``
gives the runtime's ReLU inputs exactly those values there (forward: Caffe's value; backward:
the identity), so both take the same side of every kink. Everything else is compared as is.

The largest error per category is collected in ``ERRORS`` and printed at the end of the run
(``pytest_terminal_summary`` in conftest.py).
"""
from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import fixture_format as ff
from runtime.proto import pb

# The fixture nets set every weight themselves; the runtime's "no weight_filler" notice is noise.
pytestmark = pytest.mark.filterwarnings("ignore:.*has no weight_filler:UserWarning")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.npz"))
REGENERATE = "re-run tools/caffe_reference/make_fixtures.sh"

TOL_LAYER = 1e-5
TOL_NETWORK = 1e-4
TOL_SOLVER = 1e-5
Z_LIMIT = 5.0          # fillers: allowed deviation in standard errors

# category -> {"max": float, "arrays": int, "cases": set, "where": str, "tol": float}
ERRORS: dict = defaultdict(lambda: {"max": 0.0, "arrays": 0, "cases": set(), "where": "",
                                    "tol": None})
CATEGORY_ORDER = [
    "layer forward", "layer blob diff", "layer param grad", "layer param after forward",
    "network forward", "network blob diff", "network param grad",
    "solver weights", "solver loss", "All-CNN-C 20-step weights", "All-CNN-C 20-step loss",
    "optimizer weights (own loop)", "solverstate history (Caffe's snapshot)",
    "runtime resumes Caffe solverstate", "Caffe resumes runtime solverstate",
    "round trip runtime->Caffe outputs", "round trip Caffe->runtime weights",
    "round trip Caffe->runtime outputs", "data layer tops",
    "filler z-score (runtime vs formula)", "filler z-score (Caffe vs formula)",
    "filler z-score (runtime vs Caffe)",
]


def record(category: str, case: str, where: str, err: float, tol: float) -> None:
    e = ERRORS[category]
    e["arrays"] += 1
    e["cases"].add(case)
    e["tol"] = tol
    if not e["where"] or err > e["max"]:
        e["max"], e["where"] = err, f"{case}:{where}"


def summary_lines() -> list[str]:
    if not ERRORS:
        return []
    cases = set().union(*(e["cases"] for e in ERRORS.values()))
    lines = [f"{len(cases)} Caffe fixture cases compared; largest error per category:",
             f"  {'category':<38} {'cases':>5} {'arrays':>7} {'max error':>11} {'tolerance':>10}"
             "  worst"]
    order = CATEGORY_ORDER + sorted(set(ERRORS) - set(CATEGORY_ORDER))
    for cat in order:
        if cat not in ERRORS:
            continue
        e = ERRORS[cat]
        lines.append(f"  {cat:<38} {len(e['cases']):>5} {e['arrays']:>7} {e['max']:>11.3e} "
                     f"{e['tol']:>10.0e}  {e['where']}")
    if KINKS["relu_inputs"]:
        lines.append(f"  (ReLU kinks given Caffe's side of zero: {KINKS['forced']} of "
                     f"{KINKS['relu_inputs']} ReLU inputs of the networks and the solver run)")
    return lines


# ------------------------------------------------------------------------------ loading

def _meta(path: Path) -> dict | None:
    """The fixture's meta, or None for an .npz that make_fixtures.py did not write."""
    with np.load(path) as z:
        if "meta" not in z.files:
            return None
        meta = ff.meta_from_npz(z)
    return meta if "format_version" in meta else None


METAS = {p.stem: m for p in FIXTURE_FILES if (m := _meta(p)) is not None}


def cases_of(*kinds):
    return [pytest.param(name, id=name) for name, m in METAS.items() if m["kind"] in kinds]


def load(name: str):
    return np.load(FIXTURES / f"{name}.npz")


def _check_sum(actual, expected, what):
    got = ff.checksum(actual)
    for g, e in zip(got, expected):
        assert math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-9), (
            f"{what}: regenerated array differs from the fixture's (checksum {got} vs "
            f"{expected}); fixture_format changed? {REGENERATE}")


def make_inputs(meta: dict, tag: str = "") -> dict:
    out = {}
    for name, spec in meta["inputs"].items():
        x = ff.make_input(meta["name"], name + tag, spec)
        _check_sum(x, meta["input_sums"][name + tag], f"input {name + tag}")
        out[name] = x
    return out


def set_weights(net, meta: dict) -> None:
    expected = meta["weight_sums"]
    got = {f"{layer}:{i}" for layer, views in net.params.items() for i in range(len(views))}
    assert got == set(expected), f"learnable blobs {sorted(got)} != Caffe's {sorted(expected)}"
    for layer, views in net.params.items():
        for i, view in enumerate(views):
            w = ff.make_weight(meta["name"], layer, i, tuple(view.shape), meta["weight_mode"])
            _check_sum(w, expected[f"{layer}:{i}"], f"weight {layer}:{i}")
            view.data.copy_(torch.from_numpy(w).to(view.data.device))


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def compare(z, prefix: str, get, category: str, case: str, tol: float):
    """Compare every stored entry under ``prefix`` with ``get(name)``; record; return failures."""
    failures = []
    keys = ff.entry_keys(z.files, prefix)
    assert keys or prefix in ("diff:", "grad:", "param:"), f"{case}: no {prefix} entries"
    for key in keys:
        name = key[len(prefix):]
        value = get(name)
        if value is None:
            failures.append(f"{key}: missing in the runtime")
            continue
        err = ff.rel_error(_np(value), z, key)
        record(category, case, name, err, tol)
        if not err <= tol:
            failures.append(f"{key}: relative error {err:.3e} > {tol:.0e}")
    return failures


# ------------------------------------------------------------------------------ ReLU kinks

KINKS = {"forced": 0, "relu_inputs": 0}


def install_kinks(net, z, prefix: str) -> list:
    """Pre-hooks on the runtime's ReLU layers that set the recorded near-zero inputs to
    Caffe's values (gradient unchanged). Returns the hook handles."""
    handles = []
    layers = {layer.name: layer for layer in net.layers}
    for key in ff.entry_keys(z.files, prefix):
        name = key[len(prefix):]
        assert name in layers, f"ReLU layer {name!r} missing in the runtime"
        idx = torch.from_numpy(np.asarray(z[key + "@index"], dtype=np.int64))
        val = torch.from_numpy(np.asarray(z[key + "@value"], dtype=np.float32))

        def hook(module, args, idx=idx, val=val):
            x = args[0]
            KINKS["forced"] += int(idx.numel())
            KINKS["relu_inputs"] += x.numel()
            if not idx.numel():
                return None
            flat = x.detach().reshape(-1).clone()
            flat[idx.to(x.device)] = val.to(x.device)
            # forward: Caffe's values at the kinks; backward: identity (x - x.detach() is 0)
            return (flat.view_as(x) + (x - x.detach()),) + tuple(args[1:])

        handles.append(layers[name].register_forward_pre_hook(hook))
    return handles


# ------------------------------------------------------------------------------ net cases

def run_net_case(name: str, device: str = "cpu"):
    """Build, feed and run a ``net`` fixture in the runtime; returns (net, meta)."""
    from runtime.net import Net

    meta = METAS[name]
    # runtime_prototxt: the same computation in BVLC master's terms, where the reference
    # build's layer differs from master's (its InfogainLoss takes probabilities)
    net = Net(meta.get("runtime_prototxt", meta["prototxt"]), pb.TEST)
    if device != "cpu":
        net.to(device)
    set_weights(net, meta)
    # every blob of Caffe's net, the Split blobs of its InsertSplits included
    assert {b: list(net.blobs[b].shape) for b in net.blobs} == meta["blob_shapes"]
    inputs = make_inputs(meta)
    with load(name) as z:
        hooks = install_kinks(net, z, "kink:")
    try:
        net.forward(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
    finally:
        for h in hooks:
            h.remove()
    ff.backward_as_caffe(name, net, meta["backward"], meta.get("top_diffs"), device,
                         check=lambda top, g: _check_sum(g, meta["top_diff_sums"][top],
                                                         f"top diff {top}"))
    return net, meta


def check_net_case(name: str, net, meta, tol=None, label=None):
    scale = meta["scale"]
    tol = tol or (TOL_NETWORK if scale == "network" else TOL_LAYER)
    label = label or scale
    z = load(name)
    with z:
        blob = lambda n: net.blobs[n].data if n in net.blobs else None  # noqa: E731
        diff = lambda n: net.blobs[n].diff if n in net.blobs else None  # noqa: E731

        def grad(key, field="diff"):
            layer, i = key.rsplit(":", 1)
            views = net.params.get(layer)
            return (getattr(views[int(i)], field) if views is not None and int(i) < len(views)
                    else None)

        failures = compare(z, "fwd:", blob, f"{label} forward", name, tol)
        failures += compare(z, "param:", lambda key: grad(key, "data"),
                            f"{label} param after forward", name, tol)
        if meta["backward"] != "none":
            failures += compare(z, "diff:", diff, f"{label} blob diff", name, tol)
            failures += compare(z, "grad:", grad, f"{label} param grad", name, tol)
    assert not failures, f"{name}: " + "; ".join(failures)


@pytest.mark.parametrize("name", cases_of("net"))
def test_net(name):
    net, meta = run_net_case(name)
    check_net_case(name, net, meta)


# ------------------------------------------------------------------------------ fillers

def _filler_expectation(filler, shape):
    """(mean, std, lo, hi, kurtosis) of Caffe's filler on a blob of ``shape``."""
    count = math.prod(shape)
    fan_in = count // shape[0]
    fan_out = count // (shape[1] if len(shape) > 1 else 1)
    n = {pb.FillerParameter.FAN_IN: fan_in, pb.FillerParameter.FAN_OUT: fan_out,
         pb.FillerParameter.AVERAGE: (fan_in + fan_out) / 2}[filler.variance_norm]
    if filler.type == "constant":
        return filler.value, 0.0, filler.value, filler.value, None
    if filler.type == "gaussian":
        return filler.mean, filler.std, -math.inf, math.inf, 3.0
    if filler.type == "uniform":
        return ((filler.min + filler.max) / 2, (filler.max - filler.min) / math.sqrt(12),
                filler.min, filler.max, 1.8)
    if filler.type == "xavier":
        a = math.sqrt(3.0 / n)
        return 0.0, a / math.sqrt(3.0), -a, a, 1.8
    if filler.type == "msra":
        return 0.0, math.sqrt(2.0 / n), -math.inf, math.inf, 3.0
    raise AssertionError(f"no expectation for filler {filler.type}")


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / a.size
                        - np.searchsorted(b, grid, side="right") / b.size).max())


@pytest.mark.parametrize("name", cases_of("filler"))
def test_filler(name):
    from google.protobuf import text_format
    from runtime.net import Net

    meta = METAS[name]
    filler = pb.FillerParameter()
    text_format.Merge(meta["filler"], filler)
    net = Net(meta["prototxt"], pb.TEST, seed=meta["seed"])
    views = net.params[meta["layer"]]
    z = load(name)
    failures = []
    if filler.type == "bilinear":       # deterministic: Caffe's values, to fp32 rounding
        with z:
            failures = compare(z, "fill:", lambda key: views[int(key)].data,
                               "filler bilinear (runtime vs Caffe)", name, 1e-7)
        assert not failures, f"{name}: " + "; ".join(failures)
        return
    with z:
        for i, view in enumerate(views):
            caffe = meta[f"blob{i}"]
            w = _np(view.data).astype(np.float64)
            assert list(w.shape) == caffe["shape"], f"blob {i}: shape {w.shape} vs {caffe['shape']}"
            if i == 1:      # the bias: constant 0.25 (conv) or the default constant 0 (ip)
                err = ff.rel_error(w, z, f"fill:{i}")
                failures += [f"bias differs from Caffe's ({err})"] if err else []
                continue
            mean, std, lo, hi, kurt = _filler_expectation(filler, w.shape)
            if kurt is None:       # constant: exact
                if not (np.all(w == mean) and caffe["min"] == caffe["max"] == np.float32(mean)):
                    failures.append(f"constant filler: runtime {w.min()}..{w.max()}, "
                                    f"Caffe {caffe['min']}..{caffe['max']}, expected {mean}")
                for cat in ("runtime vs formula", "Caffe vs formula", "runtime vs Caffe"):
                    record(f"filler z-score ({cat})", name, "constant", 0.0, Z_LIMIT)
                continue
            n = w.size
            se_mean = std / math.sqrt(n)
            se_std = std * math.sqrt((kurt - 1) / (4 * n))
            stats = {"runtime": (w.mean(), w.std(), w.min(), w.max()),
                     "Caffe": (caffe["mean"], caffe["std"], caffe["min"], caffe["max"])}
            for who, (m, s, mn, mx) in stats.items():
                zmax = max(abs(m - mean) / se_mean, abs(s - std) / se_std)
                record(f"filler z-score ({who} vs formula)", name, f"blob{i}", zmax, Z_LIMIT)
                if zmax > Z_LIMIT:
                    failures.append(f"{who}: mean {m:.6g} std {s:.6g}, formula mean {mean:.6g} "
                                    f"std {std:.6g} ({zmax:.1f} standard errors)")
                where = f"{who}: range {mn:.6g}..{mx:.6g}"
                if mn < lo - 1e-7 * max(1, abs(lo)) or mx > hi + 1e-7 * max(1, abs(hi)):
                    failures.append(f"{where} outside [{lo:.6g}, {hi:.6g}]")
                slack = 0.01 * (hi - lo)
                if math.isfinite(lo) and (mn > lo + slack or mx < hi - slack):
                    failures.append(f"{where} does not fill [{lo:.6g}, {hi:.6g}]")
            rm, rs = stats["runtime"][:2]
            cm, cs = stats["Caffe"][:2]
            zdiff = max(abs(rm - cm) / (se_mean * math.sqrt(2)),
                        abs(rs - cs) / (se_std * math.sqrt(2)))
            # Kolmogorov-Smirnov distance between the runtime's whole blob and Caffe's 4096
            # stored draws, in units of its alpha = 0.001 critical value / Z_LIMIT (so a
            # distance below the critical value passes).
            sample = np.asarray(z[f"fill:{i}@sample"], dtype=np.float64)
            mine = w.reshape(-1)
            d_crit = 1.95 * math.sqrt(1.0 / sample.size + 1.0 / mine.size)
            zks = _ks_distance(mine, sample) / d_crit * Z_LIMIT
            zdiff = max(zdiff, zks)
            record("filler z-score (runtime vs Caffe)", name, f"blob{i}", zdiff, Z_LIMIT)
            if zdiff > Z_LIMIT:
                failures.append(f"runtime vs Caffe: mean {rm:.6g}/{cm:.6g} std {rs:.6g}/{cs:.6g} "
                                f"KS {zks / Z_LIMIT:.2f} x critical ({zdiff:.1f})")
    assert not failures, f"{name}: " + "; ".join(failures)


# ------------------------------------------------------------------------------ solvers

def run_solver_case(name: str, check_step, device=None, solver_ref=None):
    from runtime.solver import make_solver

    meta = METAS[name]
    solver = make_solver(meta["solver"], device=device or "cpu")
    if solver_ref is not None:
        solver_ref.append(solver)
    net = solver.net
    set_weights(net, meta)
    dev = net.device
    if meta["feed"] == "fixed":
        fixed = make_inputs(meta)
    z = load(name)
    for k in range(1, meta["steps"] + 1):
        inputs = fixed if meta["feed"] == "fixed" else make_inputs(meta, f"@{k}")
        for blob, x in inputs.items():
            net.blobs[blob].data.copy_(torch.from_numpy(x).to(dev))
        hooks = install_kinks(net, z, f"kink{k}:")
        try:
            solver.step(1)
        finally:
            for h in hooks:
                h.remove()
        check_step(k, net)
    z.close()
    assert solver.iter == meta["steps"]
    return solver, meta


@pytest.mark.parametrize("name", cases_of("solver"))
def test_solver(name):
    check_solver_case(name)


def check_solver_case(name, device=None, label=""):
    meta = METAS[name]
    big = "variant" in meta
    cat_w = label + ("All-CNN-C 20-step weights" if big else "solver weights")
    cat_l = label + ("All-CNN-C 20-step loss" if big else "solver loss")
    failures = []
    z = load(name)

    def check_step(k, net):
        loss = float(_np(net.blobs["loss"].data))
        ref = meta["losses"][k - 1]
        err = abs(loss - ref) / max(abs(ref), ff.TINY)
        record(cat_l, name, f"step{k}", err, TOL_SOLVER)
        if not err <= TOL_SOLVER:
            failures.append(f"loss at step {k}: {loss} vs Caffe's {ref} ({err:.2e})")
        if k not in meta["record"]:
            return

        def weight(key):
            layer, i = key.rsplit(":", 1)
            return net.params[layer][int(i)].data

        failures.extend(compare(z, f"step{k}:", weight, cat_w, name, TOL_SOLVER))
        if k == meta.get("snapshot_at"):
            failures.extend(compare_history(z, solver_ref[0].history, name))

    solver_ref = []
    with z:
        run_solver_case(name, check_step, device, solver_ref)
    assert not failures, f"{name}: " + "; ".join(failures[:10])


def _hdf5(meta) -> bool:
    return "snapshot_format: HDF5" in meta["solver"]


def solver_state(data: bytes, hdf5: bool):
    """A .solverstate's bytes (binary, or Caffe's HDF5 layout) as a SolverState."""
    if not hdf5:
        state = pb.SolverState()
        state.ParseFromString(data)
        return state
    from runtime import hdf5_snapshot
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.solverstate.h5"
        path.write_bytes(data)
        return hdf5_snapshot.read_state(path)


def compare_history(z, history, case: str) -> list[str]:
    """The runtime's history blobs against those of the .solverstate Caffe wrote (Caffe's
    layout: for Adam and AdaDelta all N first blobs, then all N second ones)."""
    from runtime.caffemodel import blob_to_array

    state = solver_state(z["file:solverstate"].tobytes(), _hdf5(METAS[case]))
    if len(state.history) != len(history):
        return [f"{len(history)} history blobs, Caffe's solverstate has {len(state.history)}"]
    failures = []
    for i, (blob, h) in enumerate(zip(state.history, history)):
        ref = blob_to_array(blob).reshape(tuple(h.shape)).astype(np.float64)
        err = float(np.abs(_np(h) - ref).max() / max(np.abs(ref).max(), ff.TINY))
        record("solverstate history (Caffe's snapshot)", case, f"history{i}", err, TOL_SOLVER)
        if not err <= TOL_SOLVER:
            failures.append(f"history blob {i}: relative error {err:.3e} > {TOL_SOLVER:.0e}")
    return failures


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n, m in METAS.items()
                                  if m.get("snapshot_at")])
def test_caffe_written_solverstate_resumes(name, tmp_path):
    """A .solverstate (and .caffemodel) written by real Caffe's snapshot after step k restores
    into the runtime's solver, which then continues to Caffe's weights at every later step."""
    from runtime.solver import make_solver

    meta = METAS[name]
    k, failures = meta["snapshot_at"], []
    with load(name) as z:
        (tmp_path / meta["learned_net"]).write_bytes(z["file:caffemodel"].tobytes())
        state = tmp_path / ("caffe_written.solverstate" + (".h5" if _hdf5(meta) else ""))
        state.write_bytes(z["file:solverstate"].tobytes())
        solver = make_solver(meta["solver"], device="cpu")
        solver.restore(state)
        assert solver.iter == k
        inputs = make_inputs(meta)
        for step in range(k + 1, meta["steps"] + 1):
            # the fixed batch, as Caffe had it in its Input blobs
            for blob, x in inputs.items():
                solver.net.blobs[blob].data.copy_(torch.from_numpy(x))
            solver.step(1)
            failures += compare(z, f"step{step}:", lambda key: solver.net.params[
                key.rsplit(":", 1)[0]][int(key.rsplit(":", 1)[1])].data,
                "runtime resumes Caffe solverstate", name, TOL_SOLVER)
    assert not failures, f"{name}: " + "; ".join(failures[:10])


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n, m in METAS.items()
                                  if m.get("snapshot_at")])
def test_runtime_written_weights_are_caffes_snapshot(name, tmp_path):
    """After step k the runtime's .caffemodel (or HDF5 .caffemodel.h5) holds what Caffe's
    snapshot holds: the same layers, blobs and shapes (a PERMISSIVE sharer's in its own
    shape; in HDF5 a shared blob only with its owner) and values."""
    from runtime import hdf5_snapshot
    from runtime.caffemodel import read_layers
    from runtime.solver import make_solver

    meta = METAS[name]
    hdf5 = _hdf5(meta)
    read = hdf5_snapshot.read_weights if hdf5 else read_layers
    with load(name) as z:
        theirs = tmp_path / ("caffe.caffemodel" + (".h5" if hdf5 else ""))
        theirs.write_bytes(z["file:caffemodel"].tobytes())
    solver = make_solver(meta["solver"], device="cpu")
    set_weights(solver.net, meta)
    inputs = make_inputs(meta)
    for _ in range(meta["snapshot_at"]):
        for blob, x in inputs.items():
            solver.net.blobs[blob].data.copy_(torch.from_numpy(x))
        solver.step(1)
    ours = tmp_path / ("ours.caffemodel" + (".h5" if hdf5 else ""))
    (solver.net.save_hdf5 if hdf5 else solver.net.save)(ours)
    expected, got = dict(read(theirs)), dict(read(ours))
    assert list(got) == [n for n in expected if n in got] and set(got) >= {
        n for n, blobs in expected.items() if blobs}
    for layer, blobs in expected.items():
        assert [None if b is None else b.shape for b in got.get(layer, [])] == [
            None if b is None else b.shape for b in blobs], layer
        for mine, caffe in zip(got.get(layer, []), blobs):
            if caffe is not None:
                np.testing.assert_allclose(mine, caffe, rtol=0,
                                           atol=TOL_SOLVER * max(np.abs(caffe).max(), 1e-12))


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n, m in METAS.items()
                                  if m.get("snapshot_at")])
def test_runtime_written_solverstate_resumes_in_caffe(name):
    """At fixture time real Caffe restored the .solverstate the runtime wrote after step k and
    stepped on to its own uninterrupted weights; the runtime still writes that history."""
    from runtime.caffemodel import blob_to_array
    from runtime.solver import make_solver

    meta = METAS[name]
    k, failures = meta["snapshot_at"], []
    with load(name) as z:
        for step in range(k + 1, meta["steps"] + 1):
            for key in ff.entry_keys(z.files, f"resumed{step}:"):
                ours_in_caffe = np.asarray(z[key])
                err = ff.rel_error(ours_in_caffe, z, f"step{step}:" + key.split(":", 1)[1])
                record("Caffe resumes runtime solverstate", name, key, err,
                       TOL_SOLVER)
                if not err <= TOL_SOLVER:
                    failures.append(f"{key}: relative error {err:.3e}")
        state = solver_state(z["file:runtime_solverstate"].tobytes(), _hdf5(meta))
    assert state.iter == k and len(state.history) > 0
    solver = make_solver(meta["solver"], device="cpu")
    set_weights(solver.net, meta)
    inputs = make_inputs(meta)
    for _ in range(k):
        for blob, x in inputs.items():
            solver.net.blobs[blob].data.copy_(torch.from_numpy(x))
        solver.step(1)
    written = solver.optimizer.solver_state(k, solver.current_step, "")
    assert len(written.history) == len(state.history)
    for then, now in zip(state.history, written.history):
        # relative to the blob's largest value: elementwise, a CPU with other BLAS kernels
        # (another machine) moves a value near 0 by more than 1e-6 of itself
        then = blob_to_array(then)
        np.testing.assert_allclose(blob_to_array(now), then, rtol=0,
                                   atol=1e-6 * max(float(np.abs(then).max()), 1e-12))
    assert not failures, f"{name}: " + "; ".join(failures)


@pytest.mark.parametrize("name", [c for c in cases_of("solver") if "all_c" not in c.id])
def test_optimizer_in_a_plain_loop(name):
    """The same fixtures through the optimizer API alone: a Net, optimizer_from_solver (the
    solver type's runtime.optim class), the CaffeLR schedule and a loop of one's own
    (iter_size backward passes per step)."""
    from runtime import TRAIN, CaffeLR, Net
    from runtime.optim import optimizer_from_solver
    from runtime.prototxt import read_solver

    meta = METAS[name]
    param = read_solver(meta["solver"])
    net = Net(param.net_param, TRAIN, seed=param.random_seed)
    set_weights(net, meta)
    optimizer = optimizer_from_solver(param, net)
    schedule = CaffeLR(optimizer, param)
    inputs = make_inputs(meta)
    failures = []
    with load(name) as z:
        for k in range(1, meta["steps"] + 1):
            optimizer.zero_grad()
            for _ in range(param.iter_size):
                net.loss(**{b: torch.from_numpy(x) for b, x in inputs.items()}).backward()
            optimizer.step()
            schedule.step()
            if k in meta["record"]:
                failures += compare(z, f"step{k}:", lambda key: net.params[key.rsplit(":", 1)[0]][
                    int(key.rsplit(":", 1)[1])].data, "optimizer weights (own loop)", name,
                    TOL_SOLVER)
    assert not failures, f"{name}: " + "; ".join(failures[:10])


# ------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("name", cases_of("roundtrip_runtime"))
def test_roundtrip_runtime_saved_loads_in_caffe(name, tmp_path):
    """Caffe loaded a .caffemodel written by the runtime's Net.save (fixture time): same
    weights bit for bit, same outputs as the runtime computes now."""
    from runtime.caffemodel import read_weights
    from runtime.net import Net

    meta = METAS[name]
    assert meta["loaded_weights_max_abs_diff"] == 0.0, "Caffe read different weights"
    net = Net(meta["prototxt"], pb.TEST)
    set_weights(net, meta)
    # the runtime's writer still produces what Caffe read: same blobs, same values
    path = tmp_path / "again.caffemodel"
    net.save(str(path))
    saved = read_weights(str(path))
    for layer, views in net.params.items():
        for i, view in enumerate(views):
            assert np.array_equal(saved[layer][i].reshape(tuple(view.shape)), _np(view.data))
    net.forward(**make_inputs(meta))
    with load(name) as z:
        failures = compare(z, "fwd:", lambda n: net.blobs[n].data if n in net.blobs else None,
                           "round trip runtime->Caffe outputs", name, TOL_NETWORK)
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("name", cases_of("roundtrip_caffe"))
def test_roundtrip_caffe_saved_loads_in_runtime(name):
    """A .caffemodel written by real Caffe's net.save loads in the runtime: same weights,
    same outputs."""
    from runtime.net import Net

    meta = METAS[name]
    model = FIXTURES / meta["caffemodel"]
    assert model.stat().st_size == meta["caffemodel_bytes"]
    net = Net(meta["prototxt"], pb.TEST, weights=str(model))
    net.forward(**make_inputs(meta))

    def weight(key):
        layer, i = key.rsplit(":", 1)
        return net.params[layer][int(i)].data

    with load(name) as z:
        failures = compare(z, "weight:", weight, "round trip Caffe->runtime weights", name, 0.0)
        failures += compare(z, "fwd:", lambda n: net.blobs[n].data if n in net.blobs else None,
                            "round trip Caffe->runtime outputs", name, TOL_LAYER)
    assert not failures, "; ".join(failures)


# ------------------------------------------------------------------------------ Exp, Log

@pytest.mark.parametrize("name", cases_of("exp_log_constants"))
def test_exp_log_constants_are_caffes(name):
    """Exp's ln(base)·scale and base^shift and Log's 1/ln(base) are Caffe's float32 values, bit
    for bit, over the fixture's sweep of bases, scales and shifts."""
    from google.protobuf import text_format
    from runtime.layers import make_layer

    def layer(type_, body):
        param = text_format.Parse(f"name: 'l' type: '{type_}' bottom: 'x' top: 'y' {body}",
                                  pb.LayerParameter())
        return make_layer(param, [(1,)], pb.TEST, torch.Generator())

    exp = "exp_param {{ base: {!r} scale: {!r} shift: {!r} }}".format
    meta = METAS[name]
    runtime = {
        "log:base_scale": [layer("Log", f"log_param {{ base: {b!r} }}").base_scale
                           for b in meta["log_bases"]],
        "exp:inner_scale": [layer("Exp", exp(b, s, 0.0)).inner_scale for b, s in meta["exp_inner"]],
        "exp:outer_scale": [layer("Exp", exp(b, 1.0, s)).outer_scale for b, s in meta["exp_outer"]],
    }
    failures = []
    with load(name) as z:
        for key, values in runtime.items():
            ours, caffe = np.asarray(values, dtype=np.float32), z[key]
            differ = np.flatnonzero(ours != caffe)
            record("Exp/Log constants (exact)", name, key,
                   float(np.abs(ours - caffe).max() / np.abs(caffe).max()), 0.0)
            if differ.size:
                i = differ[0]
                failures.append(f"{key}: {differ.size} of {caffe.size} differ from Caffe "
                                f"(first: {ours[i]!r} vs {caffe[i]!r})")
    assert not failures, "; ".join(failures)


# ------------------------------------------------------------------------------ sequences

@pytest.mark.parametrize("name", cases_of("sequence"))
def test_sequence(name):
    """A net reshaped and run forward step after step at changing batch sizes, against
    Caffe after each forward (a recurrent layer's carried state as N shrinks and grows)."""
    from runtime.net import Net

    meta = METAS[name]
    net = Net(meta["prototxt"], pb.TEST)
    set_weights(net, meta)
    failures = []
    with load(name) as z:
        for k, step in enumerate(meta["steps"], 1):
            given = {}
            for blob, spec in step["inputs"].items():
                given[blob] = ff.make_input(name, f"{blob}@{k}", spec)
                _check_sum(given[blob], meta["input_sums"][f"{blob}@{k}"], f"input {blob}@{k}")
                net.blobs[blob].reshape(*given[blob].shape)
            net.reshape()
            if step["forward"]:
                net.forward(**given)
                failures += compare(z, f"fwd{k}:", lambda b: net.blobs[b].data,
                                    "sequence forward", name, TOL_LAYER)
    assert not failures, f"{name}: " + "; ".join(failures)


# ------------------------------------------------------------------------------ data layers

@pytest.mark.parametrize("name", cases_of("data"))
def test_data_layer(name, tmp_path):
    """Data layers against Caffe: every top after each forward, exactly (random tops: shape,
    range and a refill at each forward, as in Caffe), the Data layer over LMDBs and LevelDBs;
    HDF5Output's file against Caffe's."""
    from runtime.net import Net

    meta = METAS[name]
    h5py = None
    if meta.get("h5_files") or meta.get("output_file"):
        h5py = pytest.importorskip("h5py", reason="HDF5 layers need h5py (the hdf5 extra)")
    ff.write_data_files(meta, tmp_path, h5py)
    with load(name) as z:       # the case's databases, as the lmdb and plyvel packages wrote
        for key in z.files:     # them: file:lmdb:NAME (its data.mdb), file:leveldb:NAME/FILE
            kind, _, place = key.partition(":")[2].partition(":")
            if kind in ("lmdb", "leveldb"):
                path = tmp_path / (f"{place}/data.mdb" if kind == "lmdb" else place)
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(z[key].tobytes())
    net = Net(meta["prototxt"].replace(ff.DIR, str(tmp_path)), getattr(pb, meta["phase"]),
              seed=7)
    inputs = make_inputs(meta) if meta["inputs"] else {}
    if "memory_arrays" in meta:
        arrays = {k: ff.make_input(meta["name"], k, spec)
                  for k, spec in meta["memory_arrays"].items()}
        for k, v in arrays.items():
            _check_sum(v, meta["input_sums"][k], k)
        with pytest.warns(UserWarning, match="does not transform"):
            net.set_input_arrays(arrays["data"], arrays["labels"])
    random = set(meta.get("random_tops", ()))
    failures, previous = [], {}
    with load(name) as z:
        for k in range(1, meta["forwards"] + 1):
            net.forward(**inputs)
            for key in ff.entry_keys(z.files, f"fwd{k}:"):
                blob = key.split(":", 1)[1]
                ours = _np(net.blobs[blob].data)
                if blob in random:   # Caffe's RNG is not ours: same shape, range, refill
                    caffe = np.asarray(z[key])
                    assert ours.shape == caffe.shape
                    assert ours.min() >= -1 and ours.max() <= 3 and ours.std() > 0.5
                    if blob in previous:
                        assert not np.array_equal(ours, previous[blob])
                        assert not np.array_equal(caffe, np.asarray(z[f"fwd{k - 1}:{blob}"]))
                    previous[blob] = ours.copy()
                    continue
                err = ff.rel_error(ours, z, key)
                record("data layer tops", name, key, err, 0.0)
                if err != 0:
                    failures.append(f"{key}: relative error {err:.3e}")
        if "output_file" in meta:
            theirs = tmp_path / "caffe_written.h5"
            theirs.write_bytes(z["file:output"].tobytes())
            with h5py.File(tmp_path / meta["output_file"], "r") as a, \
                    h5py.File(theirs, "r") as b:
                assert sorted(a) == sorted(b) == ["data", "label"]
                for key in b:
                    assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
                    np.testing.assert_array_equal(a[key][()], b[key][()])
    assert not failures, f"{name}: " + "; ".join(failures)


# ------------------------------------------------------------------------------ inventory

def test_fixture_inventory():
    """Enough cases, and every layer type the runtime registers (but Clip and Swish) is
    exercised by some fixture net."""
    from google.protobuf import text_format
    from runtime.layers import LAYERS

    assert len(METAS) >= 60, f"only {len(METAS)} fixtures; {REGENERATE}"
    stale = [n for n, m in METAS.items() if m["format_version"] != ff.FORMAT_VERSION]
    assert not stale, f"fixtures of an older format: {stale}; {REGENERATE}"
    used = set()
    for m in METAS.values():
        text = m.get("prototxt") or ""
        if m["kind"] == "solver":
            sp = pb.SolverParameter()
            text_format.Merge(m["solver"], sp)
            used.update(l.type for l in sp.net_param.layer)
        elif text:
            used.update(l.type for l in text_format.Merge(text, pb.NetParameter()).layer)
    # Clip and Swish are newer than the reference build: test_layers_issue17.py checks them
    # against BVLC master's formulas
    missing = set(LAYERS) - used - {"Clip", "Swish"}
    assert not missing, f"layer types without a Caffe fixture: {sorted(missing)}"
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 8 * 2**20, f"tests/fixtures is {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n, m in METAS.items()
                                  if "generated_prototxt" in m])
def test_generated_net_unchanged_since_fixture(name):
    """The fixtures of the generated networks are still about what the generator renders."""
    from generator.render import NetOptions, SolverOptions, render_net, render_solver
    from generator.variants import VARIANTS

    meta = METAS[name]
    variant = VARIANTS[meta["variant"]]
    assert render_net(variant, NetOptions()) == meta["generated_prototxt"], (
        f"the generator's {meta['variant']} changed since the fixture was made; {REGENERATE}")
    if "generated_solver" in meta:
        assert render_solver(variant, NetOptions(), SolverOptions(
            net_path="all-c.prototxt")) == meta["generated_solver"], REGENERATE
