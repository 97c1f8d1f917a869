"""The format of the Caffe reference fixtures in tests/fixtures/*.npz (pure numpy).

Imported by both sides:

* ``tools/caffe_reference/make_fixtures.py`` (Debian's python3 with pycaffe; it puts
  ``<repo>/tests`` on ``sys.path``) to generate inputs and weights and to encode what real
  Caffe computed;
* ``tests/test_caffe_fixtures.py`` (the project's venv, never imports caffe) to regenerate the
  same inputs and weights and to compare the runtime against the stored values.

Everything random comes from numpy's legacy ``np.random.RandomState`` (its streams are frozen
across numpy versions), seeded by a CRC-32 of a string naming what is drawn, so every array is
independent of the order in which arrays are drawn.

One fixture file holds one case:

* ``meta``: a JSON string (see ``load_case``): kind, prototxt text, input specs, weight mode,
  the checksums of the regenerated inputs/weights, and what was recorded;
* arrays, one *entry* per recorded array, under keys ``<category>:<name>`` (e.g.
  ``fwd:conv1``, ``diff:conv1``, ``grad:conv1:0``, ``step3:conv1:0``). An array with at most
  ``FULL_LIMIT`` elements is stored whole under the key; a larger one as
  ``<key>@sample`` (the values at ``sample_indices(size, count)``; count is SAMPLE_SIZE
  except in the whole-network forward/backward cases, which keep the files small with
  fewer samples), ``<key>@sum`` and ``<key>@sumsq`` (float64 sums
  of the values and their squares), ``<key>@absmax`` (float64 max |value|) and ``<key>@shape``.

Relative error (``rel_error``) is max|a - b| / max(max|b|, TINY), b the reference. For a
sampled entry it is the largest of: the samples' relative error, and the errors of the sums
scaled by the bound an element-wise relative error eps implies (|d sum| <= n*eps*M,
|d sumsq| <= 2*n*eps*M^2 with M = max|b|), so all three read on the same scale.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

FORMAT_VERSION = 1
FULL_LIMIT = 4096          # arrays up to this many elements are stored whole
SAMPLE_SIZE = 4096         # else this many deterministic samples (+ sums)
TINY = 1e-30
CHUNK = 1 << 22            # values per float64 chunk (make_weight, checksum)

__all__ = [
    "FORMAT_VERSION", "FULL_LIMIT", "SAMPLE_SIZE", "TINY",
    "seed_of", "rng", "make_input", "make_weight", "sample_indices",
    "encode", "entry_keys", "has_entry", "entry_shape", "rel_error", "checksum", "DIR",
    "write_data_files", "png_file", "pnm_file", "datum_records",
    "meta_to_array", "meta_from_npz", "backward_as_caffe",
]


# ------------------------------------------------------------------------------ randomness

def seed_of(*parts) -> int:
    """A 32-bit seed from the parts' text (stable across Python and numpy versions)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode("utf-8")) & 0xFFFFFFFF


def rng(*parts) -> np.random.RandomState:
    return np.random.RandomState(seed_of(*parts))


def make_input(case: str, name: str, spec: dict) -> np.ndarray:
    """The float32 array an input blob is fed with. ``spec`` (JSON-able):

    ``shape`` (list), ``kind``:
      * ``normal``: N(0, 1) * ``scale`` (default 1)
      * ``uniform``: U(``low``, ``high``)
      * ``ties``: integers in [``low``, ``high``] (defaults -2..2) -> many equal values, zeros
      * ``labels``: integers in [0, ``classes``); with ``ignore_label`` and ``ignore_frac``,
        that fraction of the entries (rounded down, at least one) set to the ignore label
      * ``values``: the list ``values`` (infinities and NaN included), repeated to fill
    """
    shape = tuple(int(d) for d in spec["shape"])
    r = rng("input", case, name)
    kind = spec.get("kind", "normal")
    if kind == "normal":
        a = r.standard_normal(shape) * float(spec.get("scale", 1.0))
    elif kind == "uniform":
        a = r.uniform(float(spec.get("low", -1.0)), float(spec.get("high", 1.0)), shape)
    elif kind == "ties":
        a = r.randint(int(spec.get("low", -2)), int(spec.get("high", 2)) + 1, shape)
    elif kind == "labels":
        a = r.randint(0, int(spec["classes"]), shape)
        if "ignore_label" in spec:
            flat = a.reshape(-1)
            k = max(1, int(flat.size * float(spec.get("ignore_frac", 0.25))))
            flat[r.permutation(flat.size)[:k]] = int(spec["ignore_label"])
    elif kind == "values":
        a = np.resize(np.asarray(spec["values"], dtype=np.float32), shape)
    else:
        raise ValueError(f"unknown input kind {kind!r}")
    return np.ascontiguousarray(a, dtype=np.float32).reshape(shape)  # 0-d stays 0-d


def make_weight(case: str, layer: str, index: int, shape, mode: str = "msra") -> np.ndarray:
    """The float32 value of learnable blob ``index`` of ``layer``.

    ``mode``:
      * ``msra``: blobs with >= 2 axes ~ U(-a, a), a = sqrt(6 / fan_in), fan_in = product of
        all axes but the first (variance 2 / fan_in, as Caffe's msra filler); 1-axis blobs
        (biases) ~ U(-0.1, 0.1)
      * ``normal``: N(0, 1) for every blob
      * ``ties``: integers in [-2, 2] (many equal products -> exercises first-max rules)
      * ``positive``: U(0.5, 1.5) for every blob (BatchNorm's variance and scale factor)
      * ``zeros``: 0 for every blob
      * a dict: the mode per blob, ``{"<layer>:<index>": mode, "*": mode for the others}``
        (default msra)
    Drawn in float64 chunks of at most CHUNK values so that huge blobs stay cheap in memory.
    """
    if isinstance(mode, dict):
        mode = mode.get(f"{layer}:{index}", mode.get("*", "msra"))
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    r = rng("weight", case, layer, index)
    out = np.empty(n, dtype=np.float32)
    if mode == "msra":
        if len(shape) >= 2:
            fan_in = n // shape[0]
            a = float(np.sqrt(6.0 / fan_in))
        else:
            a = 0.1
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            out[start:stop] = r.uniform(-a, a, stop - start)
    elif mode == "normal":
        out[:] = r.standard_normal(n)
    elif mode == "ties":
        out[:] = r.randint(-2, 3, n)
    elif mode == "positive":
        out[:] = r.uniform(0.5, 1.5, n)
    elif mode == "zeros":
        out[:] = 0
    else:
        raise ValueError(f"unknown weight mode {mode!r}")
    return out.reshape(shape)


def checksum(a: np.ndarray) -> list:
    """[sum, sum of squares] in float64: pins regenerated inputs/weights to the fixture's
    (NaN counted as 0.5, ±inf as ±0.25, so that the sums stay comparable). Summed in chunks
    of CHUNK values, so a huge blob (FCN-8s's 103 M-value fc6) needs no float64 copy of
    itself."""
    flat = np.asarray(a).reshape(-1)
    total = squares = 0.0
    for start in range(0, flat.size, CHUNK):
        part = np.nan_to_num(flat[start:start + CHUNK].astype(np.float64), nan=0.5,
                             posinf=0.25, neginf=-0.25)
        total += float(part.sum())
        squares += float((part * part).sum())
    return [total, squares]


# ------------------------------------------------------------------------------ sampling

def sample_indices(size: int, count: int = SAMPLE_SIZE) -> np.ndarray:
    """``count`` sorted flat indices in [0, size), fixed for a given (size, count)."""
    r = np.random.RandomState(seed_of("sample", size, count))
    return np.sort(r.randint(0, size, count)).astype(np.int64)


def encode(key: str, array, sample_size: int = SAMPLE_SIZE) -> dict:
    """The npz entries that store ``array`` under ``key`` (whole or sampled)."""
    a = np.asarray(array, dtype=np.float32)
    if a.size <= FULL_LIMIT:
        return {key: a.copy()}
    flat = a.reshape(-1)
    f64 = flat.astype(np.float64)
    return {
        key + "@sample": flat[sample_indices(flat.size, sample_size)].copy(),
        key + "@sum": np.float64(f64.sum()),
        key + "@sumsq": np.float64((f64 * f64).sum()),
        key + "@absmax": np.float64(np.abs(f64).max()),
        key + "@shape": np.asarray(a.shape, dtype=np.int64),
    }


def entry_keys(files, prefix: str) -> list[str]:
    """The entry names (without suffixes) stored under ``prefix`` (e.g. 'fwd:'), in order."""
    seen = []
    for k in files:
        if not k.startswith(prefix):
            continue
        base = k.split("@", 1)[0]
        if base not in seen:
            seen.append(base)
    return seen


def has_entry(npz, key: str) -> bool:
    return key in npz.files or (key + "@sample") in npz.files


def entry_shape(npz, key: str) -> tuple:
    if key in npz.files:
        return tuple(npz[key].shape)
    return tuple(int(d) for d in npz[key + "@shape"])


def rel_error(actual, npz, key: str) -> float:
    """Relative error of ``actual`` (any array-like) against the stored entry ``key``."""
    a = np.asarray(actual, dtype=np.float64)
    shape = entry_shape(npz, key)
    if tuple(a.shape) != shape:
        raise AssertionError(f"{key}: shape {tuple(a.shape)} != Caffe's {shape}")
    if key in npz.files:
        b = np.asarray(npz[key], dtype=np.float64)
        finite = np.isfinite(b)     # Caffe's infinities and NaN: the same ones, where they are
        if not (np.array_equal(np.isnan(a), np.isnan(b)) and
                np.array_equal(a[np.isinf(b)], b[np.isinf(b)]) and np.isfinite(a[finite]).all()):
            return float("inf")
        if not finite.any():
            return 0.0
        scale = max(float(np.abs(b[finite]).max()), TINY)
        return float(np.abs(a[finite] - b[finite]).max()) / scale
    flat = a.reshape(-1)
    samples = np.asarray(npz[key + "@sample"], dtype=np.float64)
    m = max(float(npz[key + "@absmax"]), TINY)
    n = flat.size
    if not np.all(np.isfinite(flat)):
        return float("inf")
    e_samples = float(np.abs(flat[sample_indices(n, samples.size)] - samples).max()) / m
    e_sum = abs(float(flat.sum()) - float(npz[key + "@sum"])) / (n * m)
    e_sumsq = abs(float((flat * flat).sum()) - float(npz[key + "@sumsq"])) / (2.0 * n * m * m)
    return max(e_samples, e_sum, e_sumsq)


# ------------------------------------------------------------------------------ data files

DIR = "@DIR@"     # in a data case's prototxt and file lists: the folder holding its files


def write_data_files(case: dict, folder, h5py) -> None:
    """A data case's files into ``folder``: each ``h5_files`` entry {name: {dataset: input
    spec, optionally with "dtype"}} written with the given ``h5py`` module, each
    ``list_files`` entry {name: [lines]} as text with DIR replaced by ``folder``, each
    ``image_files`` entry {name: [height, width]} as an RGB image of seeded pixels in the
    format its name ends in (or {name: {"shape": [height, width], "mode": "CMYK",
    "orientation": 6, "keep": 0.6}}: another mode, an EXIF orientation, the file cut to that
    share of its bytes; a PNG's spec may also give "depth": 16, "grey_row": i (that row's
    red in all three channels) and "chunks": [[type, body in hex, optionally "bad crc"]],
    written after its IHDR; a .pgm or .ppm's "maxval" (default 255) and "ascii": true)."""
    import os
    for name, datasets in case.get("h5_files", {}).items():
        with h5py.File(os.path.join(folder, name), "w") as f:
            for dataset, spec in datasets.items():
                value = make_input(case["name"], f"{name}/{dataset}", spec)
                f.create_dataset(dataset, data=value.astype(spec.get("dtype", "float32")))
    for name, lines in case.get("list_files", {}).items():
        with open(os.path.join(folder, name), "w") as f:
            f.write("".join(line.replace(DIR, str(folder)) + "\n" for line in lines))
    for name, spec in case.get("image_files", {}).items():
        from PIL import Image     # the venv's Pillow; Caffe reads the file with OpenCV
        spec = spec if isinstance(spec, dict) else {"shape": spec}
        mode, depth = spec.get("mode", "L" if name.endswith(".pgm") else "RGB"), \
            spec.get("depth", 8)
        top = spec.get("maxval", (1 << depth) - 1)
        pixels = make_input(case["name"], name, {"shape": [*spec["shape"], len(mode)],
                                                 "kind": "ties", "low": 0, "high": top})
        if "grey_row" in spec:
            pixels[spec["grey_row"]] = pixels[spec["grey_row"], :, :1]
        if name.endswith((".pgm", ".ppm")):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(pnm_file(pixels.astype(np.int64), top, spec.get("ascii", False)))
            continue
        if depth != 8 or "chunks" in spec:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(png_file(pixels, depth, spec.get("chunks", [])))
            continue
        image = Image.fromarray(pixels.astype(np.uint8), mode)
        exif = Image.Exif()
        if "orientation" in spec:
            exif[0x0112] = spec["orientation"]
        image.save(os.path.join(folder, name), exif=exif, quality=90)
        if "keep" in spec:              # a file cut short: its first bytes only
            with open(os.path.join(folder, name), "r+b") as f:
                f.truncate(int(os.path.getsize(os.path.join(folder, name)) * spec["keep"]))


def png_file(pixels: np.ndarray, depth: int, chunks: list) -> bytes:
    """An RGB PNG of ``pixels`` (H, W, 3) at ``depth`` bits a sample, unfiltered, with
    ``chunks`` ([type, body in hex, optionally "bad crc"]) after its IHDR."""
    import struct
    import zlib

    def chunk(kind: str, body: bytes, bad: bool = False) -> bytes:
        crc = zlib.crc32(kind.encode() + body) ^ bad
        return struct.pack(">I", len(body)) + kind.encode() + body + struct.pack(">I", crc)
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2" if depth == 16 else "u1").tobytes()
                    for row in pixels)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk("IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))
            + b"".join(chunk(kind, bytes.fromhex(body), bool(bad)) for kind, body, *bad in chunks)
            + chunk("IDAT", zlib.compress(rows)) + chunk("IEND", b""))


def pnm_file(pixels: np.ndarray, maxval: int, ascii: bool) -> bytes:
    """A PGM (pixels (H, W, 1)) or PPM ((H, W, 3)) of samples up to ``maxval``, binary
    (big-endian 16 bits past 255) or ``ascii``."""
    height, width, channels = pixels.shape
    header = f"P{(2 if channels == 1 else 3) + (0 if ascii else 3)}\n{width} {height}\n{maxval}\n"
    if ascii:
        return (header + "\n".join(" ".join(map(str, row.reshape(-1))) for row in pixels)
                + "\n").encode()
    return header.encode() + pixels.astype(">u2" if maxval > 255 else np.uint8).tobytes()


def datum_records(case: dict, db: str) -> list[tuple[bytes, dict]]:
    """The records of a data case's database ``db`` as (key, Datum fields), in the order they
    are written. Its spec in ``case["lmdb_files"][db]`` or ``case["leveldb_files"][db]``:
    ``key`` (a %-format of the record's index), ``shuffle`` (write in a seeded random order;
    the database keeps key order) and ``records``, each {``shape`` [C, H, W], ``label``,
    ``floats``: float_data instead of uint8 data}."""
    spec = {**case.get("lmdb_files", {}), **case.get("leveldb_files", {})}[db]
    records = []
    for i, record in enumerate(spec["records"]):
        name = f"{db}/{i}"
        fields = {"channels": record["shape"][0], "height": record["shape"][1],
                  "width": record["shape"][2], "label": record["label"]}
        if record.get("floats"):
            values = make_input(case["name"], name, {"shape": record["shape"]})
            fields["float_data"] = values.reshape(-1).tolist()
        else:
            values = make_input(case["name"], name, {"shape": record["shape"], "kind": "ties",
                                                     "low": 0, "high": 255})
            if record.get("flat"):      # one value a channel: what Snappy compresses
                values = np.broadcast_to(values[:, :1, :1], values.shape)
            fields["data"] = values.astype(np.uint8).tobytes()
        records.append(((spec["key"] % i).encode(), fields))
    if spec.get("shuffle"):
        order = rng("lmdb order", case["name"], db).permutation(len(records))
        records = [records[i] for i in order]
    return records


# ------------------------------------------------------------------------------ meta

def meta_to_array(meta: dict) -> np.ndarray:
    return np.asarray(json.dumps(meta, sort_keys=True))


def meta_from_npz(npz) -> dict:
    return json.loads(str(npz["meta"][()]))


# ------------------------------------------------------------------------------ the runtime's half

def backward_as_caffe(case: str, net, backward: str, top_diffs, device="cpu",
                      check=None) -> None:
    """The backward of a case as make_fixtures ran it in Caffe: the loss's (``backward``
    "loss"), or the seeded top diffs of ``top_diffs`` ("top_diff"; ``check(top, diff)`` sees
    each first), or none. Tops that take no diff (constants) are skipped, as Caffe does."""
    import torch
    if backward not in ("loss", "top_diff"):
        return
    net.clear_param_diffs()
    if backward == "loss":
        net.backward()
        return
    diffs = {}
    for top in top_diffs:
        g = make_input(case, "topdiff:" + top, {"shape": list(net.blobs[top].shape),
                                                 "kind": "normal"})
        if check:
            check(top, g)
        diffs[top] = torch.from_numpy(g).to(device)
    net.backward(**diffs)       # pycaffe's: the diffs written into the tops, then Backward
