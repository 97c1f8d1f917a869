#!/usr/bin/env python3
"""Make tests/fixtures/pycaffe_io_cases.npz: what real pycaffe's ``caffe.io`` makes of
seeded inputs (the Transformer both ways, the BlobProto and Datum conversions with their
serialized bytes, oversample, and the class of each error it raises).

Each Transformer case is ``transformer/<name>/``: ``settings`` (JSON: the blob shape and each
``set_*`` call), ``image``, ``preprocessed`` and ``deprocessed`` (or ``deprocess_error``,
the class of its error). Run under Debian's
``/usr/bin/python3`` with pycaffe (``PYTHONPATH=$CAFFE/python:tools/caffe_reference
/usr/bin/python3 tools/caffe_reference/make_io_cases.py tests/fixtures/pycaffe_io_cases.npz``).
"""
from __future__ import annotations

import json
import sys

import numpy as np

from pycaffe_import import import_caffe

MEAN = [104.0, 117.0, 123.0]
TRANSFORMERS = {
    "imagenet_style": {"shape": [2, 3, 12, 10], "transpose": [2, 0, 1], "mean": MEAN,
                       "raw_scale": 255, "channel_swap": [2, 1, 0]},
    "full_mean_input_scale": {"shape": [1, 3, 12, 10], "transpose": [2, 0, 1],
                              "input_scale": 0.5, "mean": "full"},
    "grey_2d_mean": {"shape": [1, 1, 12, 10], "transpose": [2, 0, 1], "mean": "2d",
                     "raw_scale": 255.0, "input_scale": 0.017},
    "nothing_set": {"shape": [1, 1, 12, 10]},
}


def mean_of(setting, shape):
    if setting == "full":
        return np.random.RandomState(5).rand(*shape[1:]).astype(np.float32)
    if setting == "2d":
        return np.random.RandomState(6).rand(*shape[2:]) * 100
    return np.asarray(setting)


def transformer(io, settings):
    t = io.Transformer({"data": tuple(settings["shape"])})
    for key in ("transpose", "channel_swap", "raw_scale", "input_scale"):
        if key in settings:
            getattr(t, f"set_{key}")("data", settings[key])
    if "mean" in settings:
        t.set_mean("data", mean_of(settings["mean"], settings["shape"]))
    return t


def error_class(call) -> str:
    try:
        call()
    except Exception as error:          # the class pycaffe raised is the fixture
        return type(error).__name__
    return "none"


def main(out: str) -> None:
    io = import_caffe().io
    cases = {}
    for name, settings in TRANSFORMERS.items():
        image = np.random.RandomState(3).rand(12, 10, settings["shape"][1]).astype(np.float32)
        # (a copy: pycaffe's in-place steps write into a float32 image through its views)
        pre = transformer(io, settings).preprocess("data", image.copy())
        cases[f"transformer/{name}/settings"] = np.array(json.dumps(settings))
        cases[f"transformer/{name}/image"] = image
        cases[f"transformer/{name}/preprocessed"] = pre
        try:
            cases[f"transformer/{name}/deprocessed"] = transformer(io, settings).deprocess(
                "data", pre[None])
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
    shape = (1, 3, 12, 10)
    errors = {
        "unknown_input": lambda: io.Transformer({"data": shape}).set_raw_scale("x", 1),
        "transpose_length": lambda: io.Transformer({"data": shape}).set_transpose("data", (1, 0)),
        "channel_swap_length": lambda: io.Transformer({"data": shape}).set_channel_swap(
            "data", (1, 0)),
        "mean_channels": lambda: io.Transformer({"data": shape}).set_mean("data", np.ones(2)),
        "mean_axes": lambda: io.Transformer({"data": shape}).set_mean("data", np.ones((1,) * 4)),
        "datum_2d": lambda: io.array_to_datum(np.ones((2, 2))),
    }
    cases["errors"] = np.array(json.dumps({k: error_class(v) for k, v in errors.items()}))
    np.savez_compressed(out, **cases)
    print(f"wrote {len(cases)} arrays to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
