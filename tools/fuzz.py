"""Mutation fuzzer: mutated prototxt, solver and caffemodel files through allconv-caffe.

Each case writes one mutated file and runs the command line on it in this process, through
``run_cli`` as the console script does (no process start per case):

    prototxt    allconv-caffe time -model NET -iterations 1   (and test -weights, every other)
    solver      allconv-caffe train -solver SOLVER            (tests/tiny_caffe.py, 2 iterations)
    caffemodel  allconv-caffe test -model NET -weights MODEL -iterations 1

A case ends "ok" (exit 0), "clean" (exit 2, the last stderr line ``allconv-caffe: error: ...``),
"traceback" (an exception escaped the command line) or "other" (any other exit status or
message), or "slow" (over --case-seconds). Tracebacks and others are kept under --out.

    python tools/fuzz.py --cases 10000 --seed 0 --out /tmp/fuzz

Cases run in a temporary folder. Blobs are capped at --memory-mib per blob (the runtime's
"fits in memory" check is told the machine has that much), so a mutated net never swaps a
shared machine, and cases that run past --case-seconds are counted as slow and left.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import re
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from runtime import blob_shape  # noqa: E402
from runtime.cli import main as caffe_main  # noqa: E402
from runtime.cli_support import run_cli  # noqa: E402
from tests.tiny_caffe import write_tiny_net  # noqa: E402

KINDS = ("prototxt", "solver", "caffemodel")

NET = """name: "fuzz"
layer { name: "input" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
                            weight_filler { type: "xavier" variance_norm: FAN_IN }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "drop1" type: "Dropout" bottom: "norm1" top: "norm1" dropout_param { dropout_ratio: 0.5 } }
layer { name: "conv2a" type: "Convolution" bottom: "norm1" top: "conv2a"
        convolution_param { num_output: 2 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "conv2b" type: "Convolution" bottom: "norm1" top: "conv2b"
        convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 pad_h: 1 pad_w: 1 group: 2
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "cat" type: "Concat" bottom: "conv2a" bottom: "conv2b" top: "cat" concat_param { axis: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv2a" bottom: "conv2b" top: "sum"
        eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
layer { name: "pool2" type: "Pooling" bottom: "cat" top: "pool2"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool2" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "prob" type: "Softmax" bottom: "sum" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        loss_weight: 1 loss_param { normalization: VALID } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        accuracy_param { top_k: 1 } include { phase: TEST } }
"""

SOLVER = """net: "tiny.prototxt"
test_iter: 1
test_interval: 1
test_initialization: true
base_lr: 0.01
lr_policy: "multistep"
stepvalue: 1
gamma: 0.1
momentum: 0.9
weight_decay: 0.001
regularization_type: "L2"
clip_gradients: 10
iter_size: 1
average_loss: 1
max_iter: 2
display: 1
snapshot: 1
snapshot_prefix: "snap"
snapshot_after_train: true
solver_mode: CPU
random_seed: 1
type: "SGD"
"""

INTERESTING = ("-1", "0", "1", "2", "3", "7", "255", "65536", "2147483647", "2147483648",
               "4294967295", "4294967296", "9223372036854775807", "-9223372036854775808",
               "18446744073709551616", "1e30", "-1e30", "nan", "inf", "-inf", "0.5", "1e-40")
NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.?\d*(?:e-?\d+)?|nan|inf)(?![\w.])")
STRING = re.compile(r'"[^"\n]*"')
WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


# ------------------------------------------------------------------------------ mutators

def mutate_text(text: str, rng: random.Random) -> str:
    """One to three mutations of protobuf text: numbers, strings, words, lines, bytes."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(TEXT_MUTATIONS)(text, rng)
    return text


def _sub_one(pattern: re.Pattern, text: str, rng: random.Random, make) -> str:
    matches = list(pattern.finditer(text))
    if not matches:
        return text
    m = rng.choice(matches)
    return text[:m.start()] + make(m.group(0)) + text[m.end():]


def _number(text, rng):
    return _sub_one(NUMBER, text, rng, lambda old: rng.choice(
        INTERESTING + (str(rng.randint(-5, 40)), old + "0", "-" + old)))


def _string(text, rng):
    words = [m.group(0) for m in STRING.finditer(text)]
    return _sub_one(STRING, text, rng, lambda old: rng.choice(
        words + ['""', '"/"', '"a\\000b"', '"\\377\\376"', '"' + "x" * 300 + '"', '"."']))


def _word(text, rng):
    words = sorted(set(WORD.findall(text)))
    return _sub_one(WORD, text, rng, lambda old: rng.choice(words))


def _lines(text, rng):
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.randrange(3)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[j])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def _chars(text, rng):
    i = rng.randrange(len(text) + 1)
    op = rng.randrange(3)
    if op == 0:
        return text[:i] + text[i + rng.randint(1, 8):]
    if op == 1:
        return text[:i] + rng.choice("{}:\"\\#\n\x00\xff-. ") + text[i:]
    return text[:i]


TEXT_MUTATIONS = (_number, _number, _number, _string, _word, _word, _lines, _chars)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four mutations of a binary protobuf: bit flips, bytes, varints, cuts, copies."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.randrange(6), rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(i, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[min(i, len(data) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2:
            data[i:i] = rng.choice((b"\xff\xff\xff\xff\x0f", b"\x80" * 10, b"\x01",
                                    struct.pack("<f", float("nan")), rng.randbytes(4)))
        elif op == 3:
            del data[i:i + rng.randint(1, 64)]
        elif op == 4:
            del data[i:]
        else:
            j = rng.randrange(len(data) + 1)
            data[i:i] = data[j:j + rng.randint(1, 64)]
    return bytes(data)


def mutate_model(data: bytes, rng: random.Random) -> bytes:
    """One to three field-level mutations of a .caffemodel that stays valid protobuf: blob
    shapes, legacy dims, value counts, layer names, blobs dropped or duplicated."""
    from runtime.proto import pb
    net = pb.NetParameter.FromString(data)
    for _ in range(rng.randint(1, 3)):
        layer = rng.choice([l for l in net.layer if len(l.blobs)] or list(net.layer))
        blob = rng.choice(layer.blobs) if len(layer.blobs) else layer.blobs.add()
        op = rng.randrange(7)
        if op == 0 and len(blob.shape.dim):
            blob.shape.dim[rng.randrange(len(blob.shape.dim))] = int(rng.choice(INTERESTING[:13]))
        elif op == 1:
            blob.shape.dim.append(rng.choice((0, 1, 2)))
        elif op == 2:
            setattr(blob, rng.choice(("num", "channels", "height", "width")),
                    int(rng.choice(INTERESTING[:9])))
        elif op == 3 and len(blob.data):
            del blob.data[rng.randrange(len(blob.data)):]
        elif op == 4:
            layer.name = rng.choice([l.name for l in net.layer] + ["", "x\x00"])
        elif op == 5:
            del layer.blobs[rng.randrange(len(layer.blobs))]
        else:
            layer.blobs.add().CopyFrom(blob)
    return net.SerializeToString()


# ------------------------------------------------------------------------------ running

class SlowCase(BaseException):
    """Raised by the alarm when a case runs past its time."""


def _alarm(signum, frame):
    raise SlowCase


def run_case(argv: list[str], seconds: float) -> tuple[str, str]:
    """(outcome, detail) of one allconv-caffe run."""
    err, out = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = run_cli(caffe_main, "allconv-caffe", argv)
    except SlowCase:
        return "slow", ""
    except BaseException:  # noqa: BLE001 - what escapes the command line is the finding
        return "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    lines = err.getvalue().strip().splitlines()
    if status == 0:
        return "ok", ""
    if status == 2 and lines and lines[-1].startswith("allconv-caffe: error: "):
        return "clean", lines[-1]
    return "other", f"exit {status}: {err.getvalue()}"


class Fuzzer:
    """Seeds written once into ``workdir``; ``case(kind, i)`` mutates and runs one case."""

    def __init__(self, workdir: Path, seed: int, case_seconds: float):
        self.dir, self.seed, self.case_seconds = workdir, seed, case_seconds
        (workdir / "net.prototxt").write_text(NET)
        write_tiny_net(workdir, "tiny.prototxt")
        from runtime import TEST, Net
        Net(NET, TEST, seed=0).save(workdir / "net.caffemodel")
        self.caffemodel = (workdir / "net.caffemodel").read_bytes()

    def case(self, kind: str, index: int) -> tuple[str, str, bytes]:
        """(outcome, detail, the mutated file) of case ``index`` of ``kind``."""
        rng = random.Random(f"{self.seed}:{kind}:{index}")
        path = self.dir / f"case.{kind}"
        if kind == "caffemodel":
            data = (mutate_model if index % 2 else mutate_bytes)(self.caffemodel, rng)
            argv = ["test", "-model", "net.prototxt", "-weights", str(path), "-iterations", "1"]
        elif kind == "solver":
            data = mutate_text(SOLVER, rng).encode("utf-8", "surrogateescape")
            argv = ["train", "-solver", str(path)]
        else:
            data = mutate_text(NET, rng).encode("utf-8", "surrogateescape")
            argv = (["time", "-model", str(path), "-iterations", "1"] if index % 2 else
                    ["test", "-model", str(path), "-weights", "net.caffemodel", "-iterations", "1"])
        path.write_bytes(data)
        outcome, detail = run_case(argv, self.case_seconds)
        return outcome, detail, data


@contextlib.contextmanager
def fuzzing(memory_mib: int):
    """A quiet, memory-capped environment in a temporary working folder."""
    old_cwd, old_memory = os.getcwd(), blob_shape.physical_memory
    blob_shape.physical_memory = lambda: memory_mib * 2**20
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    logging.disable(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="allconv-fuzz-") as tmp, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.chdir(tmp)
            yield Path(tmp)
    finally:
        os.chdir(old_cwd)
        logging.disable(logging.NOTSET)
        signal.signal(signal.SIGALRM, old_handler)
        blob_shape.physical_memory = old_memory


def fuzz(kinds, cases: int, seed: int, memory_mib: int = 64, case_seconds: float = 3.0,
         keep: Path | None = None, progress=None) -> dict:
    """Run ``cases`` cases of each kind; ``{kind: {outcome: count}}``. Cases that end in a
    traceback or an unexpected exit are written to ``keep`` with their details."""
    counts = {}
    with fuzzing(memory_mib) as workdir:
        fuzzer = Fuzzer(workdir, seed, case_seconds)
        for kind in kinds:
            tally = counts[kind] = {"cases": 0, "ok": 0, "clean": 0, "traceback": 0,
                                    "other": 0, "slow": 0}
            for i in range(cases):
                outcome, detail, data = fuzzer.case(kind, i)
                tally["cases"] += 1
                tally[outcome] += 1
                if keep is not None and outcome in ("traceback", "other"):
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"{kind}-{i}.{kind}").write_bytes(data)
                    (keep / f"{kind}-{i}.txt").write_text(detail)
                if progress:
                    progress(kind, i, tally)
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000, help="cases per kind (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    p.add_argument("--out", type=Path, help="keep the tracebacks' cases here")
    p.add_argument("--memory-mib", type=int, default=64, help="largest blob (default 64 MiB)")
    p.add_argument("--case-seconds", type=float, default=3.0,
                   help="time limit of one case (default 3 s)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        p.error(f"unknown kind(s) {sorted(unknown)}; valid: {', '.join(KINDS)}")
    torch.set_num_threads(1)    # many tiny cases: threads only add overhead
    start = time.perf_counter()

    def progress(kind, i, tally):
        if (i + 1) % 500 == 0:
            print(f"{kind}: {i + 1} cases, {tally['traceback']} tracebacks, {tally['slow']} slow "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    out = args.out.resolve() if args.out else None
    counts = fuzz(kinds, args.cases, args.seed, args.memory_mib, args.case_seconds, out, progress)
    print(json.dumps(counts, indent=1))
    return 1 if any(c["traceback"] or c["other"] for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
