"""ImageNet loader images/s over a synthetic JPEG folder this script writes, stage by stage.

The folder holds ImageNet-like JPEGs (500x375, quality 90, smooth random content, about the
size of an average ILSVRC-2012 training file). Each stage of ``ImageNetFeed`` is timed on its
own, then the whole feed: reading the files, decoding, the 256x256 resize, and crop + mirror +
mean on the device. The slowest stage is named as the bottleneck, and the whole feed's rate is
set against what Table 6's schedule needs (450,000 iterations of batch 64).

    python benchmarks/imagenet_loader.py [--images 128] [--batch 64] [--threads 8] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.variants import get_variant  # noqa: E402
from runtime.cli_support import Parser, add_device_option, resolve_device, run_cli  # noqa: E402
from runtime.data import imagenet, jpeg  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402

_VARIANT = get_variant("imagenet")
SCHEDULE_IMAGES = int(_VARIANT.schedule.length) * _VARIANT.batch_size     # Table 6
PAPER_DAYS = 4                      # "about 4 days on a Titan GPU"


def write_folder(root: Path, images: int, classes: int = 4, seed: int = 0) -> None:
    """``images`` JPEGs of 500x375 under root/train/<wnid>/: upsampled noise, JPEG quality 90."""
    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = torch.from_numpy(rng.random((1, 3, 24, 32), dtype=np.float32))
        smooth = F.interpolate(coarse, size=(375, 500), mode="bicubic", align_corners=False)[0]
        noise = torch.from_numpy(rng.normal(0, 0.03, (3, 375, 500)).astype(np.float32))
        pixels = ((smooth + noise).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f"img_{i:05d}.JPEG", quality=90)


def rate(step, images: int, repeats: int) -> float:
    """Images per second of ``step`` (one call handles ``images``), best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return images / best


def stages(folder: imagenet.Folder, batch: int, threads: int, device: torch.device,
           repeats: int) -> dict[str, float]:
    """images/s of each stage on one batch, and of the whole feed."""
    index = torch.arange(batch) % len(folder)
    paths = [folder.paths[i] for i in index.tolist()]
    with ThreadPoolExecutor(threads) as pool:
        blobs = jpeg.read_files(paths, pool)
        decoded = jpeg.decode(blobs, paths, device, pool)
        resized = torch.stack([jpeg.resize(im) for im in decoded])
        def resize_all():
            return list(pool.map(jpeg.resize, decoded))
        mean = imagenet.mean_tensor(imagenet.MEAN_VALUES, device)
        offsets, flips = imagenet.draw_crops(batch, imagenet.RESIZE, True,
                                             torch.Generator(device).manual_seed(0))
        result = {
            "read files": rate(lambda: jpeg.read_files(paths, pool), batch, repeats),
            f"decode ({jpeg.decoder_name(device)})":
                rate(lambda: jpeg.decode(blobs, paths, device, pool), batch, repeats),
            "resize to 256x256": rate(resize_all, batch, repeats),
            "crop + mirror + mean": rate(lambda: imagenet.transformed(
                resized, offsets.to(device), flips.to(device), mean), batch, repeats),
        }
    feed = imagenet.ImageNetFeed(folder, train=True, device=device, threads=threads,
                                 mean=torch.tensor(imagenet.MEAN_VALUES, dtype=torch.float32))
    result["whole feed"] = rate(lambda: feed(batch), batch, repeats)
    return result


def build_parser() -> Parser:
    p = Parser(prog="imagenet_loader.py", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=128, help="JPEGs to write (default 128)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64, Table 6)")
    p.add_argument("--threads", type=int, default=8, help="reader/decoder threads (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    add_device_option(p, "where decoding and crops run (default cpu)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.images, args.batch, args.threads, args.repeats) <= 0:
        raise AllconvError("--images, --batch, --threads and --repeats must be positive")
    device = resolve_device(args.device or "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp), args.images)
        folder = imagenet.scan(tmp, "train")
        size = sum(p.stat().st_size for p in folder.paths) / len(folder)
        print(f"{len(folder)} synthetic JPEGs of 500x375, {size / 1024:.0f} KiB each; batch "
              f"{args.batch}, {args.threads} threads, device {device}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} intra-op threads")
        result = stages(folder, args.batch, args.threads, device, args.repeats)
    for name, value in result.items():
        print(f"  {name:<24} {value:9.1f} images/s")
    slowest = min((v, k) for k, v in result.items() if k != "whole feed")[1]
    whole = result["whole feed"]
    print(f"bottleneck: {slowest}")
    print(f"Table 6's {SCHEDULE_IMAGES:,} training images at {whole:.0f} images/s: "
          f"{SCHEDULE_IMAGES / whole / 86400:.1f} days of loading (the paper trained in about "
          f"{PAPER_DAYS} days, {SCHEDULE_IMAGES / (PAPER_DAYS * 86400):.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "imagenet_loader.py"))
