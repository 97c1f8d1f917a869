"""allconv-prep-cifar: write the paper's GCN+ZCA-whitened CIFAR as the Data layers' sources.

Like Caffe's convert_cifar_data, but with the preprocessing of the paper (pylearn2's
make_cifar10_gcn_whitened). The file names are the ones gen-prototxt's nets read by default.
"""
from __future__ import annotations

import sys
from pathlib import Path

from runtime.cli_support import Parser, run_cli
from runtime.data.preprocess import prepared_cifar, save_npz_source


def build_parser() -> Parser:
    p = Parser(prog="allconv-prep-cifar", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10")
    p.add_argument("--data", metavar="DIR", help="folder holding the official release (default: "
                                                  "the XDG cache, downloaded when online)")
    p.add_argument("--out", metavar="DIR", default="data",
                   help="where to write <dataset>_gcn_zca_{train,test}.npz (default data/)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepared = prepared_cifar(args.dataset, args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, images, labels in (("train", prepared.train_images, prepared.train_labels),
                                  ("test", prepared.test_images, prepared.test_labels)):
        path = out / f"{args.dataset}_gcn_zca_{split}.npz"
        save_npz_source(path, images, labels)
        print(f"wrote {path}: {len(images):,} images {tuple(images.shape[1:])}")
    return 0


def entry_point() -> None:
    sys.exit(run_cli(main, "allconv-prep-cifar"))


if __name__ == "__main__":
    entry_point()
