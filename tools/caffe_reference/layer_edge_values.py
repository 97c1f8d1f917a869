#!/usr/bin/env python3
"""The real-pycaffe values and refusals that tests/test_layers_edges.py hard-codes on the nets
of tests/fixtures/edge_nets. A net Caffe refuses aborts its process (a glog CHECK), so each
refusal runs in a child process and its "Check failed" line is printed; for a net Caffe runs,
its tops are printed (and, where a test needs them, the diffs of a backward).

    PYTHONPATH=/opt/reference-caffe/python:tools/caffe_reference /usr/bin/python3 \\
        tools/caffe_reference/layer_edge_values.py
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

NETS = Path(os.environ.get("EDGE_NETS", Path(__file__).resolve().parents[2] / "tests" / "fixtures"
                           / "edge_nets"))

# nets real Caffe refuses: the CHECK each fails
REFUSED = ["conv_bottoms_differ_in_batch", "conv3d_two_kernel_values", "pool_global_stride2",
           "pool_output_size_0", "ip_axis_out_of_range",
           "concat_bottoms_differ_in_axes", "batchnorm_3_channels", "dummy_two_fillers_three_tops",
           "infogain_h_bottom_2d"]
# (infogain_h_bottom_2d has no test: the runtime's InfogainLoss is master's, which checks only
# H's count; README, deviations)
# nets whose input is reshaped after they are built (then net.reshape())
RESHAPED = {"batchnorm_3_channels": ("x", (2, 4, 2, 2))}


def check_failure(name: str) -> str:
    """The CHECK that building and running net ``name`` fails, or 'ran' where it runs."""
    env = dict(os.environ, GLOG_minloglevel="0")
    done = subprocess.run([sys.executable, __file__, "--run", name], capture_output=True,
                          text=True, env=env)
    found = re.search(r"Check failed: .*", done.stderr)
    return found.group(0) if found else f"ran (exit {done.returncode}): {done.stdout.strip()}"


def run(name: str) -> dict:
    """The tops of net ``name`` after a forward."""
    from pycaffe_import import import_caffe
    caffe = import_caffe()
    net = caffe.Net(str(NETS / f"{name}.prototxt"), caffe.TEST)
    return {k: v.copy() for k, v in net.forward().items()}


def values():
    """The forward (and backward) values each test holds, by net."""
    from pycaffe_import import import_caffe
    caffe = import_caffe()
    f32 = np.float32

    def net(name, **inputs):
        n = caffe.Net(str(NETS / f"{name}.prototxt"), caffe.TEST)
        for key, value in inputs.items():
            n.blobs[key].reshape(*np.shape(value))
            n.blobs[key].data[...] = value
        n.reshape()
        return n

    def show(name, **arrays):
        for key, value in arrays.items():
            value = np.asarray(value)
            text = np.array2string(value.ravel(), precision=9, max_line_width=150)
            print(f"{name}: {key} {value.shape} {text}")

    n = net("log_base10", x=np.array([[10, 100, 0.1]], f32))
    show("log_base10", y=n.forward()["y"])
    n = net("bnll_above_10", x=np.array([[9.5, 10.5, 11, 12]], f32))
    show("bnll_above_10", y=n.forward()["y"])
    n = net("pool_kernel_size_and_kernel_h", x=np.arange(30, dtype=f32).reshape(1, 1, 5, 6))
    show("pool_kernel_size_and_kernel_h", y=n.forward()["y"], shape=n.blobs["y"].data.shape)
    n = net("swl_normalization_beside_normalize", s=np.zeros((2, 3, 2, 2), f32),
            l=np.zeros((2, 1, 2, 2), f32))
    show("swl_normalization_beside_normalize", loss=n.forward()["loss"])
    n = net("accuracy_axis2", s=(np.arange(24, dtype=f32) * 7 % 11).reshape(2, 3, 4),
            l=np.array([[3, 2, 0], [2, 1, 1]], f32))
    show("accuracy_axis2", acc=n.forward()["acc"])
    n = net("accuracy_top_k_all_classes", s=np.arange(12, dtype=f32).reshape(4, 3),
            l=np.array([0, 1, 2, 0], f32))
    show("accuracy_top_k_all_classes", acc=n.forward()["acc"])
    n = net("lrn_within_no_propagate_down", data=np.arange(9, dtype=f32).reshape(1, 1, 3, 3) / 10,
            t=np.zeros((1, 2, 2, 2), f32), t2=np.ones((1, 2, 2, 2), f32))
    out = n.forward()
    n.backward()
    show("lrn_within_no_propagate_down", loss=out["loss"], loss2=out["loss2"],
         h_diff=n.blobs["h"].diff, w_diff=n.params["conv"][0].diff, b_diff=n.params["conv"][1].diff)
    n = net("eltwise_prod_unstable_large", a=np.array([[1e20, 2]], f32),
            b=np.array([[1e10, 3]], f32))
    y = n.forward()["y"]
    n.blobs["y"].diff[...] = np.array([[1e10, 1e38]], f32)
    n.backward()
    show("eltwise_prod_unstable_large", y=y, a_diff=n.blobs["a"].diff,
         b_diff=n.blobs["b"].diff)
    n = net("bias_scalar_bottom_axis_out_of_range", x=np.arange(6, dtype=f32).reshape(2, 3),
            z=np.array([1, 2, 3, 4], f32))
    show("bias_scalar_bottom_axis_out_of_range", y=n.forward()["y"])
    n = net("scale_learned_one_value_diff_overwritten")
    for x in (3.0, 5.0):
        n.blobs["x"].data[...] = x
        n.blobs["t"].data[...] = 1
        loss = n.forward()["loss"]
        n.backward()
        show(f"scale_learned_one_value_diff_overwritten x={x}", loss=loss,
             factor_diff=n.params["sc"][0].diff)
    n = net("lstm_unit_nan_forget_gate_cont0", c=np.full((1, 2, 1), 2, f32),
            g=np.tile(np.array([0, np.nan, 0, 0.5], f32), 2).reshape(1, 2, 4),
            k=np.array([[0, 1]], f32))
    out = n.forward()
    show("lstm_unit_nan_forget_gate_cont0", c_t=out["c_t"], h_t=out["h_t"])
    n = net("crop_reference_with_more_axes", data=np.arange(16, dtype=f32).reshape(1, 1, 4, 4))
    show("crop_reference_with_more_axes", crop=n.forward()["crop"])
    n = net("labels_fractional", s=np.array([[0.5, 2, -1], [1, -0.5, 0.25]], f32),
            l=np.array([1.7, 0.6], f32),
            H=np.array([[1, 0.5, 0], [0, 1, 0.5], [0.25, 0, 1]], f32).reshape(1, 1, 3, 3))
    out = n.forward()
    show("labels_fractional", **{k: v for k, v in out.items() if k != "p"})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        if sys.argv[2] in RESHAPED:
            from pycaffe_import import import_caffe
            caffe = import_caffe()
            built = caffe.Net(str(NETS / f"{sys.argv[2]}.prototxt"), caffe.TEST)
            blob, shape = RESHAPED[sys.argv[2]]
            built.blobs[blob].reshape(*shape)
            built.reshape()
            print("reshaped")
        else:
            print(run(sys.argv[2]))
        sys.exit(0)
    for name in REFUSED:
        print(f"{name}: {check_failure(name)}")
    values()
