"""Run netspec_builders.CASES through real pycaffe; print JSON {case: prototxt or error class},
for tests/test_net_spec_edges.py:

    PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference:tools/caffe_reference/net_edges \
        /usr/bin/python3 tools/caffe_reference/net_edges/netspec_reference.py
"""
import json
import netspec_builders
from pycaffe_import import import_caffe

caffe = import_caffe()
out = {}
for case in netspec_builders.CASES:
    try:
        out[case.__name__] = {"prototxt": str(case(caffe.layers, caffe.params, caffe.NetSpec,
                                                   caffe.to_proto))}
    except Exception as e:
        out[case.__name__] = {"error": type(e).__name__, "message": str(e)}
print(json.dumps(out, indent=1))
