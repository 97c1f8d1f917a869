"""Real pycaffe on the Net corners tests/test_net_edges.py pins; each case runs in a process of
its own (Caffe's LOG(FATAL) aborts it):

    PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference /usr/bin/python3 \
        tools/caffe_reference/net_edges/net_reference.py [CASE]
"""
import os
import subprocess
import sys
import tempfile

INPUT = ('layer { name: "in" type: "Input" top: "a" top: "b" '
         'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }\n')
CASES = {
    # top 0 named like bottom 1 (not bottom 0): not in place
    "top0_is_bottom1": INPUT + ('layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" '
                                'top: "b" }\n'),
    # top 0 named like bottom 0: in place (Eltwise in place is allowed by net.cpp)
    "top0_is_bottom0": INPUT + ('layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" '
                                'top: "a" }\n'),
    # the loss weights / outputs of a net with a zero-weighted loss
    "outputs_and_weights": INPUT + 'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }\n'
                           'layer { name: "e" type: "EuclideanLoss" bottom: "r" bottom: "b" '
                           'top: "e" loss_weight: 0 }\n'
                           'layer { name: "s" type: "Sigmoid" bottom: "b" top: "s" }\n',
}


def run(case):
    from pycaffe_import import import_caffe
    caffe = import_caffe()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(CASES[case])
    net = caffe.Net(f.name, caffe.TEST)
    print("built; blobs", list(net.blobs), "outputs", net.outputs, "inputs", net.inputs)
    print("blob_loss_weights", dict(net.blob_loss_weights))
    print("layers", list(net._layer_names))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for case in CASES:
            p = subprocess.run([sys.executable, __file__, case], capture_output=True, text=True,
                               env=dict(os.environ, GLOG_minloglevel="0"))
            fatal = [l for l in p.stderr.splitlines() if "Check failed" in l or "F1" in l[:3]
                     or "] " in l and l.startswith("F")]
            print(f"== {case}: rc {p.returncode}\n{p.stdout.strip()}\n" + "\n".join(fatal[-2:]))
