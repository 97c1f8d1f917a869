"""All-CNN-C training images/s, side by side in one run: the harness loop against a plain PyTorch
baseline, packs of K runs against K solo runs, and 350-epoch runs projected from 10-epoch slices.

The harness loop is harness.run.Run (generated prototxt, runtime Net, Caffe SGD update, data and
augmentation resident on the device; a pack of K runs is one net, runtime/pack.py). The baseline
is what a hand-written port does: an eager nn.Sequential of the same architecture,
torch.optim.SGD, and a DataLoader over a TensorDataset in CPU memory. Every loop runs at the same
precision and batch on synthetic data of CIFAR's shape (the slices: CIFAR-10 with --data).
Without CUDA it runs a tiny version and labels every line CPU.

    python benchmarks/train_throughput.py [--precision bf16] [--batch 128] [--iters 200]
    python benchmarks/train_throughput.py --sweep --json results/benchmarks/tp.json
    python benchmarks/train_throughput.py --pack 1,2,4,8 --routes pack,streams --slices --data DIR

Routes of --pack K (the training step of K runs; total images/s of all K):
  solo       K solo runs one after another (one solo step's rate: each takes as long), always;
  pack       one net of K members (grouped convolutions, runtime/pack.py), the route kept;
  streams    K solo loops in one process, each stepping on a CUDA stream of its own, so that
             one run's kernels (or its step's graph) can run beside another's (replicate
             --pack-route streams, harness/side_by_side.py);
  processes  K solo loops at once, one process each, sharing the device (what
             replicate --rows-in-parallel K does).
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.commit import git_commit  # noqa: E402
from harness.run_folder import RunFolder  # noqa: E402
from harness.specs import SPECS_DIR, load_spec  # noqa: E402
from harness.datasets import Data  # noqa: E402
from harness.run import (PRECISIONS, Run, RunOptions, resolve_precision, run_data,  # noqa: E402
                         set_precision)
from harness.side_by_side import SideBySide  # noqa: E402
from harness.train import train_pack  # noqa: E402
from benchmarks.timing import timed  # noqa: E402
from runtime.cli_support import (Parser, add_device_option, comma_list, name, number,  # noqa: E402
                                  resolve_device, run_cli)
from runtime.errors import AllconvError  # noqa: E402
from runtime.files import atomic_write_bytes, json_text, read_json_object  # noqa: E402

FLOP_PER_IMAGE = 1.625e9      # bf16 FLOP floor of one All-CNN-C training image (fwd + bwd)
PEAK_FLOPS = 989e12           # H100/H200 SXM dense bf16
EPOCHS, TRAIN_SIZE, TEST_SIZE = 350, 50_000, 10_000
SLICE = 10                    # epochs of a measured slice, evaluated every SLICE / 2
TARGETS = {"solo": 150.0, "pack_over_solo": 1.5}   # issue 20, on an H200 at bf16


def all_cnn_c() -> nn.Sequential:
    """All-CNN-C by hand (Table 2), as a port would write it: PyTorch's default init."""
    def conv(cin, cout, k, stride=1, pad=None):
        return [nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad), nn.ReLU()]
    return nn.Sequential(
        nn.Dropout(0.2), *conv(3, 96, 3), *conv(96, 96, 3), *conv(96, 96, 3, 2), nn.Dropout(0.5),
        *conv(96, 192, 3), *conv(192, 192, 3), *conv(192, 192, 3, 2), nn.Dropout(0.5),
        *conv(192, 192, 3, pad=0), *conv(192, 192, 1), *conv(192, 10, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def data_sizes(args, device) -> tuple[int, int]:
    """CIFAR's train and test sizes on CUDA; four batches each for the tiny CPU run."""
    return (TRAIN_SIZE, TEST_SIZE) if device.type == "cuda" else (4 * args.batch, 4 * args.batch)


def synthetic(n_train: int, n_test: int, device: torch.device) -> Data:
    g = torch.Generator().manual_seed(0)
    return Data(torch.randn(n_train, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (n_train,), generator=g).to(device),
                torch.randn(n_test, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (n_test,), generator=g).to(device))


LEVERS = {                    # name -> RunOptions switches
    "eager": {},
    "channels-last": {"channels_last": True},
    "compile+channels-last": {"compile": True, "channels_last": True},
    "cuda-graphs+channels-last": {"cuda_graphs": True, "channels_last": True},
}
SWEEP_PRECISIONS = {"cuda": ("fp32", "tf32", "bf16"), "cpu": ("fp32",)}
SWEEP_LEVERS = {"cuda": tuple(LEVERS), "cpu": ("eager", "channels-last")}


def row_spec(batch: int):
    """All-CNN-C's Table 3 row at ``batch``."""
    spec = load_spec(SPECS_DIR / "table3" / "all-cnn-c.toml")
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training,
                                                                  batch_size=batch))


def grid_members(spec, device, precision, levers: dict, members: int, tmp: Path) -> list:
    """``members`` runs of the row's lr grid, cycled (then the next seed), with ``levers`` on,
    each in a folder of ``tmp``."""
    grid = spec.training.lr_grid
    return [(RunOptions(lr=grid[k % len(grid)], seed=k // len(grid), precision=precision,
                        device=str(device), progress=False, **levers), tmp / str(k))
            for k in range(members)]


@contextmanager
def harness_run(args, device, precision, data: Data, levers: dict, members: int = 1):
    """The harness's All-CNN-C Run of ``members`` runs at ``args.batch`` (`grid_members`), in
    a scratch folder."""
    spec = row_spec(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        yield Run(spec, grid_members(spec, device, precision, levers, members, Path(tmp)),
                  data, device, precision)


def harness_rates(args, device, precision, data: Data, levers: dict,
                  members: int = 1) -> tuple[float, float]:
    """(training images/s, evaluation images/s) of all members of the harness loop with
    ``levers`` on (one evaluation pass serves every member)."""
    with harness_run(args, device, precision, data, levers, members) as run:
        train = timed(run.step, args.iters, args.warmup, device)
        evaluate = timed(run.evaluate, 1, 1, device)
    return members * args.batch / train, members * len(data.test_images) / evaluate


def concurrent_rate(args, device, precision, levers: dict, loops: int) -> float:
    """Total training images/s of ``loops`` harness loops at once, each in its own process on
    the device (what ``replicate --rows-in-parallel`` does), timed from a common start."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(loops), ctx.Queue()
    workers = [ctx.Process(target=_concurrent_loop,
                           args=(args, device, precision, levers, barrier, results))
               for _ in range(loops)]
    for worker in workers:
        worker.start()
    seconds = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    if any(s is None for s in seconds):
        raise AllconvError("a concurrent benchmark loop failed (its traceback is above)")
    return loops * args.iters * args.batch / max(seconds)


def _concurrent_loop(args, device, precision, levers, barrier, results) -> None:
    """One process of concurrent_rate: warm up, wait for the others, time ``args.iters``."""
    try:
        set_precision(precision)
        torch.backends.cudnn.benchmark = True
        data = synthetic(*data_sizes(args, device), device)
        with harness_run(args, device, precision, data, levers) as run:
            for _ in range(max(args.warmup, 1)):    # compiles and captures before the start
                run.step()
            barrier.wait()
            results.put(args.iters * timed(run.step, args.iters, 0, device))
    except BaseException:
        barrier.abort()
        results.put(None)
        raise


def streams_rate(args, device, precision, data: Data, levers: dict, loops: int) -> float:
    """Total training images/s of ``loops`` solo harness loops side by side in this process,
    each stepping on a CUDA stream of its own (harness/side_by_side.py, what ``replicate
    --pack-route streams`` trains; on the CPU one after another: the code path only)."""
    spec = row_spec(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        side = SideBySide.of(spec, grid_members(spec, device, precision, levers, loops,
                                                Path(tmp)), data, device, precision)
        return loops * args.batch / timed(side.step, args.iters, max(args.warmup, 1), device)


def baseline_rate(args, device, precision, data: Data) -> float:
    """Training images/s of the plain PyTorch port."""
    model = all_cnn_c().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    dataset = torch.utils.data.TensorDataset(data.train_images.cpu(), data.train_labels.cpu())
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         drop_last=True, pin_memory=device.type == "cuda")
    batches = iter(())
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else nullcontext())

    def step():
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return args.batch / timed(step, args.iters, args.warmup, device)


ROUTES = ("pack", "streams", "processes")


def build_parser() -> Parser:
    p = Parser(prog="train_throughput", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="every loop's precision (auto: bf16 on CUDA, fp32 on the CPU)")
    p.add_argument("--batch", type=int, help="batch size (default 128; CPU 8)")
    p.add_argument("--iters", type=int, help="timed iterations (default 200; CPU 3)")
    p.add_argument("--warmup", type=int, help="untimed iterations first (default 20; CPU 1)")
    add_device_option(p, "cuda or cpu (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="harness loop: torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="harness loop: the whole step as one CUDA graph")
    p.add_argument("--channels-last", action="store_true", help="harness loop: channels_last")
    p.add_argument("--sweep", action="store_true",
                   help="measure every lever set (CUDA: " + ", ".join(LEVERS) + "; CPU: "
                        "eager, channels-last) at every precision (CUDA: fp32, tf32, bf16; CPU: "
                        "fp32; or the one --precision names) against the baseline at that "
                        "precision, and name the fastest")
    p.add_argument("--levers", metavar="NAME,...", type=comma_list(name("lever set", LEVERS)),
                   help="with --sweep, measure only these lever sets (" + ", ".join(LEVERS) + ")")
    p.add_argument("--pack", type=comma_list(number(int)), metavar="K,...",
                   help="for each K, with the fastest lever set: K runs by each of --routes "
                        "against K solo runs one after another: total training and evaluation "
                        "images/s")
    p.add_argument("--routes", type=comma_list(name("route", ROUTES)), default=["pack"],
                   metavar="NAME,...",
                   help="with --pack, what is measured beside K solo runs one after another: "
                        "pack (one net of grouped convolutions), streams (K runs side by side on "
                        "CUDA streams of one process, replicate --pack-route streams), processes "
                        "(K processes, replicate --rows-in-parallel); default pack")
    p.add_argument("--slices", action="store_true",
                   help=f"train a {SLICE}-epoch slice, evaluated every {SLICE // 2} epochs, of "
                        "one solo run and of a pack of the row's 4-lr grid, and project 350 "
                        "epochs from each (CIFAR-10 with --data; CPU: a tiny slice)")
    p.add_argument("--data", metavar="DIR", help="the CIFAR-10 release, for --slices")
    p.add_argument("--slice-epochs", type=float, metavar="N",
                   help=f"the slices' length (default {SLICE} with --data; a dry run may "
                        "take less)")
    p.add_argument("--eval-limit", type=int, metavar="N",
                   help="the slices evaluate the first N test images only (a dry run)")
    p.add_argument("--profile", action="store_true",
                   help="with --pack, profile a few steps of the largest pack (the solo loop "
                        "when --routes has no pack): device against host time per step and "
                        "the top kernels")
    p.add_argument("--json", metavar="FILE", help="also write the measurements, with the "
                   "device, torch version, commit and time, to FILE")
    return p


def measure(args, device, precision: str, lever_sets: dict, data: Data) -> list[dict]:
    """The baseline, then the harness loop with each lever set, at ``precision``."""
    set_precision(precision)
    base = baseline_rate(args, device, precision, data)
    rows = [{"precision": precision, "loop": "baseline", "train_images_per_s": base}]
    for loop, levers in lever_sets.items():
        train, evaluate = harness_rates(args, device, precision, data, levers)
        rows.append({"precision": precision, "loop": loop, "train_images_per_s": train,
                     "eval_images_per_s": evaluate, "ratio": train / base,
                     "projected_minutes": projected_minutes(train, evaluate)})
    return rows


def projected_minutes(train_rate: float, eval_rate: float) -> float:
    """A 350-epoch run with one evaluation of the test set per epoch."""
    return EPOCHS * (TRAIN_SIZE / train_rate + TEST_SIZE / eval_rate) / 60


def fastest(rows: list[dict]) -> dict:
    """The harness configuration with the highest training rate."""
    return max((r for r in rows if "ratio" in r), key=lambda r: r["train_images_per_s"])


def report(rows: list[dict], tag: str) -> str:
    """The measurements as an aligned table, then the fastest configuration."""
    lines = [f"{tag}{'precision':<9} {'loop':<26} {'img/s':>9} {'TFLOP/s':>8} {'% peak':>7} "
             f"{'vs base':>8} {'350 ep':>8}"]
    for r in rows:
        flops = r["train_images_per_s"] * FLOP_PER_IMAGE
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        minutes = f"{r['projected_minutes']:.1f} m" if "projected_minutes" in r else ""
        lines.append(f"{tag}{r['precision']:<9} {r['loop']:<26} {r['train_images_per_s']:>9,.0f} "
                     f"{flops / 1e12:>8.2f} {100 * flops / PEAK_FLOPS:>6.2f}% {ratio:>8} "
                     f"{minutes:>8}")
    best = fastest(rows)
    lines.append(f"{tag}fastest: {best['precision']} {best['loop']}: {best['ratio']:.2f}x its "
                 f"baseline, 350 epochs with per-epoch eval in {best['projected_minutes']:.1f} "
                 f"min (eval {best['eval_images_per_s']:,.0f} img/s)")
    return "\n".join(lines)


def measure_packs(args, device, best: dict, levers: dict, data: Data) -> list[dict]:
    """For each K of --pack: each route's total training images/s and evaluation rate."""
    precision = best["precision"]
    solo_train, solo_eval = best["train_images_per_s"], best["eval_images_per_s"]
    rows = []
    for k in args.pack:
        if "pack" in args.routes:
            train, evaluate = (solo_train, solo_eval) if k == 1 else harness_rates(
                args, device, precision, data, levers, members=k)
            rows.append({"members": k, "route": "pack", "train_images_per_s": train,
                         "eval_images_per_s": evaluate, "vs_solo": train / solo_train})
        rows.append({"members": k, "route": "solo", "train_images_per_s": solo_train,
                     "eval_images_per_s": solo_eval, "vs_solo": 1.0})
        rates = {"streams": lambda: streams_rate(args, device, precision, data, levers, k),
                 "processes": lambda: concurrent_rate(args, device, precision, levers, k)}
        for route in (r for r in ROUTES if r in args.routes and r in rates):
            rate = rates[route]()
            rows.append({"members": k, "route": route, "train_images_per_s": rate,
                         "vs_solo": rate / solo_train})
    return rows


def pack_report(rows: list[dict], tag: str, what: str) -> str:
    lines = [f"{tag}packs ({what}): total images/s of K runs, training and evaluation",
             f"{tag}{'K':>2}  {'route':<10} {'train img/s':>12} {'vs solo':>8} "
             f"{'eval img/s':>11}"]
    for r in rows:
        evaluate = f"{r['eval_images_per_s']:>11,.0f}" if "eval_images_per_s" in r else ""
        lines.append(f"{tag}{r['members']:>2}  {r['route']:<10} {r['train_images_per_s']:>12,.0f}"
                     f" {r['vs_solo']:>7.2f}x {evaluate}".rstrip())
    best = max((r for r in rows if r["route"] != "solo"), key=lambda r: r["train_images_per_s"],
               default=None)
    if best is not None:
        slower = ": solo runs one after another train faster" if best["vs_solo"] < 1 else ""
        lines.append(f"{tag}fastest: {best['route']} of K={best['members']}, "
                     f"{best['vs_solo']:.2f}x the images/s of one solo run{slower}")
    return "\n".join(lines)


def run_slice(args, device, precision: str, levers: dict, data: Data, lrs, epochs: float,
              tmp: Path) -> dict:
    """Train ``lrs`` (one run, or a pack) for ``epochs`` evaluated twice; project 350 epochs
    from the records: the first half (start-up and compiling included) once, the second half
    (steady training and one evaluation) for every later half-slice."""
    spec = row_spec(args.batch)
    members = [(RunOptions(lr=lr, epochs=epochs, eval_every=epochs / 2, precision=precision,
                           device=str(device), progress=False, checkpoint_every=100,
                           eval_limit=args.eval_limit, **levers),
                tmp / f"lr-{lr:g}-{len(lrs)}") for lr in lrs]
    outcomes = train_pack(spec, members, data)
    if any("diverged" in o for o in outcomes):
        raise AllconvError(f"a slice run diverged: {outcomes}")
    records = RunFolder(members[0][1]).metrics.records()
    first, second = (r["seconds"] for r in records[:2])
    projected = first + (EPOCHS / (epochs / 2) - 1) * (second - first)
    return {"members": len(lrs), "lrs": list(lrs), "epochs": epochs, "seconds": second,
            "first_half_seconds": first, "projected_350_seconds": projected}


def measure_slices(args, device, best: dict, levers: dict, tag: str) -> list[dict]:
    spec = row_spec(args.batch)
    if args.data:
        opts = RunOptions(lr=spec.training.lr, data_dir=args.data, device=str(device))
        data = run_data(spec, opts, device)
        epochs = args.slice_epochs or SLICE
    else:   # a tiny synthetic slice: the code path, not a measurement of CIFAR
        data = synthetic(*data_sizes(args, device), device)
        epochs = args.slice_epochs or 1
    grid = spec.training.lr_grid
    with tempfile.TemporaryDirectory() as tmp:
        slices = [run_slice(args, device, best["precision"], levers, data, lrs, epochs,
                            Path(tmp)) for lrs in ([spec.training.lr], grid)]
    solo, pack = slices
    print(f"{tag}slices of {epochs:g} epoch{'s' if epochs != 1 else ''} "
          f"({'CIFAR-10' if args.data else 'synthetic'}, "
          f"evaluated every {epochs / 2:g}): solo {solo['seconds']:.1f} s, pack of "
          f"{pack['members']} {pack['seconds']:.1f} s; projected 350 epochs: solo "
          f"{solo['projected_350_seconds']:.0f} s (target {TARGETS['solo']:.0f} s), pack "
          f"{pack['projected_350_seconds']:.0f} s = "
          f"{pack['projected_350_seconds'] / solo['projected_350_seconds']:.2f}x the solo run "
          f"(target {TARGETS['pack_over_solo']:g}x)")
    return slices


def profile(args, device, best: dict, levers: dict, data: Data, tag: str) -> dict:
    """Device and host time per step of the largest pack (the solo loop for ``--pack 1``, or
    when --routes has no pack), and its top kernels."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    k = max(args.pack) if "pack" in args.routes else 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with harness_run(args, device, best["precision"], data, levers, k) as run:
        for _ in range(max(args.warmup, 1)):
            run.step()
        steps = 10
        with torch_profile(activities=activities) as prof:
            seconds = timed(run.step, steps, 0, device)
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events) / steps
    host_us = sum(e.self_cpu_time_total for e in events) / steps
    top = sorted(events, key=lambda e: e.self_device_time_total if device.type == "cuda"
                 else e.self_cpu_time_total, reverse=True)[:8]
    what = "the solo loop" if k == 1 else f"a pack of {k}"
    print(f"{tag}profile of {what}: {seconds * 1e3:.2f} ms a step, device "
          f"{device_us / 1e3:.2f} ms, host {host_us / 1e3:.2f} ms; top kernels:")
    for e in top:
        print(f"{tag}  {e.self_device_time_total / steps / 1e3:8.3f} ms device "
              f"{e.self_cpu_time_total / steps / 1e3:8.3f} ms host  {e.key[:70]}")
    return {"members": k, "step_seconds": seconds, "device_ms": device_us / 1e3,
            "host_ms": host_us / 1e3,
            "top": [{"name": e.key, "device_ms": e.self_device_time_total / steps / 1e3,
                     "host_ms": e.self_cpu_time_total / steps / 1e3} for e in top]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    cpu = device.type != "cuda"
    args.batch = args.batch or (8 if cpu else 128)
    args.iters = args.iters or (3 if cpu else 200)
    args.warmup = args.warmup if args.warmup is not None else (1 if cpu else 20)
    if (args.routes != ["pack"] or args.profile) and not args.pack:
        raise AllconvError("--routes and --profile go with --pack")
    torch.backends.cudnn.benchmark = True
    if args.profile and not cpu:
        # the profiler's CUDA tracing starts before any graph is captured (pytorch#75504)
        from torch.profiler._utils import _init_for_cuda_graphs
        _init_for_cuda_graphs()
    data = synthetic(*data_sizes(args, device), device)
    tag = "CPU " if cpu else ""
    name = f"CPU ({torch.get_num_threads()} threads), tiny run" if cpu else \
        torch.cuda.get_device_name(device)
    if args.sweep:
        precisions = (SWEEP_PRECISIONS[device.type] if args.precision == "auto"
                      else (resolve_precision(args.precision, device),))
        names = args.levers or SWEEP_LEVERS[device.type]
        lever_sets = {n: LEVERS[n] for n in names}
    else:
        precisions = (resolve_precision(args.precision, device),)
        chosen = {k: True for k in ("compile", "cuda_graphs", "channels_last")
                  if getattr(args, k)}
        lever_sets = {"+".join(k.replace("_", "-") for k in chosen) or "eager": chosen}
    print(f"{tag}device: {name}; All-CNN-C, batch {args.batch}, {args.iters} timed iterations "
          f"after {args.warmup}; baseline: nn.Sequential + torch.optim.SGD + DataLoader",
          flush=True)
    rows = [row for precision in precisions
            for row in measure(args, device, precision, lever_sets, data)]
    print(report(rows, tag), flush=True)
    best = fastest(rows)
    levers = lever_sets[best["loop"]]
    record = {"rows": rows}

    def keep() -> None:     # after each part: what was measured survives a later failure
        if args.json:
            write_json(Path(args.json), args, name, record)
    keep()
    if args.pack and args.profile:      # first: a route that fails later does not lose it
        record["profile"] = profile(args, device, best, levers, data, tag)
        keep()
    if args.pack:
        record["packs"] = measure_packs(args, device, best, levers, data)
        print(pack_report(record["packs"], tag, f"{best['precision']} {best['loop']}"),
              flush=True)
        keep()
    if args.slices:
        record["slices"] = measure_slices(args, device, best, levers, tag)
        keep()
    return 0


def write_json(path: Path, args, device_name: str, record: dict) -> None:
    """The measurements with their provenance, written atomically."""
    record = {"benchmark": "train_throughput", "model": "all-cnn-c", "device": device_name,
              "torch": torch.__version__, "commit": git_commit(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "batch": args.batch, "iters": args.iters, "warmup": args.warmup,
              "flop_per_image": FLOP_PER_IMAGE, "peak_flops": PEAK_FLOPS, "targets": TARGETS,
              **record}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json_text(record, indent=1) + "\n").encode())


def read_device(path: Path) -> str:
    """The device a JSON of `write_json`'s was measured on; another file is an AllconvError
    naming it."""
    record = read_json_object(path)
    if record.get("benchmark") != "train_throughput" or not isinstance(record.get("device"), str):
        raise AllconvError(f"{path}: not a train_throughput benchmark's JSON (no "
                           "\"benchmark\": \"train_throughput\" with its \"device\")")
    return record["device"]


if __name__ == "__main__":
    sys.exit(run_cli(main, "train_throughput"))
