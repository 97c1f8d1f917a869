"""export-onnx: a Caffe deploy net and its weights, or a replicate run folder, as an ONNX model
(`runtime.export.to_onnx`; this command reads run folders and the registries for it).

    export-onnx --prototxt DEPLOY --weights W.caffemodel -o model.onnx
    export-onnx --run RUN_DIR -o model.onnx [--with-preprocessing]
"""
from __future__ import annotations

import sys
import time
import warnings
from importlib.util import find_spec
from pathlib import Path

from generator.variants import get_variant
from harness.net_source import NetSource, net_source
from runtime.cli_support import Parser, add_version, comma_list, name, number, run_command
from runtime.data.datasets import IMAGE_FOLDER, dataset_names
from runtime.errors import AllconvError
from runtime.files import check_writable, suffix_option
from runtime.limits import INT_MAX
from runtime.proto import pb


def build_parser() -> Parser:
    from runtime.export import DEFAULT_OPSET, MIN_OPSET
    p = Parser(prog="export-onnx",
               description="Export a Caffe deploy net with its weights, or a replicate run "
                           "folder, as an ONNX model checked against the runtime with "
                           "onnxruntime before it is written.")
    add_version(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prototxt", metavar="DEPLOY", help="a deploy prototxt (Input layer)")
    source.add_argument("--run", metavar="RUN_DIR", type=Path,
                        help="a replicate run folder: its deploy.prototxt, last snapshot and "
                             "whitening")
    p.add_argument("--weights", metavar="W.caffemodel",
                   help="the weights (with --prototxt, unless no layer learns; with --run, "
                        "instead of the last snapshot)")
    p.add_argument("-o", "--output", "--out", metavar="MODEL.onnx", required=True,
                   type=suffix_option(".onnx", "the ONNX model"),
                   help="the ONNX file to write (weights inside it, up to protobuf's 2 GB)")
    p.add_argument("--outputs", metavar="BLOB[,BLOB]", type=comma_list(name("blob name")),
                   help="the blobs the model returns (default: the net's outputs but for Input "
                        "tops no layer reads, 'prob' in the generated nets; 'global_pool' gives "
                        "their N x C scores before the softmax)")
    p.add_argument("--static-batch", type=number(int, high=INT_MAX,
                                                 why=" (Caffe's blob dimensions are ints)"),
                   metavar="N",
                   help="fix the batch size (default: a dynamic batch dimension N; the "
                        "prototxt's, with a warning, for a net exact only there)")
    p.add_argument("--opset", type=number(int), default=DEFAULT_OPSET, metavar="N",
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
    names = dataset_names(whitening=True)
    g.add_argument("--dataset", choices=names,
                   help=f"with --prototxt: the dataset of --data, whose whitening and class names "
                        f"the model gets (default {names[0]}); with --run the run's own, and no "
                        "other")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of the CIFAR files (with --with-preprocessing)")
    p.add_argument("--skip-check", action="store_true",
                   help="write without checking against the runtime with onnxruntime")
    return p


def check_options_do_something(args) -> None:
    """An option that would change nothing beside the others is an error saying so (as
    gen-prototxt's): --data and --dataset of --prototxt name the preprocessing's dataset and
    the class names, --run brings its own; --no-verify checks files only a whitening reads."""
    if args.run is not None and args.data is not None and not args.with_preprocessing:
        raise AllconvError("--data does nothing with --run without --with-preprocessing (the "
                           "run names its own classes; --data only rebuilds its whitening)")
    if args.prototxt is not None and args.dataset is not None and not (
            args.with_preprocessing or args.data):
        raise AllconvError(f"--dataset {args.dataset} does nothing without "
                           "--with-preprocessing or --data (it names their dataset)")
    if not args.verify and not args.with_preprocessing:
        raise AllconvError("--no-verify does nothing without --with-preprocessing (no CIFAR "
                           "file is read)")


def load_deploy_net(prototxt, weights):
    """The TEST-phase net with ``weights``; every layer with learnable blobs must find its own.
    A net without Input layers is refused before any Data layer opens its source."""
    from runtime.export import DEPLOY
    from runtime.filter_net import filter_net
    from runtime.net import trained_net
    from runtime.prototxt import read_net
    param = read_net(prototxt)
    param.state.phase = pb.TEST
    layers = filter_net(param).layer
    if not any(layer.type == "Input" for layer in layers):
        sources = ", ".join(f"{layer.name!r} ({layer.type})" for layer in layers
                            if not layer.bottom and layer.top)
        raise AllconvError(f"{prototxt}: the net has no Input layer (its data comes from "
                           f"{sources or 'no layer'}): {DEPLOY}")
    return trained_net(param, weights)


def check_class_count(net, outputs, dataset: str, count: int) -> None:
    """The class names given must name the model's scores: one of its outputs (``--outputs``,
    or the net's) has ``count`` channels."""
    from runtime.export.model import default_outputs
    shapes = {name: tuple(net.blobs[name].shape) for name in outputs or default_outputs(net)
              if name in net.blobs}
    if not any(len(shape) >= 2 and shape[1] == count for shape in shapes.values()):
        found = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise AllconvError(f"{dataset} has {count} classes, and no output of the model has "
                           f"{count} channels ({found}): give the net's own --dataset")


def input_preparation(source: NetSource, net) -> str:
    """How an image becomes the model's input, as the harness trained the net on the source's
    dataset (a model without the preprocessing in its graph says so in
    ``allconv.input_prepared``)."""
    from runtime.data import imagenet
    from runtime.data.preprocess import GCN_SCALE
    pipeline = source.pipeline(net)
    if pipeline.layout == IMAGE_FOLDER:
        return (f"Caffe's ImageNet test transform: the image resized to {imagenet.RESIZE}x"
                f"{imagenet.RESIZE}, BGR, its centre crop of the input's size less the mean "
                f"values {', '.join(map(str, imagenet.MEAN_VALUES))}")
    if pipeline.frames:
        return (f"a CIFAR image's pixels as (x - 128) / 128, centred in a {pipeline.input_size}x"
                f"{pipeline.input_size} frame of zeros (Large All-CNN's test input)")
    return (f"a {source.dataset.title} image whitened as the harness trains on it: GCN (scale "
            f"{GCN_SCALE:g}) and the ZCA fitted on the training set (export-onnx "
            "--with-preprocessing puts them in the graph, for uint8 images)")


def require_onnx() -> None:
    """onnx and onnxruntime are the ``[onnx]`` extra; without them, say how to get them."""
    missing = [name for name in ("onnx", "onnxruntime") if find_spec(name) is None]
    if missing:
        raise AllconvError(f"export-onnx needs {' and '.join(missing)}: pip install -e "
                           "\".[onnx]\" in the allconv checkout (or pip install onnx onnxruntime)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_onnx()
    args.output = Path(args.output)
    check_options_do_something(args)
    check_writable(args.output)
    from runtime.export import check_image_net, to_onnx
    from runtime.data.preprocess import prepared_whitening
    metadata, whitening, classes, warning = {}, None, None, None
    source = net_source(args, weights_required=False)
    net = load_deploy_net(source.prototxt, source.weights)
    dataset, run = source.dataset, source.run
    if run is not None:
        weights = Path(source.weights)
        warning = run.snapshot_warning(weights)     # said once the model is written
        variant, classes = run.variant, run.classes
        metadata = {"allconv.provenance": run.export_provenance(weights)}
        if args.with_preprocessing:
            check_image_net(net)
            whitening = run.whitening(args.data, args.verify)
    else:
        variant = _variant(net.name)
        if args.with_preprocessing:
            check_image_net(net)
        if args.with_preprocessing or args.data:
            classes = dataset.class_names
            check_class_count(net, args.outputs, dataset.name, len(classes))
        if args.with_preprocessing:
            whitening = prepared_whitening(dataset.name, args.data, verify=args.verify)
        elif args.data:
            dataset.check_files(args.data, "--data")
    if not args.with_preprocessing and (run is not None or args.data):
        metadata["allconv.input_prepared"] = input_preparation(source, net)
    start = time.perf_counter()
    worst = to_onnx(net, args.output, outputs=args.outputs, static_batch=args.static_batch,
                    opset=args.opset,
                    fp16=args.fp16, whitening=whitening, variant=variant, classes=classes,
                    metadata=metadata, check_model=not args.skip_check)
    checked = ("not checked (--skip-check)" if not worst else "onnxruntime vs runtime, max |diff|: "
               + ", ".join(f"{label} {value:.2e}" for label, value in worst.items()))
    print(f"export-onnx: wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB, "
          f"exported in {time.perf_counter() - start:.1f} s); {checked}", file=sys.stderr)
    if warning is not None:
        warnings.warn(warning)
    return 0


def _variant(name: str) -> str | None:
    """The generator's variant a net of this name is (by the variant's name or title), if any."""
    try:
        return get_variant(name).name
    except AllconvError:
        return None


def entry_point() -> None:
    run_command(main, "export-onnx")


if __name__ == "__main__":
    entry_point()
