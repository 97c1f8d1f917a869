"""export-onnx: a Caffe deploy net and its weights, or a replicate run folder, as an ONNX model.

    export-onnx --prototxt DEPLOY --weights W.caffemodel -o model.onnx
    export-onnx --run RUN_DIR -o model.onnx [--with-preprocessing]
"""
from __future__ import annotations

import sys
import time
from importlib.util import find_spec
from pathlib import Path

from runtime.caffemodel import read_weights
from runtime.cli_support import Parser, run_cli
from runtime.errors import AllconvError
from runtime.proto import pb

DATASETS = ("cifar10", "cifar100")


def build_parser() -> Parser:
    from runtime.export import DEFAULT_OPSET, MIN_OPSET
    p = Parser(prog="export-onnx",
               description="Export a Caffe deploy net with its weights, or a replicate run "
                           "folder, as an ONNX model checked against the runtime with "
                           "onnxruntime before it is written.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prototxt", metavar="DEPLOY", help="a deploy prototxt (Input layer)")
    source.add_argument("--run", metavar="RUN_DIR", type=Path,
                        help="a replicate run folder: its deploy.prototxt, last snapshot and "
                             "whitening")
    p.add_argument("--weights", metavar="W.caffemodel",
                   help="the weights (required with --prototxt; with --run, instead of the "
                        "last snapshot)")
    p.add_argument("-o", "--output", metavar="MODEL.onnx", required=True, type=Path,
                   help="the ONNX file to write (weights inside it, up to protobuf's 2 GB)")
    p.add_argument("--static-batch", type=int, metavar="N",
                   help="fix the batch size (default: a dynamic batch dimension N)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, at least {MIN_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--fp16", action="store_true",
                   help="a float16 net, checked to 1e-2 x max(1, max|output|)")
    g = p.add_argument_group("preprocessing in the graph")
    g.add_argument("--with-preprocessing", action="store_true",
                   help="the model takes 'image', uint8 N x 32 x 32 x 3 RGB, and applies the "
                        "paper's GCN+ZCA fit on the training set before the net")
    g.add_argument("--data", metavar="DIR",
                   help="the CIFAR release whose training set gives the whitening (default: "
                        "the harness's cache; with --run, the run's whitening)")
    g.add_argument("--dataset", choices=DATASETS, default="cifar10",
                   help="with --prototxt: the dataset of --data (default cifar10)")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of the CIFAR files")
    p.add_argument("--skip-check", action="store_true",
                   help="write without checking against the runtime with onnxruntime")
    return p


def load_net(prototxt, weights):
    """The TEST-phase net with ``weights``; every layer with learnable blobs must find its own."""
    from runtime.net import Net
    net = Net(prototxt, pb.TEST, seed=0)
    stored = read_weights(weights)
    missing = [layer.name for layer in net.layers if len(layer.blobs) and layer.name not in stored]
    if missing:
        raise AllconvError(f"{weights}: no weights for layer(s) {', '.join(missing)} "
                           f"(the file has: {', '.join(stored) or 'none'})")
    net.copy_from(weights)
    return net


def require_onnx() -> None:
    """onnx and onnxruntime are the ``[onnx]`` extra; without them, say how to get them."""
    missing = [name for name in ("onnx", "onnxruntime") if find_spec(name) is None]
    if missing:
        raise AllconvError(f"export-onnx needs {' and '.join(missing)}: pip install -e "
                           "\".[onnx]\" in the allconv checkout (or pip install onnx onnxruntime)")


def main(argv: list[str] | None = None) -> int:
    require_onnx()
    args = build_parser().parse_args(argv)
    from runtime.export import check_image_net, to_onnx
    from runtime.data.cifar import class_names
    from runtime.data.preprocess import prepared_whitening
    metadata, whitening = {}, None
    if args.run is not None:
        from harness.run_files import read_run_folder
        run = read_run_folder(args.run, args.weights)
        net = load_net(run.deploy, run.weights)
        metadata = {"allconv.classes": run.classes(),
                    "allconv.provenance": run.export_provenance()}
        if args.with_preprocessing:
            check_image_net(net)
            whitening = run.whitening(args.data, args.verify)
    else:
        if args.weights is None:
            raise AllconvError("--prototxt needs --weights W.caffemodel (the trained weights)")
        net = load_net(args.prototxt, args.weights)
        if args.with_preprocessing:
            check_image_net(net)
            whitening = prepared_whitening(args.dataset, args.data, verify=args.verify)
        if args.with_preprocessing or args.data:
            metadata = {"allconv.classes": list(class_names(args.dataset))}
    start = time.perf_counter()
    worst = to_onnx(net, args.output, static_batch=args.static_batch, opset=args.opset,
                    fp16=args.fp16, whitening=whitening, metadata=metadata,
                    check_model=not args.skip_check)
    checked = ("not checked (--skip-check)" if not worst else "onnxruntime vs runtime, max |diff|: "
               + ", ".join(f"{label} {value:.2e}" for label, value in worst.items()))
    print(f"export-onnx: wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - start:.1f} s); {checked}", file=sys.stderr)
    return 0


def entry_point() -> None:
    sys.exit(run_cli(main, "export-onnx"))


if __name__ == "__main__":
    entry_point()
