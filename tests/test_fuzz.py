"""A seeded slice of the project's mutation fuzzer (tools/fuzz.py): mutated prototxt, solver
and caffemodel files through allconv-caffe, and mutated deploy nets and weights through
export-onnx, end in success or in one clean error line, never in a traceback (nor, in
export-onnx, in onnxruntime apart from the runtime), from every seed net and solver (the full
run, 10,000 cases of each kind, is `python tools/fuzz.py`)."""
import contextlib
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.errors import AllconvError
from runtime.layers import LAYERS
from runtime.optim import OPTIMIZERS
from runtime.prototxt import parse_net, parse_solver
from tools.tiny_caffe import NET as TINY

_SPEC = importlib.util.spec_from_file_location(
    "fuzz", Path(__file__).resolve().parents[1] / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz)


def _check(counts: dict, cases: int, keep: Path) -> None:
    found = sorted(p.name for p in keep.glob("*.txt"))
    assert counts["traceback"] == counts["mismatch"] == counts["other"] == 0, (
        counts, [(keep / name).read_text()[-400:] for name in found[:3]])
    assert counts["cases"] == cases and counts["clean"] > cases // 4
    assert list(keep.iterdir()) == []           # only failing cases are kept


@pytest.mark.parametrize("net", list(fuzz.NETS))
def test_mutated_nets_and_weights_never_escape_as_tracebacks(net, tmp_path):
    counts = fuzz.fuzz(["prototxt", "caffemodel"], 24, seed=12, keep=tmp_path, nets=[net],
                       solvers=[])
    for kind in ("prototxt", "caffemodel"):
        _check(counts[kind], 24, tmp_path)
    assert counts["prototxt"]["ok"] + counts["caffemodel"]["ok"] > 0


def test_mutated_deploy_nets_and_weights_export_or_stop_cleanly(tmp_path):
    pytest.importorskip("onnxruntime")
    nets = [n for n in fuzz.NETS if n != fuzz.HDF5_NET]
    counts = fuzz.fuzz(["onnx"], 60, seed=12, keep=tmp_path, nets=nets, solvers=[])
    _check(counts["onnx"], 60, tmp_path)
    assert counts["onnx"]["ok"] > 0


def test_a_failing_case_is_kept_with_its_file_and_what_happened(tmp_path, monkeypatch):
    """An onnx case keeps its mutated prototxt (even cases) or caffemodel (odd ones) beside
    the error, and is counted."""
    monkeypatch.setattr(fuzz, "run_case", lambda argv, seconds, prog:   # seeds run untimed
                        ("ok", "") if seconds == 0 else ("mismatch", "apart"))
    counts = fuzz.fuzz(["onnx"], 2, seed=12, keep=tmp_path, nets=["geometry"], solvers=[])
    assert counts["onnx"]["mismatch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "onnx-0.prototxt", "onnx-0.txt", "onnx-1.caffemodel", "onnx-1.txt"]
    assert (tmp_path / "onnx-0.txt").read_text() == "apart"
    assert b"geometry" in (tmp_path / "onnx-0.prototxt").read_bytes()


def test_deploy_form_keeps_the_inference_layers_with_inputs_for_the_data():
    deploy = parse_net(fuzz.deploy_text(fuzz.NETS["normalization"]))
    types = [layer.type for layer in deploy.layer]
    assert types[0] == "Input" and "DummyData" not in types
    assert not [t for t in types if t.endswith("Loss") or t in ("Accuracy", "Silence")]
    original = parse_net(fuzz.NETS["normalization"])
    assert list(deploy.layer[0].input_param.shape) == list(original.layer[0].dummy_data_param.shape)
    assert len(types) == len([layer for layer in original.layer if not layer.type.endswith("Loss")
                              and layer.type not in ("Accuracy", "Silence")])


@pytest.mark.parametrize("solver", list(fuzz.SOLVERS))
def test_mutated_solvers_never_escape_as_tracebacks(solver, tmp_path):
    counts = fuzz.fuzz(["solver"], 16, seed=12, keep=tmp_path, nets=[], solvers=[solver])
    _check(counts["solver"], 16, tmp_path)
    assert counts["solver"]["ok"] > 0


def test_seeds_hold_every_layer_type_and_solver_type():
    """A layer or solver type added to the runtime needs a seed that holds it."""
    used = set(re.findall(r'type: "(\w+)"', "".join(fuzz.NETS.values()) + TINY))
    assert set(LAYERS) <= used, sorted(set(LAYERS) - used)
    assert {parse_solver(fuzz.SOLVER + text).type for text in fuzz.SOLVERS.values()} == \
        set(OPTIMIZERS)


def test_mutators_are_seeded_and_change_the_input():
    net = fuzz.NETS["classic"]
    a = fuzz.mutate_text(net, random.Random(5))
    assert a == fuzz.mutate_text(net, random.Random(5)) and a != net
    data = net.encode()
    assert fuzz.mutate_bytes(data, random.Random(1)) != data


def test_mutated_solvers_write_only_inside_the_fuzzers_folder():
    """A mutated snapshot_prefix of "/" made the solver cases write /case_iter_N.* (thousands
    of files in the file system's root over a run)."""
    solver, prefixes = fuzz.SOLVER + fuzz.SOLVERS["SGD"], set()
    for i in range(400):
        text = fuzz._string(solver, random.Random(i))
        with contextlib.suppress(AllconvError):     # the escapes that are not UTF-8
            prefixes.add(parse_solver(text).snapshot_prefix)
    assert "." in prefixes and "./" in prefixes
    assert not [p for p in prefixes if os.path.isabs(p) or ".." in p]


@pytest.mark.parametrize("prefix, kept", [("snap", True), ("./", True), ("", True),
                                           ("sub/x", True), ("/", False), ("../", False),
                                           ("/tmp/x", False), ("a\\000b", True)])
def test_a_solver_case_snapshots_inside_the_fuzzers_folder(tmp_path, prefix, kept):
    """_chars can still make "/" or "../" of "./": such a prefix becomes "snap"."""
    from types import SimpleNamespace
    text = fuzz.SOLVER.replace('snapshot_prefix: "snap"', f'snapshot_prefix: "{prefix}"')
    prefix = prefix.replace("\\000", "\0")       # a NUL: resolving it crashed the fuzzer
    assert parse_solver(text).snapshot_prefix == prefix
    confined = parse_solver(fuzz.Fuzzer.confined(SimpleNamespace(dir=tmp_path), text))
    assert confined.snapshot_prefix == (prefix if kept else "snap")


def test_the_solver_cases_go_through_the_confinement(tmp_path, monkeypatch):
    """Whatever the mutations make of the prefix, a solver case snapshots in the fuzzer's
    folder: one naming a folder outside it wrote its snapshots there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setattr(fuzz, "mutate_text", lambda text, rng: text.replace(
        'snapshot_prefix: "snap"', f'snapshot_prefix: "{outside}/escaped"'))
    keep = tmp_path / "keep"
    keep.mkdir()
    counts = fuzz.fuzz(["solver"], 2, seed=0, keep=keep, nets=["classic"], solvers=["SGD"])
    assert counts["solver"]["ok"] == 2 and list(outside.iterdir()) == []


@pytest.mark.parametrize("kind", ["prototxt", "solver"])
def test_ctrl_c_stops_the_fuzzer_with_the_counts_so_far(tmp_path, kind):
    """Ctrl-C (SIGINT to the process group) stops the fuzzer after the running case, with the
    counts so far and exit 130: also where the launcher left SIGINT ignored (a CI's background
    job; the fuzzer ran on before), and in a solver case, whose train command takes SIGINT
    for its own SignalHandler while it solves (the signal was lost there)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, str(root / "tools" / "fuzz.py"), "--cases", "100000", "--kinds",
         kind, "--nets", next(iter(fuzz.NETS)), "--solvers", next(iter(fuzz.SOLVERS)),
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("running-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert 0 < json.loads(out)[kind]["cases"] < 100000
    assert err.endswith("fuzz: interrupted; the counts so far are above\n")


def test_onnx_kind_with_only_the_data_net_is_one_line():
    """The data net has no deploy form: said, exit 2 (it was an IndexError)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "tools" / "fuzz.py"), "--kinds", "onnx",
                           "--nets", fuzz.HDF5_NET, "--cases", "1"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "fuzz.py: error: --kinds onnx exports the seed nets' deploy forms")
