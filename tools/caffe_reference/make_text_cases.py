#!/usr/bin/env python3
"""Make tests/fixtures/text_format_cases.json: how real Caffe reads prototxt text.

Each case is a small net whose text varies in one token (a float, an unsigned int, a bool, a
string, or text around the layers). Real Caffe (pycaffe's ``caffe.Net``, which parses with
protobuf's C++ text-format parser) reads each in a process of its own and gives either

* ``{"error": [line, column, message]}``: its "Error parsing text-format" line; or
* ``{"layers": [base64, ...]}``: the net built, the LayerParameter of each of its layers but
  the Splits it inserted, as it saved them (``Net.save``), without blobs and the phase the Net
  fills in; or
* ``{"refused": message}``: the text parsed, the net did not build (its first check).

Run under Debian's ``/usr/bin/python3`` with ``PYTHONPATH=/opt/reference-caffe/python`` (see
make_fixtures.sh, or: ``PYTHONPATH=$CAFFE/python:tools/caffe_reference /usr/bin/python3
tools/caffe_reference/make_text_cases.py tests/fixtures/text_format_cases.json``). The texts
are stored as Latin-1 strings, so that any byte of a case survives JSON.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile

NET = """name: "t"
{before}layer {{ name: "in" type: "Input" top: "x" top: "x2" top: "x3" input_param {{ shape {{ dim: 2 dim: 3 dim: 4 dim: 4 }} }} }}
layer {{ name: "p" type: "Power" bottom: "x" top: "y" power_param {{ scale: {float} shift: 0.5 }} }}
layer {{ name: {string} type: "Pooling" bottom: "x2" top: "z" pooling_param {{ pool: MAX kernel_size: {uint} }} }}
layer {{ name: "c" type: "Convolution" bottom: "x3" top: "w" convolution_param {{ num_output: 1 kernel_size: 1 bias_term: {bool} }} }}
{after}"""
PLAIN = dict(before="", float="2", string='"q"', uint="2", bool="true", after="")

FLOATS = ["+1.5", "1_0", "0b101", "0o7", "- 1.5", "-1.5", "-\t1.5", "- -1", "--1", "1e2", "1E+2",
          ".5", "5.", "1.5f", "1.5F", "1f", "inf", "-inf", "infinity", "-Infinity", "INF",
          "0x10", "010", "-0x2", "08", "1e", "1.5.2", "0x1p3", "1d", "1e-50", "1e39", "'1.5'",
          "true", "1 .5", "1.", "-.5", "0.5e-1", "1e+", "5e", "1e+2.5", "3.4028235e38",
          "-\n1.5", "- \r1.5", "-\f1.5", "5x", "1e5x", ".5x", ".0b1", "1.0b1", "1e+5", ".5_0",
          "- .5", "1+2", "1e+5_0", "-\n -1", "inff", "nanf", "NaN", "-Inf", "infinityf"]
UINTS = ["0x3", "03", "08", "3.0", "+3", "- 3", "0b11", "1_0", "3u", "0X3", "-3", "00003", "3e0",
         "0x", "3L", "4294967297", "0x100000000", "-0",
         "037777777777", "040000000000", "0xFFFFFFFF"]
BOOLS = ["t", "True", "1", "yes", "2", "0x1", "01", "0x0", "00", "-1", "0x2", "FALSE", "f", "1.5",
         "1.", ".5", "1e3", "inf", "tru", "_x", "0x1_"]
STRINGS = [r'"\q"', r'"\x41"', r'"\101"', r'"\?"', r'"\'"', r'"a\"b"', r'"\u0041"',
           r'"\U00000041"', '"a" "b"', "'sq'", r'"\x"', r'"\8"', r'"\0"', r'"\a\b\f\v"',
           '"a\nb"', r'"\777"', '"p', "q", r'"\x4g"', r'"\uD800"', r'"\U00110000"',
           r'"\xg"', r'"\u12"', r'"a\xAB"', r'"\\\v\a\'"', '"a\x80b"', r'"\x4F\u00e9"']
AROUND = [("# caf\xe9\n", ""), ("# a\x00b\n", ""), ("# caf\xc3\xa9\n", ""), ("", "# end"),
          ("force_backward: true,\n", ""), ("force_backward: true;\n", ""),
          ("", 'layer < name: "s" type: "Silence" bottom: "y" >\n'),
          ("", 'layer: { name: "s" type: "Silence" bottom: "y" }\n'),
          ("\t\r\n", "\r\n"), ("\x0b\x0c", ""), ("foo: 1\n", ""), ("\xef\xbb\xbf", ""),
          ("", 'layer { name: "caf\xe9" type: "Silence" bottom: "y" }\n'),
          ("", 'layer { name: "a#b" type: "Silence" bottom: "y" }\n'), ("// c\n", ""),
          ("", 'layer { name: "d" type: "Dropout" bottom: "y" top: "y" '
               'dropout_param { dropout_ratio: 0.5 dropout_ratio: 0.25 } }\n'),
          ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
               'pooling_param { pool: 1 kernel_size: 1 } }\n'),
          ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
               'pooling_param { pool: ave kernel_size: 1 } }\n'),
          ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
               'pooling_param { pool: -1 kernel_size: 1 } }\n'),
          ("", 'layer { name: "e" type: "Power" bottom: "y" top: "e" include { phase: 0 } }\n'),
          ("", 'layer { name: "e" type: "Input" top: "e" input_param { shape { dim: [1, 2] } } }\n'),
          ("", 'layer { name: "e" type: "Power" bottom: "y" top: "e" }}\n'),
          ("", 'layer { name: "e" type: "Power" bottom: "y" top: "e"\n'),
          ("", 'layer { name: "e" type: "Power" bottom: "y" top: "e" power_param { } } }\n'),
          ("", "-"), ("\n\n", 'layer { name: "e" bogus: 1 }\n'),
          ("", 'layer { name: "h" type: "Silence" bottom: "w" '
               'hdf5_output_param { file_name: "x.h5" } }\n'),
          ("", 'layer { name: "h" type: "Silence" bottom: "w" phase: _0b1 }\n'),
          ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
               'pooling_param { pool: -MAX kernel_size: 1 } }\n'),
          ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
               'pooling_param { pool: 1.0 kernel_size: 1 } }\n'),
          ("state { level: -2147483649 }\n", ""), ("state { level: -2147483648 }\n", ""),
          ("", 'layer { name: "e" type: "Input" top: "e" '
               'input_param { shape { dim: -9223372036854775809 } } }\n')]
# a sign, then a gap with a line's end or a comment, or a mark where its number belongs
SIGNED = ["- [2]", "-\n}", "[1, -, 2]", "[1, - # c\n 2]", "- # c\n  99999999999999999999",
          "-\n  1 dim: x", "- # c\n  3 dim: 1", "[1, -\n2]"]
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" '
                f'input_param {{ shape {{ dim: {value} }} }} }}\n') for value in SIGNED]
# a mark where a field name's ':' or '{' belongs, or a message closed by the other bracket
POWER = 'layer {{ name: "e" type: "Power" bottom: "y" top: "e" {} }}\n'
AROUND += [("", POWER.format(tail)) for tail in (
    "power_param < power: 1 }", "power_param { power: 1 >", "power_param+{ }", "bogus+{ }",
    "power_param { } power_param { }", "loss_weight: HDF5", "power_param: -{ }",
    "power_param { power +1 }", "power_param { power-1 }", "power_param { powe-r: 1 }",
    "type0.2: 1", "to.p: 1")]
AROUND += [("force_backward: true force_backward\n", ""), ("debug_info: true debug_info: 1\n", ""),
           ("force_backward: tr\xe2\x80\x8bue\n", ""), ("", "\xff\n"),
           ("", 'layer { name: -"s" type: "Silence" bottom: "y" }\n'),
           ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" '
                'pooling_param { pool: +MAX kernel_size: 1 } }\n')]
# a '+' or '-' run into a value (Python's identifier takes them in), or a bracket for a ':'
POOL = 'layer {{ name: "e" type: "Pooling" bottom: "w" top: "e" pooling_param {{ {} }} }}\n'
AROUND += [("", POOL.format(tail)) for tail in (
    "pool: MA-1 kernel_size: 1", "pool: MAX-1 kernel_size: 1", "pool: MAX+ kernel_size: 1",
    "kernel_size> 1", "kernel_size: abc-1")]
AROUND += [(head, "") for head in ("force_backward: tru+e\n", "force_backward: true-x\n",
                                   "debug_info: f+\n", 'name: abc+1\n')]
AROUND += [("", POWER.format(tail)) for tail in ("loss_weight: inf+1", "loss_weight: info+1",
                                                 "loss_weight: -inf-1")]
# a sign where a message's '{' belongs
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" '
                f'input_param {{ shape{value} {{ dim: 1 }} }} }}\n')
           for value in (": - -", ": +", " -", ": abc-1", " abc")]
# a field's name, then no ':' (or '{') but a word or a sign
AROUND += [(head + "\n", "") for head in ("force_backward abc", "force_backward - abc", "bogus abc",
                                           "input_dim -1", "state abc")]
# a byte that is not UTF-8 run into an enum's word; a bool's number as the text's last token
AROUND += [("", 'layer { name: "h" type: "Silence" bottom: "w" include { phase: \xffTEST } }\n'),
           ("", "force_backward: 1e5"), ("", "force_backward: 1e5\n\n")]
# a sign at a line's end, its number first on the next line
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" '
                f'input_param {{ shape {{ dim: {value} }} }} }}\n')
           for value in ("-\n1 bogus: 1", "-\n99999999999999999999")]
AROUND += [("", POOL.format("pool: -\n5 kernel_size: 1"))]
# one blank before that number; a mark or number where a name belongs; an enum's sign then no
# number; a float's word run into '.digits'; a sparse filler below -1
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" '
                f'input_param {{ shape {{ dim: {value} }} }} }}\n')
           for value in ("-\n 1 bogus: 1", "-\n\t1 bogus: 1")]
AROUND += [("", POWER.format(tail)) for tail in (
    "power_param { + }", "power_param { } +", "loss_weight: X0.5", "loss_weight: -X0.5",
    "power_param { power: 1 } 34+")]
AROUND += [("", POOL.format(tail)) for tail in ('pool: -"a" kernel_size: 1',
                                                "pool: -. kernel_size: 1")]
AROUND += [("", 'layer { name: "f" type: "InnerProduct" bottom: "y" top: "f" inner_product_param '
                '{ num_output: 1 weight_filler { type: "gaussian" sparse: -2 } } }\n')]
# a sign moved onto its number's line, then a mark where a name belongs (or a closing
# bracket) run into a character outside ASCII: which error C++ meets first
AROUND += [("", POWER.format(tail)) for tail in ("power_param { scale: -\n2 :\xc3\xa9 }",
                                                 "power_param { scale: -\n2 }\xc3\xa9")]

# a sign or a number after a list's value; a sign, then the list's end or only blanks and
# comments to the text's end; an extension's name run into '.digits', a sign or a '-word',
# '.digits' after a blank in it, a number after its ']'
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" '
                f'input_param {{ shape {{ dim: {value} }} }} }}\n')
           for value in ("[1 +]", "[1, 2 +]", "[1 -]", "[1 +2]", "[-]")]
AROUND += [("", 'layer { name: "e" type: "Power" bottom: "y" top: "e" power_param { shift: -'
                + end) for end in ("", " ", "\n", "  \n", " # c\n", "\n\n  \n")]
AROUND += [("", 'layer { name: "e" type: "Input" top: "e" input_param { shape { dim: [-\n'),
           ("", 'layer { name: "e" type: "Pooling" bottom: "w" top: "e" pooling_param { pool: -\n')]
AROUND += [("", POWER.format(tail)) for tail in ("[foo.1]: 1", "[foo.bar-x]: 1", "[foo-x]: 1",
                                                 "[foo .1]: 1", "[foo] 08", "[foo -1]: 1")]


def cases() -> dict[str, str]:
    """Name -> text (Latin-1: one character per byte)."""
    out = {}
    for kind, values in (("float", FLOATS), ("uint", UINTS), ("bool", BOOLS),
                         ("string", STRINGS)):
        for i, value in enumerate(values):
            out[f"{kind}{i:02d}"] = NET.format(**{**PLAIN, kind: value})
    for i, (before, after) in enumerate(AROUND):
        out[f"around{i:02d}"] = NET.format(**{**PLAIN, "before": before, "after": after})
    return out


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
from pycaffe_import import import_caffe
caffe = import_caffe()
caffe.Net(sys.argv[1], caffe.TEST).save(sys.argv[2])
"""
_GLOG_PREFIX = re.compile(r"^[FEWI]\d{8} [\d:.]+ +\d+ ")
_PARSE_ERROR = re.compile(r"Error parsing text-format caffe\.NetParameter: (\d+):(\d+): (.*)$")


def caffe_reads(path: str, saved: str) -> dict:
    from pycaffe_import import import_caffe
    import_caffe()
    from caffe.proto import caffe_pb2
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, GLOG_minloglevel="0")
    done = subprocess.run([sys.executable, "-c", CHILD, path, saved, here], env=env,
                          capture_output=True, text=True, errors="replace", timeout=120)
    for line in done.stderr.splitlines():
        match = _PARSE_ERROR.search(line)
        if match:
            return {"error": [int(match.group(1)), int(match.group(2)), match.group(3)]}
    if done.returncode != 0:
        checks = [l for l in done.stderr.splitlines() if "Check failed" in l or "] " in l
                  and l.startswith("F")]
        line = (checks or done.stderr.splitlines() or ["?"])[-1]
        return {"refused": _GLOG_PREFIX.sub("", line)[-200:]}     # no time or pid: diffs stay
    net = caffe_pb2.NetParameter()
    with open(saved, "rb") as f:
        net.ParseFromString(f.read())
    layers = []
    for layer in net.layer:
        if layer.type == "Split":
            continue
        del layer.blobs[:]
        layer.ClearField("phase")
        layers.append(base64.b64encode(layer.SerializeToString()).decode())
    return {"layers": layers}


def main(out: str) -> None:
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name, text in cases().items():
            path, saved = os.path.join(work, f"{name}.prototxt"), os.path.join(work, "s.bin")
            with open(path, "wb") as f:
                f.write(text.encode("latin-1"))
            results.append({"name": name, "text": text, "caffe": caffe_reads(path, saved)})
            print(name, json.dumps(results[-1]["caffe"])[:110], flush=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=0, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
