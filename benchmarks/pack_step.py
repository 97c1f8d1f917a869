"""K All-CNN-C runs as one packed net (runtime/pack.py) against K solo nets, side by side: the
seconds of one training forward+backward of all K members each way, and of one evaluation of
the test images (harness/evaluation.py against the host path `Run.evaluate` takes).

    python benchmarks/pack_step.py [--packs 1,2,4] [--batch 128] [--test 2000] [--device cuda]

Eager mode, fp32, synthetic data. On the CPU, use small numbers (--batch 16 --test 200).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.timing import timed  # noqa: E402
from generator.render import NetOptions, render_net  # noqa: E402
from generator.variants import get_variant  # noqa: E402
from harness.evaluation import Evaluator  # noqa: E402
from harness.metrics import class_metrics  # noqa: E402
from harness.net_transforms import input_net  # noqa: E402
from runtime import TEST, TRAIN  # noqa: E402
from runtime.net import Net  # noqa: E402
from runtime.pack import pack_inputs, pack_net, packed_net  # noqa: E402
from runtime.prototxt import read_net  # noqa: E402


def host_evaluation(net: Net, batches) -> dict:
    """Run.evaluate's path: scores to one tensor, then class_metrics (host reads inside)."""
    scores, labels, loss = [], [], 0.0
    for x, y in batches:
        out = net.blob_values(data=x, label=y)
        loss += out["loss"].float() * len(x)
        scores.append(out["global_pool"].float().reshape(len(x), -1))
        labels.append(y)
    return {"test_loss": float(loss), **class_metrics(torch.cat(scores), torch.cat(labels))}


@torch.no_grad()
def evaluation_seconds(param, members: int, images, labels, batch: int, device, iters: int):
    solos = [Net(param, TEST, seed=k).to(device) for k in range(members)]
    pack = Net(pack_net(param, members), TEST).to(device)
    batches = [(images[i:i + batch], labels[i:i + batch]) for i in range(0, len(images), batch)]
    evaluator = Evaluator(pack, compile=False)
    solo_time = timed(lambda: [host_evaluation(s, batches) for s in solos], iters, 1, device)
    pack_time = timed(lambda: evaluator(batches), iters, 1, device)
    return solo_time, pack_time


def training_seconds(param, members: int, images, labels, device, iters: int):
    seeds = list(range(members))
    solos = [Net(param, TRAIN, seed=s).to(device) for s in seeds]
    pack = packed_net(param, TRAIN, seeds).to(device)
    feeds = [{"data": images, "label": labels} for _ in seeds]
    inputs = pack_inputs(pack, feeds)

    def solo_steps():
        for solo, feed in zip(solos, feeds):
            solo.loss(**feed).backward()

    return (timed(solo_steps, iters, 1, device),
            timed(lambda: pack.loss(**inputs).backward(), iters, 1, device))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", default="1,2,4")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--test", type=int, default=2000, help="test images per evaluation")
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    text = render_net(get_variant("all-cnn-c"), NetOptions(batch_size=args.batch))
    train_param = input_net(read_net(text), TRAIN, args.batch, (3, 32, 32))
    test_param = input_net(read_net(text), TEST, args.eval_batch, (3, 32, 32))
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    test_images = torch.randn(args.test, 3, 32, 32, generator=g).to(device)
    test_labels = torch.randint(0, 10, (args.test,), generator=g).to(device)
    print(f"{device.type.upper()} fp32 eager, All-CNN-C, batch {args.batch}, "
          f"{args.test} test images in batches of {args.eval_batch}")
    for members in map(int, args.packs.split(",")):
        solo, pack = training_seconds(train_param, members, images, labels, device, args.iters)
        print(f"K={members}: train fwd+bwd of all members: {members} solo nets {solo:.3f} s, "
              f"pack {pack:.3f} s, pack speed-up {solo / pack:.2f}x")
        solo, pack = evaluation_seconds(test_param, members, test_images, test_labels,
                                        args.eval_batch, device, args.iters)
        print(f"K={members}: evaluation: {members} x host path {solo:.3f} s, device path on "
              f"the pack {pack:.3f} s, speed-up {solo / pack:.2f}x")


if __name__ == "__main__":
    main()
