"""All-CNN-C training images/s: the harness loop against a plain PyTorch baseline, in one run.

The harness loop is harness.train.Run (generated prototxt, runtime Net, Caffe SGD update, data and
augmentation resident on the device). The baseline is what a hand-written port does: an eager
nn.Sequential of the same architecture, torch.optim.SGD, and a DataLoader over a TensorDataset
in CPU memory. Both run at the same precision and batch on synthetic data of CIFAR's shape.
Without CUDA it runs a tiny version and labels every line CPU.

    python benchmarks/train_throughput.py [--precision bf16] [--batch 128] [--iters 200]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.specs import SPECS_DIR, load_spec  # noqa: E402
from harness.train import (PRECISIONS, Data, Run, RunOptions, resolve_device,  # noqa: E402
                           resolve_precision, set_precision)
from runtime.cli_support import Parser, run_cli  # noqa: E402

FLOP_PER_IMAGE = 1.625e9      # bf16 FLOP floor of one All-CNN-C training image (fwd + bwd)
PEAK_FLOPS = 989e12           # H100 SXM dense bf16
EPOCHS, TRAIN_SIZE, TEST_SIZE = 350, 50_000, 10_000


def all_cnn_c() -> nn.Sequential:
    """All-CNN-C by hand (Tables 1-2), as a port would write it: PyTorch's default init."""
    def conv(cin, cout, k, stride=1, pad=None):
        return [nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad), nn.ReLU()]
    return nn.Sequential(
        nn.Dropout(0.2), *conv(3, 96, 3), *conv(96, 96, 3), *conv(96, 96, 3, 2), nn.Dropout(0.5),
        *conv(96, 192, 3), *conv(192, 192, 3), *conv(192, 192, 3, 2), nn.Dropout(0.5),
        *conv(192, 192, 3, pad=0), *conv(192, 192, 1), *conv(192, 10, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def timed(step, iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def synthetic(n_train: int, n_test: int, device: torch.device) -> Data:
    g = torch.Generator().manual_seed(0)
    return Data(torch.randn(n_train, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (n_train,), generator=g).to(device),
                torch.randn(n_test, 3, 32, 32, generator=g).to(device),
                torch.randint(0, 10, (n_test,), generator=g).to(device))


def harness_rates(args, device, precision, data: Data) -> tuple[float, float]:
    """(training images/s, evaluation images/s) of the harness loop."""
    spec = load_spec(SPECS_DIR / "table3" / "all-cnn-c.toml")
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training,
                                                                  batch_size=args.batch))
    opts = RunOptions(lr=spec.training.lr, precision=precision, device=str(device),
                      compile=args.compile, cuda_graphs=args.cuda_graphs,
                      channels_last=args.channels_last, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(spec, opts, data, Path(tmp), device, precision)
        train = timed(run.step, args.iters, args.warmup, device)
        evaluate = timed(run.evaluate, 1, 1, device)
    return args.batch / train, len(data.test_images) / evaluate


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


def build_parser() -> Parser:
    p = Parser(prog="train_throughput", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="both loops' precision (auto: bf16 on CUDA, fp32 on the CPU)")
    p.add_argument("--batch", type=int, help="batch size (default 128; CPU 8)")
    p.add_argument("--iters", type=int, help="timed iterations (default 200; CPU 3)")
    p.add_argument("--warmup", type=int, help="untimed iterations first (default 20; CPU 1)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="harness loop: torch.compile")
    p.add_argument("--cuda-graphs", action="store_true", help="harness loop: CUDA graphs")
    p.add_argument("--channels-last", action="store_true", help="harness loop: channels_last")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    cpu = device.type != "cuda"
    args.batch = args.batch or (8 if cpu else 128)
    args.iters = args.iters or (3 if cpu else 200)
    args.warmup = args.warmup if args.warmup is not None else (1 if cpu else 20)
    precision = resolve_precision(args.precision, device)
    set_precision(precision)
    torch.backends.cudnn.benchmark = True
    data = synthetic(args.batch * 4 if cpu else TRAIN_SIZE, args.batch * 4 if cpu else TEST_SIZE,
                     device)
    tag = "CPU " if cpu else ""
    name = f"CPU ({torch.get_num_threads()} threads), tiny run" if cpu else \
        torch.cuda.get_device_name(device)
    print(f"{tag}device: {name}; All-CNN-C, batch {args.batch}, precision {precision}, "
          f"{args.iters} timed iterations after {args.warmup}")
    ours, eval_rate = harness_rates(args, device, precision, data)
    theirs = baseline_rate(args, device, precision, data)
    for label, rate in (("harness loop", ours), ("plain PyTorch baseline", theirs)):
        flops = rate * FLOP_PER_IMAGE
        print(f"{tag}{label:<24} {rate:>10,.0f} img/s  {flops / 1e12:7.2f} TFLOP/s  "
              f"{100 * flops / PEAK_FLOPS:5.2f} % of the bf16 peak ({PEAK_FLOPS / 1e12:.0f} "
              f"TFLOP/s, {FLOP_PER_IMAGE / 1e9:.3f} GFLOP/image)")
    print(f"{tag}ratio harness / baseline: {ours / theirs:.2f}x")
    train_s, eval_s = EPOCHS * TRAIN_SIZE / ours, EPOCHS * TEST_SIZE / eval_rate
    print(f"{tag}projected {EPOCHS}-epoch run with per-epoch eval: {(train_s + eval_s) / 60:.1f} "
          f"min (train {train_s / 60:.1f} + eval {eval_s / 60:.1f}; eval {eval_rate:,.0f} img/s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "train_throughput"))
