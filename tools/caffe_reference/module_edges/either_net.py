"""For the scripts here that run one net in pycaffe or, given the argument ``allconv``, in the
runtime: the package the command line chose, a net of prototxt text, and an array written into
a blob of either (a numpy array in pycaffe, a tensor in the runtime)."""
import sys
import tempfile

import numpy as np


def chosen():
    """(pycaffe, or the runtime for ``allconv``; the name printed before the output)."""
    if sys.argv[1:] == ["allconv"]:
        import runtime
        return runtime, ["allconv"]
    from pycaffe_import import import_caffe
    return import_caffe(), ["caffe"]


def net_of(caffe_like, text, phase):
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    return caffe_like.Net(f.name, phase)


def assign(dst, value):
    if hasattr(dst, "numpy"):
        import torch
        dst[...] = torch.as_tensor(np.asarray(value, np.float32))
    else:
        dst[...] = value
