"""Large All-CNN throughput: the 126-frame augmentation alone, and training images/s of the
generated net fed by it, with the projected time of the paper's schedule (350 epochs of 50,000).

Both run on one device on synthetic CIFAR-shaped uint8 images. The net is the runtime's Net of
``gen-prototxt --variant large-all-cnn`` (forward and backward, about 26 GMAC per image forward);
on the CPU it runs a tiny version (batch 2, one timed iteration).

    python benchmarks/large_pipeline.py [--device cuda] [--batch 64] [--iters 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.render import NetOptions, render_net  # noqa: E402
from generator.variants import get_variant  # noqa: E402
from runtime import TRAIN, Net  # noqa: E402
from benchmarks.timing import timed  # noqa: E402
from runtime.cli_support import Parser, add_device_option, resolve_device, run_cli  # noqa: E402
from runtime.data.large_augment import FRAME, LargeAugment, large_batch  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402

_VARIANT = get_variant("large-all-cnn")
SCHEDULE_IMAGES = int(_VARIANT.schedule.length) * _VARIANT.train_size    # epochs x images


def build_parser() -> Parser:
    p = Parser(prog="large_pipeline.py", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_option(p, "cuda or cpu (default: cuda when available)")
    p.add_argument("--batch", type=int, help="training batch (default 64, Table 5's row; CPU 2)")
    p.add_argument("--iters", type=int, help="timed training iterations (default 20; CPU 1)")
    p.add_argument("--augment-batch", type=int, default=64,
                   help="batch of the augmentation-only timing (default 64)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    cpu = device.type == "cpu"
    batch = (2 if cpu else 64) if args.batch is None else args.batch
    iters = (1 if cpu else 20) if args.iters is None else args.iters
    if min(batch, iters, args.augment_batch) <= 0:
        raise AllconvError("--batch, --iters and --augment-batch must be positive")
    generator = torch.Generator(device).manual_seed(0)
    cfg = LargeAugment()

    def images(n):
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device,
                             generator=generator)

    raw = images(args.augment_batch)
    augment_s = timed(lambda: large_batch(raw, cfg, generator), 5, 1, device)
    augment_rate = args.augment_batch / augment_s

    def feed(n):
        return large_batch(images(n), cfg, generator), torch.randint(
            0, 10, (n,), device=device, generator=generator).float()
    feed.sample_shape = (3, FRAME, FRAME)
    text = render_net(_VARIANT, NetOptions(batch_size=batch))
    net = Net(text, TRAIN, seed=0, feeds=feed).to(device)
    train_s = timed(net.forward_backward, iters, 0 if cpu else 3, device)
    train_rate = batch / train_s
    print(f"Large All-CNN on {device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads)")
    print(f"  augmentation (126 frame, batch {args.augment_batch}): {augment_rate:10.1f} images/s")
    print(f"  training, augmentation included (batch {batch}, forward + backward): "
          f"{train_rate:10.2f} images/s")
    days = SCHEDULE_IMAGES / train_rate / 86400
    print(f"the paper's schedule, {SCHEDULE_IMAGES:,} images: {days:,.1f} days at this rate; "
          f"augmentation alone {SCHEDULE_IMAGES / augment_rate / 3600:,.1f} hours")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "large_pipeline.py"))
