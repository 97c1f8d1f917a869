"""allconv-prep-cifar: write the paper's GCN+ZCA-whitened CIFAR as the Data layers' sources.

Like Caffe's convert_cifar_data, but with the preprocessing of the paper (pylearn2's
make_cifar10_gcn_whitened). The file names are the ones gen-prototxt's nets read by default.
"""
from __future__ import annotations

from pathlib import Path

from runtime.cli_support import Parser, add_version, run_command
from runtime.data.datasets import dataset_names
from runtime.data.lmdb_file import check_lmdb_target, lmdb_package, write_datum_lmdb
from runtime.data.preprocess import STAGES, prepared_cifar
from runtime.data.source import save_npz_source
from runtime.data.stage_bar import StageBar
from runtime.errors import AllconvError
from runtime.files import check_folder_writable

WRITING = "writing the sources"


def build_parser() -> Parser:
    p = Parser(prog="allconv-prep-cifar", description=__doc__.split("\n\n")[0])
    add_version(p)
    names = dataset_names(whitening=True)
    p.add_argument("--dataset", choices=names, default=names[0],
                   help=f"the dataset to whiten (default {names[0]})")
    p.add_argument("--data", metavar="DIR", help="folder holding the official release (default: "
                                                  "the XDG cache, downloaded when online)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of the CIFAR files (for hand-made data)")
    p.add_argument("--out", metavar="DIR", default="data",
                   help="where to write <dataset>_gcn_zca_{train,test}.npz (default data/; "
                        "made if missing, with the folders above it)")
    p.add_argument("--lmdb", action="store_true",
                   help="also write each split as an LMDB of Caffe Datum records, "
                        "<dataset>_gcn_zca_{train,test}_lmdb, for real Caffe's Data layer "
                        "(needs the lmdb package: pip install -e \".[lmdb]\")")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    check_folder_writable(out, "--out")          # said before the whitening, not after it
    if args.lmdb:                                # and so are these
        lmdb_package()
        for split in ("train", "test"):
            check_lmdb_target(out / f"{args.dataset}_gcn_zca_{split}_lmdb")
    written = []
    with StageBar(STAGES + (WRITING,)) as progress:
        prepared = prepared_cifar(args.dataset, args.data, verify=args.verify, stage=progress)
        progress(WRITING)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AllconvError(f"--out {out}: cannot make the folder "
                               f"({err.strerror or err})") from None
        for split, images, labels in (("train", prepared.train_images, prepared.train_labels),
                                      ("test", prepared.test_images, prepared.test_labels)):
            path = out / f"{args.dataset}_gcn_zca_{split}.npz"
            save_npz_source(path, images, labels)
            written.append(f"wrote {path}: {len(images):,} images {tuple(images.shape[1:])}")
            if args.lmdb:
                path = out / f"{args.dataset}_gcn_zca_{split}_lmdb"
                write_datum_lmdb(path, images, labels)
                written.append(f"wrote {path}: {len(images):,} Datum records")
    print("\n".join(written))
    return 0


def entry_point() -> None:
    run_command(main, "allconv-prep-cifar")


if __name__ == "__main__":
    entry_point()
