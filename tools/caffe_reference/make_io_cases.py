#!/usr/bin/env python3
"""Make tests/fixtures/pycaffe_io_cases.npz: what real pycaffe's ``caffe.io`` makes of the
seeded inputs of tests/fixtures/pycaffe_io/cases.py (the Transformer both ways, the BlobProto
and Datum conversions with their serialized bytes, oversample, and the class of each error).

Each Transformer case is ``transformer/<name>/``: ``settings`` (JSON: the blob shape and each
``set_*`` call), ``image``, ``preprocessed`` and ``deprocessed`` (or ``deprocess_error``, the
class of its error). Run under Debian's ``/usr/bin/python3`` with pycaffe
(``PYTHONPATH=$CAFFE/python:tools/caffe_reference /usr/bin/python3
tools/caffe_reference/make_io_cases.py tests/fixtures/pycaffe_io_cases.npz``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from pycaffe_import import import_caffe

CASES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pycaffe_io" / "cases.py"


def load_cases():
    spec = importlib.util.spec_from_file_location("pycaffe_io_cases", CASES)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    return cases


def error_class(call) -> str:
    try:
        call()
    except Exception as error:          # the class pycaffe raised is the fixture
        return type(error).__name__
    return "none"


def main(out: str) -> None:
    io, shared = import_caffe().io, load_cases()
    cases = {}
    for name, settings in shared.TRANSFORMERS.items():
        image = shared.image(settings)
        # (a copy: pycaffe's in-place steps write into a float32 image through its views)
        pre = shared.transformer(io, settings).preprocess("data", image.copy())
        cases[f"transformer/{name}/settings"] = np.array(json.dumps(settings))
        cases[f"transformer/{name}/image"] = image
        cases[f"transformer/{name}/preprocessed"] = pre
        try:
            cases[f"transformer/{name}/deprocessed"] = shared.transformer(
                io, settings).deprocess("data", pre[None])
        except Exception as error:      # a one-channel sample loses its axis to squeeze()
            cases[f"transformer/{name}/deprocess_error"] = np.array(type(error).__name__)
    arr = np.random.RandomState(40).uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32)
    cases["blob/array"] = arr
    cases["blob/bytes"] = np.frombuffer(io.array_to_blobproto(arr, arr * 2).SerializeToString(),
                                        np.uint8)
    cases["blob/diff_back"] = io.blobproto_to_array(io.array_to_blobproto(arr, arr * 2), True)
    cases["blob/vector_bytes"] = np.frombuffer(
        io.arraylist_to_blobprotovector_str([arr, arr[0]]), np.uint8)
    u8 = (np.arange(60) % 256).astype(np.uint8).reshape(3, 4, 5)
    cases["datum/uint8"] = u8
    cases["datum/uint8_bytes"] = np.frombuffer(io.array_to_datum(u8, 7).SerializeToString(),
                                               np.uint8)
    cases["datum/float_bytes"] = np.frombuffer(
        io.array_to_datum(arr[0].astype(np.float64)).SerializeToString(), np.uint8)
    crops_of = [np.random.RandomState(4).rand(13, 12, 3).astype(np.float32),
                np.random.RandomState(7).rand(13, 12, 3).astype(np.float32)]
    cases["oversample/images"] = np.stack(crops_of)
    cases["oversample/crops"] = io.oversample(crops_of, (8, 7))
    cases["oversample/past_edge"] = io.oversample(*shared.past_edge())
    from caffe.proto import caffe_pb2
    for name, blob in shared.legacy_blobs(caffe_pb2).items():
        cases[f"blob/{name}"] = io.blobproto_to_array(blob)
    cases["errors"] = np.array(json.dumps({k: error_class(v)
                                           for k, v in shared.error_calls(io).items()}))
    np.savez_compressed(out, **cases)
    print(f"wrote {len(cases)} arrays to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
