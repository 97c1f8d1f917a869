"""Load every generated net in real Caffe (pycaffe), in TRAIN and TEST, and record what Caffe saw.

Run by tools/caffe_reference/check_generated_nets.sh under Debian's python3 with pycaffe:
    check_generated_nets.py NETS_DIR OUT_JSON
NETS_DIR holds <variant>.prototxt (train/test form), <variant>_solver.prototxt and
input_sizes.json (each variant's input size, from the generator's registry). Data layers are
swapped for Input layers of the same shape (Caffe's Data layer would need an LMDB), then each net
is instantiated in both phases; the solver is parsed as Caffe's SolverParameter and a CPU
SGDSolver is built from it. The JSON keeps blob shapes and learnable-parameter counts per phase.
"""
import json
import os
import sys
import tempfile

from pycaffe_import import import_caffe

caffe = import_caffe()
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

def with_inputs(net, size, batch):
    """Return a copy of ``net`` whose Data layers are Input layers of the same shapes."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.type == "Data":
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add().dim.extend([batch, 3, size, size])
            layer.input_param.shape.add().dim.extend([batch])
    return out


def inspect(path, phase):
    net = caffe.Net(path, phase)
    return {"blobs": {name: list(blob.data.shape) for name, blob in net.blobs.items()},
            "params": int(sum(b.data.size for blobs in net.params.values() for b in blobs))}


def main(nets_dir, out_json):
    report = {"caffe": caffe.__file__, "nets": {}}
    input_sizes = json.load(open(os.path.join(nets_dir, "input_sizes.json")))
    for name in sorted(f[:-len(".prototxt")] for f in os.listdir(nets_dir)
                       if f.endswith(".prototxt") and not f.endswith("_solver.prototxt")):
        net = text_format.Parse(open(os.path.join(nets_dir, name + ".prototxt")).read(),
                                caffe_pb2.NetParameter())
        with tempfile.TemporaryDirectory() as tmp:
            swapped = os.path.join(tmp, "net.prototxt")
            with open(swapped, "w") as f:
                f.write(text_format.MessageToString(with_inputs(net, input_sizes[name], 2)))
            entry = {"TRAIN": inspect(swapped, caffe.TRAIN), "TEST": inspect(swapped, caffe.TEST)}
            solver = text_format.Parse(open(os.path.join(nets_dir, name + "_solver.prototxt")).read(),
                                       caffe_pb2.SolverParameter())
            solver.net = swapped
            solver.solver_mode = caffe_pb2.SolverParameter.CPU
            solver.snapshot_prefix = os.path.join(tmp, "snap")
            solver_path = os.path.join(tmp, "solver.prototxt")
            with open(solver_path, "w") as f:
                f.write(text_format.MessageToString(solver))
            built = caffe.SGDSolver(solver_path)
            entry["solver"] = {"base_lr": solver.base_lr, "max_iter": solver.max_iter,
                               "stepvalue": list(solver.stepvalue), "iter": built.iter,
                               "test_nets": len(built.test_nets)}
        report["nets"][name] = entry
        print(f"{name:15s} TRAIN {entry['TRAIN']['params']:>11,} params, "
              f"{len(entry['TRAIN']['blobs'])} blobs; TEST {len(entry['TEST']['blobs'])} blobs; "
              "solver ok", flush=True)
    with open(out_json, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
