"""`visualize`: reconstructions of one unit (unit), of every filter without an image (filters),
and the dataset images that drive each filter hardest (top-patches)."""
from __future__ import annotations

import math
import os
import sys
import textwrap
import warnings

import numpy as np
import torch

from harness.net_source import net_source
from runtime.cli_support import (Parser, add_device_option, add_version, comma_list,
                                  index_ranges, name, number, run_command)
from runtime.data import imagenet
from runtime.data.datasets import dataset_names
from runtime.data.source import is_npz_source
from runtime.errors import AllconvError
from runtime.files import atomic_writer, check_writable, suffix_option
from runtime.reconstruction import (GATED_BY_INPUT, METHODS, activations, backward_ignores_input,
                                    check_blob, choose_unit, input_blob, parse_unit,
                                    receptive_windows, reconstruct, switched_net, top_units,
                                    unit_text)
from visualize.figures import SCALING, blank, grid_figure, shown, unit_figure
from visualize.inputs import (check_sample, device_tensor, load_images, load_net, load_picture,
                              rescaled)

FILTER_BATCH = 64


def chosen_filters(filters: list[int] | None, channels: int, default: int) -> list[int]:
    """The --filters given (each checked to be a channel of the blob), or the first
    ``default`` channels."""
    if filters is None:
        return list(range(min(default, channels)))
    bad = [f for f in filters if f >= channels]
    if bad:
        raise AllconvError(f"--filters: {bad[0]} is not a channel of the blob: it has channels "
                           f"0-{channels - 1}")
    return filters


def spatial_blob(net, blob: str) -> tuple[int, ...]:
    """The shape of ``blob``, which must exist and be 4-d (N, C, H, W)."""
    check_blob(net, blob)
    shape = net.blobs[blob].shape
    if len(shape) != 4:
        raise AllconvError(f"blob {blob!r} has shape {shape}; this needs a 4-d (N, C, H, W) blob")
    return shape


def crop(array: np.ndarray, window, unit_yx) -> np.ndarray:
    """(C, H, W) cut to the receptive field of the unit at ``unit_yx`` (clipped to the image);
    the whole array when the blob's units see the whole input."""
    if window is None:
        return array
    (top, bottom), (left, right) = (w.span(i, n) for w, i, n in
                                    zip(window, unit_yx, array.shape[1:]))
    return array[:, top:bottom, left:right]


def unit(args) -> None:
    """`visualize unit`: one unit's reconstructions by each method, with and without switches."""
    net = _net(args)
    source = args.source
    check_blob(net, args.blob)
    wanted = parse_unit(args.unit) if args.unit else None
    picture = load_picture(args, net, source)
    x = device_tensor(picture.whitened[None], net)
    activation = activations(net, args.blob, x)[0]
    chosen = choose_unit(activation, wanted, args.blob)
    named = unit_text(chosen)
    value = float(activation[chosen])
    if not math.isfinite(value):
        raise AllconvError(f"blob {args.blob!r} unit {named} is {value} for this input: "
                           f"non-finite weights in {source.weights}, or an overflow")
    nets = [("net as given", net, "", value)]
    notes = []
    if args.switches:
        switched, notes = switched_net(net)
        nets.append(("with switches", switched, "_switches",
                     float(activations(switched, args.blob, x)[0][chosen])))
    rows, arrays, grey = [], {}, []
    for label, model, suffix, at in nets:
        signals = {m: reconstruct(model, args.blob, x, m, [chosen]).cpu().numpy()
                   for m in args.methods}
        check_reconstructions(signals, f"blob {args.blob!r} unit {named}"
                              + (suffix and f" ({label})"))
        rows.append((f"{label}\nactivation {at:.3g}", {m: s[0] for m, s in signals.items()}))
        arrays.update((m + suffix, s) for m, s in signals.items())
        empty = [m for m, s in signals.items() if blank(s)]
        if empty:
            grey.append(grey_note(label, empty, at))
    print(f"blob {args.blob} unit {named}: activation {value:.6g}")
    for note in notes:
        print(f"switches: {note}")
    for note in grey:
        print(f"visualize unit: note: {note}", file=sys.stderr)
    title = f"{net.name}: blob {args.blob}, unit {named} (activation {value:.3g})"
    if notes:
        title += "\nswitches: " + "; ".join(notes)
    title += "".join(f"\n{textwrap.fill(note, 100)}" for note in grey)
    unit_figure(args.out, picture, rows, title, args.source.dataset.colours)
    _write_npz(args.npz, arrays)


def grey_note(label: str, empty: list[str], at: float) -> str:
    """Why the methods ``empty`` drew nothing for a unit of value ``at``: the rules that read a
    ReLU's input pass nothing back through the unit's own ReLU when ``at`` is not positive; the
    others (deconvnet) only when no signal reaches the input through the layers below."""
    gated = [m for m in empty if m in GATED_BY_INPUT] if at <= 0 else []
    rest = [m for m in empty if m not in gated]
    reasons = [(gated, f"the unit's value there is {at:.3g} and "
                       f"{'this rule passes' if len(gated) == 1 else 'these rules pass'} nothing "
                       "back through a ReLU whose input is not positive"),
               (rest, "no signal reaches the input through the layers below (a ReLU "
                      "blocks each path by the rule, or the weights are zero or underflow)")]
    reasons = [(methods, why) for methods, why in reasons if methods]
    note = f"{label}: {' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} 0 everywhere " \
           "(grey)"
    if len(reasons) == 1:
        return f"{note}, since {reasons[0][1]}"
    return note + "".join(f"; {' and '.join(methods)} since {why}" for methods, why in reasons)


def check_reconstructions(signals: dict[str, np.ndarray], what: str) -> None:
    """Refuse reconstructions with NaN or infinite values (nothing is drawn or written): a
    backward of Caffe's formula that divides by zero or overflows on this input."""
    bad = [f"{m} ({np.count_nonzero(~np.isfinite(s)):,} of {s.size:,} values)"
           for m, s in signals.items() if not np.isfinite(s).all()]
    if bad:
        raise AllconvError(f"{what}: the reconstruction by {', '.join(bad)} is not finite: a "
                           "layer's backward divides by zero or overflows on this input (Caffe's "
                           "formulas, e.g. Eltwise PROD without stable_prod_grad at a zero, or "
                           "Power's fractional power at 0); nothing written")


def filters(args) -> None:
    """`visualize filters`: each filter's deconvnet reconstruction from the blob alone."""
    net = _net(args)
    shape = spatial_blob(net, args.blob)
    needs_image = [layer for layer in net.layers_below([args.blob])
                   if not backward_ignores_input(layer)]
    if needs_image:
        names = ", ".join(f"{layer.name} ({layer.type_name})" for layer in needs_image)
        why = (" (a max-pool's on its switches)"
               if any(layer.type_name == "Pooling" for layer in needs_image) else "")
        raise AllconvError(f"the deconvnet reconstruction of {args.blob!r} passes {names}, "
                           f"whose backward depends on the image{why}; use `unit` with an image")
    chosen = chosen_filters(args.filters, shape[1], shape[1])
    centre = (shape[2] // 2, shape[3] // 2)
    window = receptive_windows(net)[args.blob]
    sample = net.blobs[input_blob(net)].shape[1:]
    signals = []
    for start in range(0, len(chosen), FILTER_BATCH):
        batch = chosen[start:start + FILTER_BATCH]
        zeros = torch.zeros((len(batch),) + tuple(sample), device=net.device)
        signals.append(reconstruct(net, args.blob, zeros, "deconvnet",
                                   [(f,) + centre for f in batch]).cpu().numpy())
    signals = np.concatenate(signals)
    check_reconstructions({"deconvnet": signals}, f"blob {args.blob!r}")
    colours = args.source.dataset.colours
    cells = [(str(f), [shown(crop(s, window, centre), colours)]) for f, s in zip(chosen, signals)]
    size = "x".join(map(str, crop(signals[0], window, centre).shape[1:]))
    grid_figure(args.out, cells, f"{net.name}: deconvnet reconstructions of blob {args.blob}, "
                f"unit {centre} of each filter, no image (cropped to its {size} receptive "
                f"field)\n{SCALING}", columns=min(16, len(cells)))
    print(f"{len(chosen)} filters of {args.blob}, centre unit {centre}, field {size}")
    _write_npz(args.npz, {"deconvnet": signals, "filters": np.array(chosen)})


def top_patches(args) -> None:
    """`visualize top-patches`: each filter's strongest images, cropped to the unit's
    receptive field, beside their reconstructions."""
    net = _net(args)
    shape = spatial_blob(net, args.blob)
    chosen = chosen_filters(args.filters, shape[1], 16)
    split = args.split or "test"
    data = load_images(args, net, args.source, split)
    images_of = f"images of {args.data}" if is_npz_source(args.data) else f"{split} images"
    check_sample(net, data.whitened.shape[1:], f"the {images_of}")
    top = top_units(net, args.blob, data.whitened, chosen, args.k, args.batch_size)
    window = receptive_windows(net)[args.blob]
    colours = args.source.dataset.colours
    cells, signals = [], {m: [] for m in args.methods}
    for f, values, images, positions in zip(chosen, *top):
        x = device_tensor(data.whitened[images.numpy()], net)
        units = [(f,) + tuple(int(p) for p in yx) for yx in positions]
        found = {m: reconstruct(net, args.blob, x, m, units).cpu().numpy() for m in args.methods}
        check_reconstructions(found, f"blob {args.blob!r} filter {f}")
        for m, s in found.items():
            signals[m].append(s)
        for j, (i, yx) in enumerate(zip(images.tolist(), positions.tolist())):
            pixels = (np.moveaxis(crop(data.raw[i], window, yx), 0, -1) / 255.0
                      if data.raw is not None
                      else rescaled(crop(data.whitened[i], window, yx), colours))
            cells.append((f"filter {f}: #{i}" if j == 0 else f"#{i}", [pixels] + [
                shown(crop(s[j], window, yx), colours) for s in found.values()]))
        print(f"filter {f}: images {images.tolist()}, activations "
              f"{', '.join(f'{v:.3g}' for v in values.tolist())}")
    methods = " and ".join(args.methods) + (" reconstructions" if len(args.methods) > 1
                                            else " reconstruction")
    shown_as = "" if data.raw is not None else " (patches: the net's input, rescaled)"
    grid_figure(args.out, cells, f"{net.name}: the {args.k} {images_of} with the highest "
                f"activation of each filter of {args.blob}, cropped to the unit's receptive field,"
                f" beside its {methods}{shown_as}\n{SCALING}", columns=args.k)
    _write_npz(args.npz, {**{m: np.stack(s) for m, s in signals.items()},
                          "filters": np.array(chosen), "values": top.values.numpy(),
                          "images": top.images.numpy(), "positions": top.positions.numpy()})


def _net(args):
    """The net of --prototxt/--weights or --run on --device (``args.source``, read by main);
    its input blob must hold images, N×C×H×W."""
    net = load_net(args.source, args.device)
    blob = input_blob(net)
    if len(net.blobs[blob].shape) != 4:
        raise AllconvError(f"the net's input blob {blob!r} has shape {net.blobs[blob].shape}; "
                           "visualize draws images and needs an N×C×H×W input")
    return net


def _write_npz(path, arrays: dict) -> None:
    """The raw arrays to ``path`` (checked writable before anything ran), atomically."""
    if path is None:
        return
    with atomic_writer(path) as handle:
        np.savez(handle, **arrays)
    print(f"wrote {path}: {', '.join(arrays)}")


def check_outputs(args) -> None:
    """Every output path can be written, before anything is computed or written."""
    check_writable(args.out)
    if args.npz is not None:
        if os.path.realpath(args.npz) == os.path.realpath(args.out):
            raise AllconvError(f"--npz and -o name the same file {args.out}")
        check_writable(args.npz)


def check_options_do_something(args, source) -> None:
    """An option that would change nothing in this command is an error saying so, as in
    gen-prototxt: --dataset and --data say how images are prepared (--dataset also the channel
    order the pictures are drawn in)."""
    if args.command == "unit" and args.input is not None and args.data is not None:
        raise AllconvError("--data does nothing with --input (the array is used as it is; "
                           "--dataset says only the channel order it is drawn in)")
    if is_npz_source(getattr(args, "data", None)) and getattr(args, "split", None):
        raise AllconvError(f"--split does nothing with --data {args.data} (a .npz source is "
                           "used as it is)")
    if not getattr(args, "verify", True) and (args.data is None or is_npz_source(args.data)):
        raise AllconvError("--no-verify does nothing here: no CIFAR file is read (it skips "
                           "the md5 check of a --data DIR)")
    if args.command == "unit" and args.image is not None and args.data is not None \
            and not source.dataset.whitening:
        raise AllconvError(f"--data does nothing with --image for {source.dataset.name} (the "
                           "image is resized and cropped, less the mean values)")


def build_parser() -> Parser:
    p = Parser(prog="visualize", description="Backprop, deconvnet and guided backpropagation "
               "pictures (Springenberg et al. 2015, Section 3.4) for any net the runtime loads.")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    u = sub.add_parser(
        "unit", help="one unit's reconstruction by each method (Figures 4-6)",
        description="Reconstruct one unit of a blob back to the input, from one input, by "
                    "each method (Figures 4-6); --switches adds the net whose stride-2 convs "
                    "are stride 1, then their ReLU, then max-pooling (Figure 5).")
    f = sub.add_parser(
        "filters", help="deconvnet reconstruction of each filter's centre unit, without an "
                        "image (Figure 2)",
        description="For each filter of a blob, the deconvnet reconstruction of its centre "
                    "unit with no image, cropped to its receptive field (Figure 2).")
    t = sub.add_parser(
        "top-patches", help="the k images that drive each filter hardest, beside their "
                            "guided reconstructions (Figure 3)",
        description="One pass over a dataset finds, for each filter of a blob, the k images "
                    "whose strongest unit of it is highest; each is shown cropped to that "
                    "unit's receptive field beside its reconstruction (Figure 3).")
    for s in (u, f, t):
        g = s.add_argument_group("net")
        g.add_argument("--prototxt", help="net prototxt (an Input layer, or Data layers)")
        g.add_argument("--weights", help=".caffemodel for --prototxt; with --run, instead of "
                                         "its newest checkpoint")
        g.add_argument("--run", help="a replicate run folder: its net and newest checkpoint")
        if s is u:
            g.add_argument("--dataset", choices=dataset_names(),
                           help="with --prototxt, how images are prepared: cifar10/cifar100 "
                                "the paper's GCN+ZCA (default cifar10), imagenet Caffe's ImageNet "
                                "test transform (BGR, drawn as RGB); --run knows its own and "
                                "takes no other")
        elif s is f:       # filters reads no image: the dataset says the channel order
            g.add_argument("--dataset", choices=dataset_names(),
                           help="with --prototxt, the dataset the net takes, which here says "
                                "only its channel order (imagenet: BGR, drawn as RGB; default "
                                "cifar10); --run knows its own and takes no other")
        elif s is t:       # an ImageNet tree is not scanned: its nets take --data X.npz
            g.add_argument("--dataset", choices=dataset_names(),
                           help="with --prototxt, the CIFAR release --data holds (default "
                                "cifar10), or with --data X.npz the dataset its net takes, "
                                "which says only its channel order (imagenet: BGR, drawn as "
                                "RGB); --run knows its own and takes no other")
        add_device_option(g, "cpu, cuda or cuda:N (default: cuda when available)")
        s.add_argument("--blob", required=True, help="a blob as Caffe names it (a layer's top)")
        s.add_argument("-o", "--out", "--output", required=True,
                       type=suffix_option(".png", "the figure"), help="the figure, .png")
        s.add_argument("--npz", "--npy", metavar="OUT.npz",
                       type=suffix_option(".npz", "the arrays file"),
                       help="also write the raw reconstructions (--npy: its former name)")
    u.add_argument("--unit", help="C,Y,X; or C (its strongest position); default: the "
                                  "blob's strongest unit")
    u.add_argument("--switches", action="store_true",
                   help="add a row for the net whose stride-2 convs are stride 1, then their "
                        "ReLU, then a max-pool (the paper's ConvPool order)")
    methods = comma_list(name("method", METHODS))
    u.add_argument("--methods", type=methods, default=list(METHODS), metavar="M[,M]",
                   help=f"the reconstructions to draw, in this order ({', '.join(METHODS)}; "
                        "default all three)")
    u.add_argument("--input", help="X.npy, one input of the input blob's (C, H, W), or "
                   "(1, C, H, W), used as given")
    u.add_argument("--image", help="a PNG/JPG prepared as the net's data: for a CIFAR net "
                                   "whitened with the run's GCN+ZCA, and it must have the net's "
                                   "input size (another is refused); with --dataset imagenet any "
                                   f"size, resized to {imagenet.RESIZE}x{imagenet.RESIZE}, BGR, "
                                   f"the centre {imagenet.CROP}x{imagenet.CROP} (the net's input) "
                                   "less the mean values "
                                   f"{', '.join(map(str, imagenet.MEAN_VALUES))}")
    u.add_argument("--cifar-index", type=number(int, "non-negative"), metavar="I",
                   help="test image I of --data")
    for s in (u, t):
        s.add_argument("--data", help="CIFAR folder (whitened as the harness does; default: "
                                      "with --run its whitened copy in the cache) or a .npz "
                                      "Data-layer source (used as it is)")
        s.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip the md5 check of --data's CIFAR files (for hand-made data)")
    f.add_argument("--filters", type=index_ranges, help="0-15, 3,7 or a mix (default: all)")
    t.add_argument("--filters", type=index_ranges,
                   help="0-15, 3,7 or a mix (default: the first 16)")
    t.add_argument("--methods", type=methods, default=["guided"], metavar="M[,M]",
                   help=f"the reconstructions beside each patch ({', '.join(METHODS)}; "
                        "default guided)")
    t.add_argument("--k", type=number(int), default=10, help="images per filter (default 10)")
    t.add_argument("--split", choices=("test", "train"),
                   help="the CIFAR split to search (default test)")
    t.add_argument("--batch-size", type=number(int), default=500,
                   help="images per forward pass (default 500)")
    u.set_defaults(action=unit)
    f.set_defaults(action=filters)
    t.set_defaults(action=top_patches)
    return p




def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_outputs(args)
    args.source = net_source(args)
    check_options_do_something(args, args.source)
    # the run's files are read (and a bad one refused) before the figure is drawn; the
    # warning is said once it is, not before an error
    run = args.source.run
    warning = run.snapshot_warning(args.source.weights) if run is not None else None
    args.action(args)
    print(f"wrote {args.out}")
    if warning is not None:
        warnings.warn(warning)
    return 0


def entry_point() -> None:
    run_command(main, "visualize")


if __name__ == "__main__":
    entry_point()
