"""allconv-caffe: Caffe's train/test/time command line over the runtime, on a tiny net."""
import logging
import os
import re

import numpy as np
import pytest
import torch

from runtime.cli import main
from runtime.cli_support import run_cli
from runtime.errors import AllconvError
from same_weights import assert_same_weights
from tools.tiny_caffe import NET, write_tiny_net

SOLVER = """net: "net.prototxt" test_iter: 2 test_interval: 4 base_lr: 0.1 lr_policy: "fixed"
momentum: 0.9 max_iter: {max_iter} snapshot: 4 snapshot_prefix: "snap" solver_mode: CPU
random_seed: 1 display: 0"""

# TEST-only: a 3-way scoring layer and its softmax, an output of 5 x 3 values per batch
VECTOR_OUTPUT = """layer { name: "extra" type: "InnerProduct" bottom: "pool" top: "extra"
        include { phase: TEST }
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "extra" top: "prob" include { phase: TEST } }
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_tiny_net(tmp_path)
    for max_iter in (4, 8):
        (tmp_path / f"solver{max_iter}.prototxt").write_text(SOLVER.format(max_iter=max_iter))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_resume_equals_uninterrupted(workdir):
    assert main(["train", "-solver", "solver8.prototxt"]) == 0
    (workdir / "snap_iter_8.caffemodel").rename(workdir / "straight.caffemodel")
    assert main(["train", "-solver", "solver8.prototxt", "-snapshot", "snap_iter_4.solverstate"]) == 0
    assert_same_weights("straight.caffemodel", "snap_iter_8.caffemodel")


def test_test_logs_every_element_and_the_loss_as_caffe(workdir, capsys, caplog):
    """caffe test: each element of each output per batch and averaged, "Loss: L", and a loss
    output's weighted share, all logged (caffe.cpp's LOG(INFO); they were printed to stdout,
    and a -log_dir file ended at the batches); the values are the runtime's own passes, summed
    and averaged in float as caffe.cpp does (a double mean printed "loss = 2.30289 (* 1 =
    2.3029 loss)", where Caffe's one float prints alike twice)."""
    from runtime import TEST, Net
    (workdir / "vec.prototxt").write_text(NET + VECTOR_OUTPUT)
    Net("vec.prototxt", TEST).save(workdir / "vec.caffemodel")
    caplog.set_level(logging.INFO)
    assert main(["test", "-model", "vec.prototxt", "-weights", "vec.caffemodel",
                 "-iterations", "2"]) == 0
    assert capsys.readouterr().out == ""
    logged = [r.getMessage() for r in caplog.records]
    lines = logged[next(i for i, line in enumerate(logged) if line.startswith("Loss: ")):]
    net = Net("vec.prototxt", TEST, weights="vec.caffemodel")
    with torch.no_grad():
        runs = [{k: v.flatten().numpy() for k, v in net.forward().items()} for _ in range(2)]
    mean = {k: (runs[0][k] + runs[1][k]) / np.float32(2) for k in runs[0]}     # float32
    loss = float(mean["loss"][0])
    assert lines[0] == f"Loss: {loss:g}"
    assert f"loss = {loss:g} (* 1 = {loss:g} loss)" in lines
    assert [line for line in lines if line.startswith("prob = ")] == [
        f"prob = {float(v):g}" for v in mean["prob"]]
    assert len(mean["prob"]) == 15 and len(set(mean["prob"].tolist())) == 15
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Batch ")]
    assert batches == [f"Batch {i}, {name} = {float(v):g}" for i, run in enumerate(runs)
                       for name, values in run.items() for v in values]
    assert logged[logged.index("Running for 2 iterations.") + 1] == batches[0]


def test_test_sums_and_averages_in_float_as_caffe(workdir, caplog):
    """Seven forwards of the float 9.2008648 sum and average to 9.20087 in float, as
    caffe.cpp keeps them; the runtime averaged in double and printed 9.20086."""
    from runtime import TEST, Net
    (workdir / "const.prototxt").write_text(
        'name: "c" layer { name: "d" type: "DummyData" top: "d" dummy_data_param { shape { '
        'dim: 1 } data_filler { type: "constant" value: 9.200864791870117 } } }')
    Net("const.prototxt", TEST).save(workdir / "const.caffemodel")
    caplog.set_level(logging.INFO)
    assert main(["test", "-model", "const.prototxt", "-weights", "const.caffemodel",
                 "-iterations", "7"]) == 0
    assert [r.getMessage() for r in caplog.records][-1] == "d = 9.20087"


def test_level_and_stage_choose_layers_as_caffe(workdir, capsys):
    """-level replaces the solver's train_state level and -stage adds to its stages (caffe.cpp);
    a layer of an unknown type, included only at level 1 or stage "s", shows which net was
    built."""
    guarded = NET + 'layer { name: "boom" type: "Nonesuch" include { min_level: 1 } }\n' \
        + 'layer { name: "bang" type: "Nonesuch" include { stage: "s" } }\n'
    (workdir / "net.prototxt").write_text(guarded)
    (workdir / "level1.prototxt").write_text(SOLVER.format(max_iter=4)
                                             + " train_state { level: 1 }")
    assert main(["train", "-solver", "level1.prototxt"]) == 0     # -level 0 replaces 1
    for args in (["-level", "1"], ["--stage=x,s"]):
        assert run_cli(main, "allconv-caffe", ["train", "--solver=level1.prototxt", *args]) == 2
        assert "Nonesuch" in capsys.readouterr().err
        assert run_cli(main, "allconv-caffe", ["test", "-model", "net.prototxt", "-weights",
                                               "snap_iter_4.caffemodel", *args]) == 2
        assert "Nonesuch" in capsys.readouterr().err
    assert run_cli(main, "allconv-caffe", ["time", "-model", "net.prototxt", "-phase", "TEST",
                                           "-stage", "s"]) == 2


def test_train_weights_fill_layers_only_the_test_net_has(workdir, monkeypatch):
    """Caffe's CopyLayers copies -weights into the train net and every test net."""
    import runtime.solver
    from runtime import TEST, Net
    (workdir / "vec.prototxt").write_text(NET + VECTOR_OUTPUT)
    source = Net("vec.prototxt", TEST)
    for blob in source.params["extra"]:
        blob.data[...] = 0.25
    source.save(workdir / "extra.caffemodel")
    (workdir / "vec_solver.prototxt").write_text(
        SOLVER.format(max_iter=1).replace("net.prototxt", "vec.prototxt"))
    built = []
    make = runtime.solver.make_solver
    monkeypatch.setattr(runtime.solver, "make_solver", lambda *a, **k: built.append(make(*a, **k))
                        or built[-1])
    assert main(["train", "-solver", "vec_solver.prototxt", "-weights", "extra.caffemodel"]) == 0
    assert all(torch.all(b.data == 0.25) for b in built[0].test_nets[0].params["extra"])


def test_the_solvers_weights_field_fills_every_net_and_the_flags_replace_it(workdir, caplog):
    """Caffe's solver field ``weights`` (each entry a comma list, names trimmed) is copied into
    the train net and every test net; -weights replaces it and -snapshot clears it, as
    caffe.cpp does. Before: the field was read and ignored, without a word."""
    from runtime import TEST, Net
    from runtime.solver import make_solver
    caplog.set_level(logging.INFO)
    (workdir / "vec.prototxt").write_text(NET + VECTOR_OUTPUT)
    for value, name in ((0.25, "a"), (0.5, "b")):
        source = Net("vec.prototxt", TEST)
        for blob in source.params["extra"]:
            blob.data[...] = value
        source.save(workdir / f"{name}.caffemodel")
    solver = SOLVER.format(max_iter=4).replace("net.prototxt", "vec.prototxt")
    (workdir / "w.prototxt").write_text(solver + '\nweights: "b.caffemodel , a.caffemodel"')

    def extra(solver):
        return {float(b.data.flatten()[0]) for b in solver.test_nets[0].params["extra"]}
    assert extra(make_solver("w.prototxt")) == {0.25}              # the later file wins
    assert "Finetuning from a.caffemodel" in caplog.messages
    assert extra(make_solver("w.prototxt", weights=["b.caffemodel"])) == {0.5}
    assert extra(make_solver("w.prototxt", weights=[])) != {0.25}
    caplog.clear()
    assert main(["train", "-solver", "w.prototxt", "-weights", "a.caffemodel, b.caffemodel"]) == 0
    assert [m for m in caplog.messages if m.startswith("Finetuning")] == [
        "Finetuning from a.caffemodel", "Finetuning from b.caffemodel"] * 2   # train, test net
    caplog.clear()
    (workdir / "w.prototxt").write_text(solver.replace("max_iter: 4", "max_iter: 5")
                                        + '\nweights: "missing.caffemodel"')
    assert main(["train", "-solver", "w.prototxt", "-snapshot", "snap_iter_4.solverstate"]) == 0
    assert not any(m.startswith("Finetuning") for m in caplog.messages)
    with pytest.raises(AllconvError, match="^missing.caffemodel: no such file$"):
        make_solver("w.prototxt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_device_query_without_cuda_is_one_line(capsys):
    assert run_cli(main, "allconv-caffe", ["device_query", "-gpu", "0"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_device_query_all_is_every_device_as_caffe_get_gpus(monkeypatch, capsys):
    """caffe.cpp's get_gpus: -gpu all is each device the machine has, ids one each; an id past
    them is one line (three GPUs stood in for by torch.cuda's answers)."""
    class Properties:
        name, major, minor, total_memory, multi_processor_count = "Fake", 9, 0, 80, 132
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    for gpu, ids in (("all", ["0", "1", "2"]), ("2,1", ["2", "1"])):
        assert main(["device_query", "-gpu", gpu]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line.split()[-1] for line in out if line.startswith("Device id:")] == ids
    assert run_cli(main, "allconv-caffe", ["device_query", "-gpu", "0,3"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "-gpu 0,3: this machine has 3 GPU(s), ids 0 to 2")


def test_time_logs_caffe_lines_per_layer_and_in_all(workdir, capsys, caplog):
    """caffe.cpp's time: per layer (net order, Caffe's setw(10) and tab), then the averages
    and the total, logged as caffe.cpp's LOG(INFO) (not printed); a layer's backward spans
    the diffs it computes."""
    caplog.set_level(logging.INFO)
    assert main(["time", "-model", "net.prototxt", "-iterations", "3"]) == 0
    assert capsys.readouterr().out == ""
    logged = [r.getMessage() for r in caplog.records]
    out = logged[logged.index("Average time per layer: "):]
    per_layer = [line.split("\t") for line in out[1:] if "\t" in line]
    assert [(name.strip(), rest.split(":")[0]) for name, rest in per_layer] == [
        (name, phase) for name in ("data", "conv", "pool", "loss")
        for phase in ("forward", "backward")]
    assert out[1] == f"{'data':>10}\tforward: " + out[1].split(": ")[1]
    ms = {(name.strip(), rest.split(":")[0]): float(rest.split(": ")[1].removesuffix(" ms."))
          for name, rest in per_layer}
    assert ms["data", "backward"] == 0 and ms["conv", "backward"] > 0 and ms["pool", "backward"] > 0
    total = {line.split(": ")[0]: float(line.split(": ")[1].removesuffix(" ms."))
             for line in out if line.startswith(("Average F", "Average B", "Total"))}
    assert list(total) == ["Average Forward pass", "Average Backward pass",
                           "Average Forward-Backward", "Total Time"]
    for phase, key in (("forward", "Average Forward pass"), ("backward", "Average Backward pass")):
        assert 0 < sum(v for (_, p), v in ms.items() if p == phase) <= total[key] * 1.001
    assert total["Total Time"] == pytest.approx(3 * total["Average Forward-Backward"], rel=1e-3)


def test_the_layer_timer_leaves_no_hook_behind(workdir):
    """Its module hooks go at the end, and the hooks it puts on learnable blobs (which outlive
    a pass) after each backward: later passes run as before."""
    from runtime import TRAIN, Net
    from runtime.layer_timer import LayerTimer
    net = Net("net.prototxt", TRAIN)
    with LayerTimer(net, lambda: None) as timer:
        for _ in range(3):
            net.loss().backward()
            timer.collect_backward()
        assert all(not p._backward_hooks for p in net.learnable_params)
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in net.layers)
    assert timer.backward["conv"] > 0


def test_time_builds_the_net_of_its_phase(workdir, caplog):
    """-phase TEST times the TEST net: its extra layers and the splits they need, in Caffe's
    order (TRAIN, the default, has neither)."""
    (workdir / "vec.prototxt").write_text(NET + VECTOR_OUTPUT)
    caplog.set_level(logging.INFO)
    for args, layers in (([], ["data", "conv", "pool", "loss"]),
                         (["-phase", "TEST"], ["data", "label_data_1_split", "conv", "pool",
                                               "pool_pool_0_split", "loss", "accuracy",
                                               "extra", "prob"])):
        caplog.clear()
        assert main(["time", "-model", "vec.prototxt", "-iterations", "1", *args]) == 0
        out = [r.getMessage() for r in caplog.records]
        assert [line.split("\t")[0].strip() for line in out if "\tforward" in line] == layers


@pytest.mark.parametrize("extra, message", [
    # Caffe's timed loop calls every layer's Backward, a layer that reaches no loss included
    ('layer { name: "th" type: "Threshold" bottom: "pool" top: "m" }',
     "layer 'th' \\(Threshold\\): Caffe's time runs every layer's Backward, and the "
     "Threshold layer has none"),
    # ... after the net's own Backward, which aborts where the step's input needs a diff
    ('layer { name: "th" type: "Threshold" bottom: "pool" top: "m" }\n'
     'layer { name: "l2" type: "EuclideanLoss" bottom: "m" bottom: "pool" top: "l2" }',
     "layer 'th' \\(Threshold\\): Caffe's Threshold layer has no backward$"),
])
def test_time_refuses_a_backward_caffe_aborts_in(workdir, capsys, extra, message):
    import re
    (workdir / "th.prototxt").write_text(NET + extra)
    assert run_cli(main, "allconv-caffe", ["time", "-model", "th.prototxt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err)


@pytest.mark.parametrize("args, message", [
    (["train", "-solver", "solver4.prototxt", "-snapshot", "a", "-weights", "b"], "not both"),
    (["train", "-solver", "missing.prototxt"], "missing.prototxt"),
    # a net given as the solver, or a solver as the net: said, not 40 valid fields
    (["train", "-solver", "net.prototxt"], "(a field of NetParameter: this file is a net, not "
                                           "a solver)"),
    (["time", "-model", "solver4.prototxt"], "(a field of SolverParameter: this file is a "
                                             "solver, not a net)"),
    (["test", "-model", "net.prototxt"], "Need model weights to score."),
    # a misspelt flag is named, not the required ones it leaves out; no prefix is taken
    (["test", "-modle", "net.prototxt"], "unrecognized arguments: -modle net.prototxt (did you "
                                         "mean -model?)"),
    (["time", "-mod", "net.prototxt"], "unrecognized arguments: -mod net.prototxt (did you mean "
                                       "-model?)"),
    # found by a new user: "-noverify (did you mean -solver?)"; no flag is near it
    (["time", "-model", "net.prototxt", "-noverify"], "unrecognized arguments: -noverify (see "),
    # a missing -snapshot or -weights is said before the solver and its nets are built (here
    # the solver file is missing too, and the snapshot is named)
    (["train", "-solver", "missing.prototxt", "-snapshot", "gone.solverstate"],
     "gone.solverstate: no such file"),
    (["train", "-solver", "solver4.prototxt", "-weights", "net.caffemodel,gone.caffemodel"],
     "net.caffemodel: no such file"),
    # an empty flag is not given, as gflags has it: caffe.cpp's checks of the flags it needs
    (["train", "-solver", ""], "Need a solver definition to train."),
    (["train", "-solver", "solver4.prototxt", "-weights", ","], "argument -weights: ',' names "
                                                                "no file"),
    # before: ".: is a directory" (the empty name was opened)
    (["train", "-solver", "solver4.prototxt", "-weights", "tiny_iter_4.caffemodel,"],
     "weights tiny_iter_4.caffemodel,: an empty file name in the comma list"),
    (["test", "-model", "", "-weights", "w"], "Need a model definition to score."),
    (["test", "-model", "net.prototxt", "-weights", ""], "Need model weights to score."),
    (["time", "-model", " "], "Need a model definition to time."),
    (["device_query", "-gpu", ""], "Need a device ID to query."),
    # gflags' int32 flags: before, a traceback (ValueError: Value out of range) or 2^31 runs
    (["train", "-solver", "solver4.prototxt", "-level", "2147483648"],
     "argument -level: must be at most 2147483647 (a 32-bit flag), not 2147483648"),
    (["time", "-model", "net.prototxt", "-level", "-2147483649"],
     "argument -level: must be at least -2147483648 (a 32-bit flag), not -2147483649"),
    (["time", "-model", "net.prototxt", "-iterations", "2147483648"],
     "argument -iterations: must be at most 2147483647 (a 32-bit flag)"),
    (["train", "-solver", "solver4.prototxt", "-snapshot", "tiny_iter_4.caffemodel"],
     "a .caffemodel holds weights, not a solver state; give it as -weights"),
    (["time", "-model", "net.prototxt", "-gpu", "abc"],
     "argument -gpu: 'abc': give a GPU id (0), ids (0,1) or all"),
])
def test_errors_are_one_line(workdir, capsys, args, message):
    assert run_cli(main, "allconv-caffe", args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_binary_file_in_a_text_files_place_is_named_for_what_it_is(workdir, capsys):
    """Found by a new user: a .caffemodel given as -model was parsed as text ("2:5: ... no
    field named "tiny""), a .solverstate as -weights was "truncated or corrupt"."""
    assert main(["train", "-solver", "solver4.prototxt"]) == 0
    for args, message in [
            (["time", "-model", "snap_iter_4.caffemodel"], "snap_iter_4.caffemodel: a binary "
             "file, a .caffemodel (trained weights: give it as -weights or --weights), not a "
             "text NetParameter prototxt"),
            (["train", "-solver", "snap_iter_4.solverstate"], "snap_iter_4.solverstate: a "
             "binary file, a .solverstate (a solver's history: train -snapshot resumes from "
             "it), not a text SolverParameter prototxt"),
            (["test", "-model", "net.prototxt", "-weights", "snap_iter_4.solverstate"],
             "snap_iter_4.solverstate is a .solverstate (a solver's history: train -snapshot "
             "resumes from it), not a binary NetParameter")]:
        capsys.readouterr()
        assert run_cli(main, "allconv-caffe", args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_noalsologtostderr_without_log_dir_logs_to_glogs_temp_folder(workdir, capsys,
                                                                     monkeypatch):
    """The log went nowhere; glog writes its files to $TMPDIR (or /tmp) without -log_dir."""
    monkeypatch.setenv("TMPDIR", str(workdir / "logs"))
    (workdir / "logs").mkdir()
    assert main(["time", "-model", "net.prototxt", "-iterations", "1",
                 "-noalsologtostderr"]) == 0
    assert "Benchmark ends" not in capsys.readouterr().err
    assert "*** Benchmark ends ***" in (workdir / "logs" / "allconv-caffe.INFO").read_text()


def test_the_severity_link_moves_to_the_newest_log_file(workdir, capsys):
    """glog's <program>.INFO link names the newest INFO file: an earlier run's link (here to a
    file of another name) is replaced, not kept."""
    logs = workdir / "logs"
    logs.mkdir()
    (logs / "allconv-caffe.old.log.INFO.20200101-000000.1").write_text("old\n")
    (logs / "allconv-caffe.INFO").symlink_to("allconv-caffe.old.log.INFO.20200101-000000.1")
    assert main(["time", "-model", "net.prototxt", "-iterations", "1", "-log_dir", "logs"]) == 0
    target = os.readlink(logs / "allconv-caffe.INFO")
    assert target != "allconv-caffe.old.log.INFO.20200101-000000.1" and ".log.INFO." in target
    assert "*** Benchmark ends ***" in (logs / target).read_text()


def test_every_command_takes_every_flag_and_glogs_as_gflags_does(workdir, capsys):
    """caffe.cpp's flags are global: a command ignores the ones it does not use (before:
    "unrecognized arguments"); glog's -log_dir writes the log to a file named as glog names
    it, and -minloglevel drops what is below it."""
    (workdir / "logs").mkdir()
    assert main(["train", "-solver", "solver4.prototxt", "-iterations", "2", "-model",
                 "net.prototxt", "-phase", "TEST", "-logtostderr=false", "--log_dir=logs",
                 "-alsologtostderr=1", "-v", "1"]) == 0
    log = (workdir / "logs" / "allconv-caffe.INFO").read_text()
    assert "Optimization Done." in log and "Iteration 4, Testing net (#0)" in log
    files = sorted(p.name for p in (workdir / "logs").iterdir())
    assert len(files) == 2 and files[1].startswith("allconv-caffe.") and ".log.INFO." in files[1]
    assert main(["test", "-model", "net.prototxt", "-weights", "snap_iter_4.caffemodel",
                 "-iterations", "1", "-solver", "x", "-snapshot", "y", "-sigint_effect",
                 "none", "-log_dir", "logs", "-minloglevel", "1"]) == 0
    newest = (workdir / "logs" / "allconv-caffe.INFO").read_text()
    # nothing below WARNING: the same file (one pid and second) as it was, or a new file of
    # glog's three-line header alone (its time may be a later second's)
    assert newest == log or (newest.startswith("Log file created at: ")
                             and len(newest.splitlines()) == 3), newest
    assert main(["time", "-model", "net.prototxt", "-iterations", "1", "-weights", "w",
                 "-nologtostderr", "-stderrthreshold", "2"]) == 0
    assert run_cli(main, "allconv-caffe", ["time", "-model", "net.prototxt",
                                           "-logtostderr=maybe"]) == 2
    assert "argument -logtostderr: 'maybe' is not a boolean" in capsys.readouterr().err


def test_the_log_has_glogs_header_and_line_prefix(workdir, capsys):
    """As Caffe's logs, which BVLC's tools/extra/parse_log.py reads (month, day, time with
    microseconds from each line's first two fields; the start at "Solving")."""
    (workdir / "logs").mkdir()
    assert main(["train", "-solver", "solver4.prototxt", "-log_dir", "logs"]) == 0
    lines = (workdir / "logs" / "allconv-caffe.INFO").read_text().splitlines()
    assert lines[0].startswith("Log file created at: ") and lines[1].startswith("Running on")
    assert lines[2] == "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg"
    prefix = re.compile(r"([IWEF])(\d\d)(\d\d) \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+\.py:\d+\] ")
    found = [prefix.match(line) for line in lines[3:]]
    # glog prints a message's lines after its first as they are: the solver's parameters
    dump = next(i for i, line in enumerate(lines[3:]) if line.endswith("from parameters: "))
    end = next(i for i in range(dump + 1, len(found)) if found[i])
    assert lines[3 + dump + 1] == "test_iter: 2" and not any(found[dump + 1:end])
    unprefixed = [line for i, (line, m) in enumerate(zip(lines[3:], found))
                  if not m and not dump < i < end]
    assert unprefixed == []
    solving = prefix.match(next(line for line in lines if line.endswith("] Solving tiny")))
    assert solving[1] == "I" and 1 <= int(solving[2]) <= 12 and 1 <= int(solving[3]) <= 31
    assert any(line.endswith("] Optimization Done.") for line in lines)
    # a failure's line is in the file too (glog's holds a failed CHECK's), and once on stderr
    (workdir / "fail").mkdir()
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "nosuch.prototxt",
                                           "-log_dir", "fail"]) == 2
    last = (workdir / "fail" / "allconv-caffe.INFO").read_text().splitlines()[-1]
    assert re.fullmatch(r"E\d{4} [\d:.]+ +\d+ \w+\.py:\d+\] nosuch.prototxt: no such file", last)
    # glog's WARNING and ERROR files (and links), made at their first line, hold it too
    for severity in ("WARNING", "ERROR"):
        lines = (workdir / "fail" / f"allconv-caffe.{severity}").read_text().splitlines()
        assert lines[2].startswith("Log line format: ") and lines[3:] == [last]
        assert not (workdir / "logs" / f"allconv-caffe.{severity}").exists()   # none there


def test_a_solvers_net_is_read_from_the_current_folder_and_said_so(workdir, capsys,
                                                                    monkeypatch):
    """As Caffe does; run from another folder, the error names the solver's field and folder."""
    (workdir / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\n')
    (workdir / "elsewhere").mkdir()
    monkeypatch.chdir(workdir / "elsewhere")
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "../solver.prototxt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: the solver's net: net.prototxt: no such file (relative to the "
                        f"current folder {workdir / 'elsewhere'})")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
@pytest.mark.parametrize("command", [["time", "-model", "net.prototxt"],
                                     ["test", "-model", "net.prototxt", "-weights", "none"]])
def test_gpu_flag_without_cuda(workdir, capsys, command):
    """Said before the net loads (``test`` loaded it, and its weights, first)."""
    assert run_cli(main, "allconv-caffe", command + ["-gpu", "0"]) == 2
    err = capsys.readouterr().err
    assert "-gpu 0 asked for, but CUDA is not available here" in err
    assert len(err.strip().splitlines()) == 1


def test_an_empty_gpu_flag_is_not_given(workdir, caplog):
    """gflags' -gpu "" is its default: the CPU, as without the flag."""
    caplog.set_level("INFO")
    assert run_cli(main, "allconv-caffe", ["time", "-model", "net.prototxt", "-iterations", "1",
                                           "-gpu", ""]) == 0
    assert "Use CPU." in caplog.text


def test_solver_net_path_with_a_nul_byte_is_one_line(workdir, capsys):
    (workdir / "nul.prototxt").write_text(SOLVER.format(max_iter=4).replace(
        'net: "net.prototxt"', 'net: "net\\000.prototxt"'))
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "nul.prototxt"]) == 2
    err = capsys.readouterr().err
    assert "'net\\x00.prototxt': not a usable path: embedded null byte" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("snapshot", ["snapshot: 4", "snapshot: 0"])
def test_a_snapshot_prefix_with_a_nul_byte_is_refused_before_training(workdir, capsys,
                                                                      snapshot):
    """Found by a new user: it trained, and failed at its first snapshot (iteration 19,531
    of a generated solver); snapshot_after_train writes one too."""
    (workdir / "nul.prototxt").write_text(SOLVER.format(max_iter=4).replace(
        'snapshot_prefix: "snap"', 'snapshot_prefix: "a\\000b"').replace("snapshot: 4", snapshot))
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "nul.prototxt"]) == 2
    err = capsys.readouterr().err
    assert "snapshot_prefix 'a\\x00b' holds a NUL byte, which no file name can" in err, err
    assert not list(workdir.glob("a*")) and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["test", "-model", "net.prototxt", "-weights", "w"],
                                     ["time", "-model", "net.prototxt"]])
@pytest.mark.parametrize("iterations", ["0", "-3"])
def test_iterations_must_be_positive(workdir, capsys, command, iterations):
    assert run_cli(main, "allconv-caffe", command + ["-iterations", iterations]) == 2
    err = capsys.readouterr().err
    assert f"argument -iterations: must be positive, not {iterations}" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_solver_mode_gpu_without_cuda_says_so_and_runs_on_the_cpu(workdir, caplog):
    (workdir / "gpu.prototxt").write_text(SOLVER.format(max_iter=4).replace(
        "solver_mode: CPU", "solver_mode: GPU device_id: 1"))
    with caplog.at_level("INFO"):
        assert main(["train", "-solver", "gpu.prototxt"]) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert ("solver_mode is GPU (device_id 1), but CUDA is not available here: running on the "
            "CPU") in messages
    assert messages.index("Use CPU.") < messages.index("Solving tiny")


def test_cpu_solver_names_the_cpu(workdir, caplog):
    with caplog.at_level("INFO"):
        assert main(["train", "-solver", "solver4.prototxt"]) == 0
    assert "Use CPU." in [r.getMessage() for r in caplog.records]


@pytest.mark.gpu
def test_solver_mode_gpu_uses_the_gpu_without_a_flag(workdir, caplog):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    (workdir / "gpu.prototxt").write_text(SOLVER.format(max_iter=4).replace(
        "solver_mode: CPU", "solver_mode: GPU"))
    with caplog.at_level("INFO"):
        assert main(["train", "-solver", "gpu.prototxt"]) == 0
    assert any(r.getMessage().startswith("Using GPU 0: ") for r in caplog.records)


@pytest.mark.parametrize("escape", ["\\n", "\\r", "\\x0c", "\\u2028"])
def test_error_quoting_a_line_break_stays_one_line(workdir, capsys, escape):
    """Found by tools/fuzz.py: a layer type holding a newline (later a carriage return) made
    a two-line error."""
    (workdir / "nl.prototxt").write_text(
        f'layer {{ name: "x" type: "Convolutio{escape}" top: "x" }}')
    assert run_cli(main, "allconv-caffe", ["time", "-model", "nl.prototxt"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"(Convolutio{escape}): unknown layer" in err


def test_train_under_torchrun_is_caffes_multi_gpu_batch(workdir):
    """Two gloo processes, each taking batch_size from the shared stream in turn and averaging
    the gradients (Caffe's multi-GPU), train what one process trains with iter_size 2."""
    import os
    import sys
    from pathlib import Path
    from process_group import run_group

    root = Path(__file__).resolve().parent.parent
    (workdir / "two.prototxt").write_text(SOLVER.format(max_iter=4).replace('"snap"', '"two"'))
    (workdir / "one.prototxt").write_text(
        SOLVER.format(max_iter=4).replace('"snap"', '"one"') + "\niter_size: 2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone",
                      "--nproc_per_node", "2", "-m", "runtime.cli", "train",
                      "-solver", "two.prototxt"], timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Use CPU.") == 1, done.stderr[-3000:]   # only process 0 logs
    assert main(["train", "-solver", "one.prototxt"]) == 0
    assert_same_weights("one_iter_4.caffemodel", "two_iter_4.caffemodel", rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in workdir.glob("two_iter_*")) == [
        "two_iter_4.caffemodel", "two_iter_4.rngstate", "two_iter_4.solverstate"]


def test_several_gpus_outside_torchrun_say_how_to_launch(workdir, capsys, monkeypatch):
    """-gpu 0,1, or all on a machine of two GPUs (all on one is that one, as in Caffe); where
    CUDA is missing, that, not a torchrun command that would fail the same way."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "solver4.prototxt",
                                           "-gpu", "0,1"]) == 2
    assert capsys.readouterr().err.strip().endswith("-gpu 0,1 asked for, but CUDA is not "
                                                    "available here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for gpu in ("0,1", "all"):
        code = run_cli(main, "allconv-caffe", ["train", "-solver", "solver4.prototxt", "-gpu", gpu])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "torchrun --nproc_per_node N $(which allconv-caffe) train" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_all_gpus_of_a_one_gpu_machine_is_that_gpu_not_a_torchrun_launch(workdir, capsys,
                                                                         monkeypatch):
    """caffe.cpp's get_gpus: -gpu all on a machine of one GPU trains on it, in one process;
    here (no CUDA in fact) that gets as far as asking for the device."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "solver4.prototxt", "-gpu",
                                           "all"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "-gpu all asked for, but CUDA is not available here")


def test_label_past_the_class_count_is_one_line(workdir, capsys):
    """The loss takes the 2-channel data, pooled, as its scores, while the labels go up to 2:
    Caffe's release build reads out of bounds; here one line names the layer and the label."""
    net = (workdir / "net.prototxt").read_text().replace(
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool"',
        'layer { name: "flat" type: "Pooling" bottom: "data" top: "flat"\n'
        '        pooling_param { pool: AVE global_pooling: true } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "flat"')
    (workdir / "bad.prototxt").write_text(net)
    (workdir / "bad_solver.prototxt").write_text(
        SOLVER.format(max_iter=4).replace("net.prototxt", "bad.prototxt"))
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "bad_solver.prototxt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "layer 'loss' (SoftmaxWithLoss): label 2 is outside its 2 classes (0 to 1)" in err


DUMMY_NET = """name: "dummy"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_snapshots_go_to_the_prefix_relative_to_the_current_folder(workdir):
    """As in Caffe, snapshot_prefix (like net:) is relative to the folder train runs in, not
    to the solver file's; a DummyData net's snapshot keeps its refilling generator's state
    (it raised a TypeError there before)."""
    (workdir / "conf").mkdir()
    (workdir / "snaps").mkdir()
    (workdir / "dummy.prototxt").write_text(DUMMY_NET)
    (workdir / "conf" / "solver.prototxt").write_text(
        'net: "dummy.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 3 '
        'snapshot_prefix: "snaps/run" solver_mode: CPU display: 0')
    assert main(["train", "-solver", "conf/solver.prototxt"]) == 0
    assert sorted(p.name for p in (workdir / "snaps").iterdir()) == [
        "run_iter_3.caffemodel", "run_iter_3.rngstate", "run_iter_3.solverstate"]
    assert not (workdir / "conf" / "snaps").exists()


def test_weights_sharing_no_layer_load_as_caffe_with_one_warning(workdir, capsys, caplog):
    """Caffe's CopyTrainedLayersFrom: "Ignoring source layer" for file layers the net lacks,
    net layers the file lacks keep their fillers; before, nothing said so. The warning is one
    line, as every warning of a CLI."""
    import numpy as np
    from runtime.caffemodel import write_weights
    write_weights("lstm.caffemodel", [("lstm", "LSTM", [np.zeros((8, 2), np.float32)])])
    with caplog.at_level("INFO"):
        assert run_cli(main, "allconv-caffe", ["test", "-model", "net.prototxt", "-weights",
                                               "lstm.caffemodel", "-iterations", "1"]) == 0
    assert "Ignoring source layer lstm" in [r.getMessage() for r in caplog.records]
    assert capsys.readouterr().err == (
        "allconv-caffe test: warning: lstm.caffemodel: no weights for layer(s) conv (the file "
        "has: lstm); they keep their fillers' values\n")


def test_a_warning_is_one_line(workdir, capsys):
    """A layer without weight_filler: before, Python's two-line UserWarning quoting
    ``self.add_weights(...)``."""
    net = (workdir / "net.prototxt").read_text().replace(' weight_filler { type: "msra" }', "")
    (workdir / "bare.prototxt").write_text(net)
    assert run_cli(main, "allconv-caffe", ["time", "-model", "bare.prototxt",
                                           "-iterations", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("allconv-caffe time: warning: layer 'conv'") and err.count("\n") == 1, err


def test_train_from_weights_warns_of_no_filler_that_the_weights_replace(workdir, capsys,
                                                                        caplog):
    """-weights (or -snapshot) replaces the fillers: Caffe says nothing of a layer without a
    weight_filler then; a train warned, for every such layer of every net. caffe.cpp's
    CopyLayers logs each file ("Finetuning from")."""
    caplog.set_level(logging.INFO)
    net = (workdir / "net.prototxt").read_text().replace(' weight_filler { type: "msra" }', "")
    (workdir / "bare.prototxt").write_text(net)
    (workdir / "bare_solver.prototxt").write_text(
        SOLVER.format(max_iter=2).replace("net.prototxt", "bare.prototxt"))
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "bare_solver.prototxt"]) == 0
    assert "has no weight_filler" in capsys.readouterr().err
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "bare_solver.prototxt",
                                           "-weights", "snap_iter_2.caffemodel"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "Finetuning from snap_iter_2.caffemodel" in caplog.messages


def test_resume_tests_the_same_images_as_an_uninterrupted_run(workdir):
    """test_iter 1 reads half the test set: the test net's read position is in the snapshot."""
    from runtime.solver import make_solver
    (workdir / "half.prototxt").write_text(
        SOLVER.format(max_iter=8).replace("test_iter: 2", "test_iter: 1"))
    straight = make_solver("half.prototxt")
    straight.solve()
    resumed = make_solver("half.prototxt")
    resumed.solve(resume_file="snap_iter_4.solverstate")
    assert resumed.mean_scores == straight.mean_scores


def test_a_stop_asked_for_while_testing_stops_before_the_next_update(workdir, caplog):
    """Caffe's Test asks for requested actions before each batch; after TestAll, Step stops."""
    from runtime.solver import make_solver
    (workdir / "late.prototxt").write_text(
        SOLVER.format(max_iter=8) + "\ntest_initialization: false")
    solver = make_solver("late.prototxt")
    requests = iter([None] * 4 + ["stop"])      # after updates 1-4, then the test at 4
    solver.action_function = lambda: next(requests, None)
    with caplog.at_level("INFO", logger="allconv.solver"):
        solver.solve()
    assert solver.iter == 4 and solver.requested_early_exit
    assert "Test interrupted." in caplog.text and "Optimization stopped early." in caplog.text
    assert not (workdir / "snap_iter_5.caffemodel").exists()


@pytest.mark.parametrize("mine, others, agreed", [(None, None, None), (None, "stop", "stop"),
                                                  ("snapshot", None, "snapshot"),
                                                  ("snapshot", "stop", "stop")])
def test_every_rank_takes_the_strongest_request_of_any(mine, others, agreed):
    """Under torchrun a Ctrl-C may reach one rank an iteration before another: all act alike."""
    from types import SimpleNamespace
    from runtime.solver import Solver
    order = [None, "snapshot", "stop"]

    def smallest(value):       # the all-reduce MIN over this rank and the other
        return torch.minimum(value, torch.tensor(-order.index(others)))
    solver = SimpleNamespace(action_function=lambda: mine,
                             ranks=SimpleNamespace(world=2, device="cpu", min=smallest))
    assert Solver._agreed_request(solver) == agreed


# solver.py:436 dropping `self.snapshot()` in _stopped_while_testing survived: only a
# "stop" asked for during a test is tested. Caffe's Test acts on a SIGHUP "snapshot" before the
# next test batch and goes on testing and training.
def test_a_snapshot_asked_for_while_testing_is_written_and_training_goes_on(workdir):
    from runtime.solver import make_solver
    (workdir / "early.prototxt").write_text(
        SOLVER.format(max_iter=4).replace("snapshot: 4", "snapshot: 0"))
    solver = make_solver("early.prototxt")
    requests = iter(["snapshot"])               # asked for at the first test batch, iteration 0
    solver.action_function = lambda: next(requests, None)
    solver.solve()
    assert (workdir / "snap_iter_0.caffemodel").exists()
    assert (workdir / "snap_iter_0.solverstate").exists()
    assert solver.iter == 4 and not solver.requested_early_exit


def test_running_out_of_memory_is_one_line(capsys):
    """Found by a new user: a deploy net at batch 20,000 under `ulimit -v 6000000` passed the
    per-blob check and ended in torch's allocator traceback; any other RuntimeError still
    escapes (a bug must stay visible)."""
    def exhausted(argv):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 7864320000 bytes. "
                           "Error code 12 (Cannot allocate memory)")
    assert run_cli(exhausted, "allconv-caffe", []) == 2
    assert capsys.readouterr().err == (
        "allconv-caffe: error: out of memory: an allocation of 7.9 GB failed on this machine "
        "(the net's blobs together are too large for its memory or the process's limit); a "
        "smaller batch may fit\n")

    def python_out_of_memory(argv):       # numpy's and Python's own allocations
        raise MemoryError()
    assert run_cli(python_out_of_memory, "allconv-caffe", []) == 2
    assert capsys.readouterr().err == "allconv-caffe: error: out of memory\n"

    def bug(argv):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="mat1"):
        run_cli(bug, "allconv-caffe", [])


@pytest.mark.parametrize("argv, shown", [
    (["time", "-version"], "allconv-caffe: allconv "),
    (["-model", "x", "time", "--version"], "allconv-caffe: allconv "),
    (["train", "-help"], "usage: allconv-caffe train [-h] [-solver SOLVER]"),
    (["-solver", "s", "train", "-help"], "usage: allconv-caffe train [-h]")])
def test_help_and_version_act_after_the_command_as_gflags_takes_them(argv, shown, capsys):
    """Found by fuzzing: `time -version` was "argument -v: 'ersion' is not an integer", and
    `train -help` "ignored explicit argument 'elp'"; caffe.cpp's gflags take both anywhere."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0 and capsys.readouterr().out.startswith(shown)


def test_flags_may_come_before_the_command_as_gflags_takes_them(workdir, caplog):
    """caffe.cpp's gflags take `caffe -model X -iterations 1 time`; allconv-caffe said
    "invalid choice: 'X'". Flags alone name the commands."""
    caplog.set_level(logging.INFO)
    assert main(["-model", "net.prototxt", "-iterations", "1", "time"]) == 0
    assert "*** Benchmark ends ***" in [r.getMessage() for r in caplog.records]
    with pytest.raises(AllconvError, match="no command among the arguments: give one of train, "
                                           "test, time, device_query \\(its flags before or "
                                           "after it\\)"):
        main(["-model", "net.prototxt"])
    # a flag's value that names a command is the flag's (-log_dir train), not the command
    (workdir / "train").mkdir()
    caplog.clear()
    assert main(["-log_dir", "train", "-model", "net.prototxt", "time", "-iterations", "1"]) == 0
    assert list((workdir / "train").glob("allconv-caffe.*INFO*"))


def test_the_resume_line_keeps_the_runs_flags_and_torchrun(monkeypatch):
    """The line a stopped train ends with dropped -gpu, -level and -stage, and torchrun: its
    command resumed as one process (half the batch of two) on the CPU."""
    import argparse
    from runtime.cli import _resume_command
    args = argparse.Namespace(solver="my solver.prototxt", gpu="0", level=2, stage="a,b")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert _resume_command(args, "s_iter_8.solverstate") == (
        "allconv-caffe train -solver 'my solver.prototxt' -gpu 0 -level 2 -stage a,b "
        "-snapshot s_iter_8.solverstate")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")      # two nodes of two
    args = argparse.Namespace(solver="s.prototxt", gpu=None, level=0, stage=None)
    assert _resume_command(args, "s_iter_8.solverstate") == (
        "torchrun --nproc_per_node 2 $(which allconv-caffe) train -solver s.prototxt "
        "-snapshot s_iter_8.solverstate")


@pytest.mark.parametrize("argv", [["time", "-model", "-net.prototxt", "-iterations", "1"],
                                  ["-model", "-net.prototxt", "-iterations", "1", "time"],
                                  ["time", "-alsologtostderr", "-model", "-net.prototxt"],
                                  ["-alsologtostderr", "-model", "-net.prototxt", "time"],
                                  ["time", "-model", "--net.prototxt", "-iterations", "1"],
                                  ["-model", "-net.prototxt", "-iterations", "1", "--", "time"]])
def test_a_flags_value_may_start_with_a_minus_as_gflags_takes_it(workdir, caplog, argv):
    """gflags takes the argument after a flag that needs a value as its value, whatever it
    starts with (allconv-caffe said "argument -model: expected one argument", and read
    --net.prototxt as -net.prototxt); a bool flag takes none; `--` ends the flags."""
    model = argv[argv.index("-model") + 1]
    (workdir / "net.prototxt").rename(workdir / model)
    caplog.set_level(logging.INFO)
    assert main(argv) == 0
    assert "*** Benchmark ends ***" in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("argv, said", [
    (["time", "-model", "-help"], "-help: no such file"),
    (["time", "-model", "net.prototxt", "-alsologtostderr", "0"],
     "unrecognized arguments: 0")])
def test_a_flags_value_is_never_read_as_a_flag_nor_a_bool_flags_argument_as_its_value(
        workdir, capsys, argv, said):
    """gflags: -model's value -help is a file name, not the help; -alsologtostderr alone is
    true, and a 0 after it is an argument of its own (allconv-caffe turned the log off)."""
    code = run_cli(main, "allconv-caffe", argv)
    assert code == 2 and said in capsys.readouterr().err


def test_train_logs_caffes_solver_and_caffe_cpp_lines(workdir, caplog):
    """solver.cpp's Init (the parameters, where each net comes from, "Solver scaffolding
    done.") and caffe.cpp's train ("Resuming from", "Starting Optimization", a second
    "Optimization Done."), in Caffe's order; as caffe.cpp, -snapshot is restored before
    Solve, so Solve's "Restoring previous solver status" is not said (found by comparing
    the logs with real Caffe's)."""
    assert main(["train", "-solver", "solver4.prototxt"]) == 0
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert main(["train", "-solver", "solver8.prototxt", "-snapshot",
                 "snap_iter_4.solverstate"]) == 0
    logged = [r.getMessage() for r in caplog.records]
    assert logged[1].startswith("Initializing solver from parameters: \ntest_iter: 2\n")
    said = [m for m in logged if m.startswith(("Creating", "Solver scaffolding", "Resuming",
                                               "SGDSolver", "Starting", "Solving",
                                               "Restoring", "Optimization"))]
    assert said == ["Creating training net from net file: net.prototxt",
                    "Creating test net (#0) specified by net file: net.prototxt",
                    "Solver scaffolding done.", "Resuming from snap_iter_4.solverstate",
                    "SGDSolver: restoring history", "Starting Optimization", "Solving tiny",
                    "Optimization Done.", "Optimization Done."]
