"""The acceptance numbers of export-onnx (issue 10), printed as a Markdown report.

    PYTHONPATH=. python tools/onnx_acceptance.py --data ../shared/data/cifar-10-batches-bin \
        [--weights all_c.caffemodel]

1. Per generated network, the largest onnxruntime difference with graph optimisations off and
   on: relative to real Caffe's values on the committed fixtures (tests/fixtures/net_*.npz, the
   fixture's weights and inputs), and absolute against the runtime (to_onnx's own check:
   the deploy net with its filler weights, seed 0, random inputs at batch 1 and 3).
2. All-CNN-C: export time (with and without the check) and file size.
3. --with-preprocessing on all 10,000 CIFAR-10 test images: onnxruntime on the raw uint8 images
   against the runtime on the harness's cached GCN+ZCA-whitened test set; argmax agreement and
   the largest probability difference. Without --weights the net has its filler weights.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from generator.render import NetOptions, render_net  # noqa: E402
from generator.variants import VARIANTS  # noqa: E402
from runtime.data import get_dataset, preprocess  # noqa: E402
from runtime.cli_support import run_cli  # noqa: E402
from runtime.errors import AllconvError  # noqa: E402
from runtime.export import build_model, check, to_onnx  # noqa: E402
from runtime.layers import NoFillerWarning  # noqa: E402
from runtime.net import Net  # noqa: E402
from runtime.proto import pb  # noqa: E402

warnings.simplefilter("ignore", NoFillerWarning)


def against_caffe(variant: str) -> dict[str, float]:
    import fixture_format as ff
    from test_caffe_fixtures import METAS, load, make_inputs, set_weights
    meta = METAS[f"net_{variant}"]
    net = Net(meta["prototxt"], pb.TEST, seed=0)
    set_weights(net, meta)
    with load(meta["name"]) as z:
        outputs = [k[4:] for k in ff.entry_keys(z.files, "fwd:") if k != "fwd:loss"]
        model, _ = build_model(net, outputs=outputs)
        inputs = make_inputs(meta)
        feeds = {i.name: inputs[i.name] for i in model.graph.input}
        return {label: max(ff.rel_error(v, z, f"fwd:{o}") for o, v in zip(
            outputs, check.session(model, level).run(outputs, feeds)))
            for label, level in check.LEVELS.items()}


def deploy_net(variant: str, weights=None) -> Net:
    return Net(render_net(VARIANTS[variant], NetOptions(deploy=True)), pb.TEST, weights=weights,
               seed=0)


def per_network(folder: Path) -> None:
    print("| network | vs Caffe, off (rel.) | vs Caffe, on (rel.) | vs runtime, off (abs.) "
          "| vs runtime, on (abs.) |\n|---|---|---|---|---|")
    networks = tqdm(VARIANTS, desc="networks", unit="net", leave=False)
    for variant in networks:
        caffe = against_caffe(variant)
        runtime = to_onnx(deploy_net(variant), folder / f"{variant}.onnx")
        networks.write(f"| {variant} | " + " | ".join(f"{d[k]:.2e}" for d in (caffe, runtime)
                                                      for k in check.LEVELS) + " |",
                       file=sys.stdout)
        sys.stdout.flush()


def all_c(folder: Path, weights) -> None:
    net = deploy_net("all-c", weights)
    for checked in (True, False):
        start = time.perf_counter()
        to_onnx(net, folder / "all-c.onnx", check_model=checked)
        print(f"All-CNN-C export {'with' if checked else 'without'} the onnxruntime check: "
              f"{time.perf_counter() - start:.2f} s, "
              f"{(folder / 'all-c.onnx').stat().st_size / 1e6:.2f} MB", flush=True)


def preprocessing(folder: Path, data: str, weights, batch: int = 500) -> None:
    prepared = preprocess.prepared_cifar("cifar10", data)
    images, _ = get_dataset("cifar10").load("test", data)
    net = deploy_net("all-c", weights)
    start = time.perf_counter()
    to_onnx(net, folder / "pre.onnx", whitening=prepared.whitening)
    print(f"All-CNN-C --with-preprocessing export: {time.perf_counter() - start:.2f} s, "
          f"{(folder / 'pre.onnx').stat().st_size / 1e6:.2f} MB", flush=True)
    session = check.session(folder / "pre.onnx", check.LEVELS["optimisations on"])
    agree, largest = 0, 0.0
    for i in tqdm(range(0, len(images), batch), desc="onnxruntime vs runtime", unit="batch",
                  file=sys.stderr):
        raw = np.ascontiguousarray(images[i:i + batch].transpose(0, 2, 3, 1))
        got = session.run(["prob"], {"image": raw})[0].reshape(len(raw), -1)
        want = check.run_runtime(net, {"data": prepared.test_images[i:i + batch]})["prob"]
        want = want.reshape(len(raw), -1)
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        largest = max(largest, float(np.abs(got - want).max()))
    print(f"--with-preprocessing on {len(images)} CIFAR-10 test images: argmax agrees on "
          f"{agree}/{len(images)}, largest probability difference {largest:.2e} "
          f"(weights: {weights or 'filler, seed 0'})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onnx_acceptance", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="the CIFAR-10 release folder")
    p.add_argument("--weights", help="All-CNN-C weights (default: its fillers, seed 0)")
    args = p.parse_args(argv)
    for path, what in ((args.data, "a folder"), (args.weights, "a file")):   # before the work
        if path and not (Path(path).is_dir() if what == "a folder" else Path(path).is_file()):
            raise AllconvError(f"{path}: not {what}")
    with tempfile.TemporaryDirectory() as tmp:
        per_network(Path(tmp))
        all_c(Path(tmp), args.weights)
        preprocessing(Path(tmp), args.data, args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "onnx_acceptance"))     # Ctrl-C, bad input: one line
