"""A seeded slice of the project's mutation fuzzer (tools/fuzz.py): mutated prototxt, solver
and caffemodel files through allconv-caffe end in success or in one clean error line, never in
a traceback (the full run, 10,000 cases of each kind, is `python tools/fuzz.py`)."""
import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "fuzz", Path(__file__).resolve().parents[1] / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz)


@pytest.mark.parametrize("kind, cases", [("prototxt", 120), ("solver", 60), ("caffemodel", 120)])
def test_mutated_files_never_escape_as_tracebacks(kind, cases, tmp_path):
    counts = fuzz.fuzz([kind], cases, seed=12, keep=tmp_path)[kind]
    found = sorted(p.name for p in tmp_path.glob("*.txt"))
    assert counts["traceback"] == 0 and counts["other"] == 0, (
        counts, [(tmp_path / name).read_text()[-400:] for name in found[:3]])
    assert counts["cases"] == cases and counts["ok"] > 0 and counts["clean"] > cases // 4


def test_mutators_are_seeded_and_change_the_input():
    import random
    a = fuzz.mutate_text(fuzz.NET, random.Random(5))
    assert a == fuzz.mutate_text(fuzz.NET, random.Random(5)) and a != fuzz.NET
    data = fuzz.NET.encode()
    assert fuzz.mutate_bytes(data, random.Random(1)) != data
