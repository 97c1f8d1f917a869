#!/usr/bin/env python3
"""Make tests/fixtures/net_spec_cases.json: what real pycaffe's net_spec makes of the nets
in tests/fixtures/net_spec/builders.py.

For each case: ``{"prototxt": text}``, the NetParameter it returned as protobuf prints it, or
``{"error": name}``, the class of the exception it raised (``AttributeError``, ...).

Run under Debian's ``/usr/bin/python3`` with pycaffe (see make_fixtures.sh, or:
``PYTHONPATH=$CAFFE/python:tools/caffe_reference /usr/bin/python3
tools/caffe_reference/make_net_spec_cases.py tests/fixtures/net_spec_cases.json``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from pycaffe_import import import_caffe

BUILDERS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "net_spec" / "builders.py"


def main(out: str) -> None:
    caffe = import_caffe()
    spec = importlib.util.spec_from_file_location("net_spec_builders", BUILDERS)
    builders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builders)
    cases = {}
    for case in builders.CASES:
        try:
            net = case(caffe.layers, caffe.params, caffe.NetSpec, caffe.to_proto)
        except Exception as error:          # the class pycaffe raised is the fixture
            cases[case.__name__] = {"error": type(error).__name__}
        else:
            cases[case.__name__] = {"prototxt": str(net)}
        print(case.__name__, next(iter(cases[case.__name__].values()))[:60].splitlines()[0])
    Path(out).write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
