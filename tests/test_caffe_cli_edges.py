"""allconv-caffe's flags, weights and resume line where a mutation round over runtime/cli.py and
runtime/caffe_flags.py found no test: caffe.cpp's flag defaults, -logtostderr beside -log_dir,
the solver's own weights, and no resume line after a finished run."""
import logging

import pytest
import torch

from runtime import TEST, Net
from runtime.caffe_flags import as_gflags_reads
from runtime.cli import build_parser, main
from runtime.cli_support import run_cli
from test_caffe_cli import SOLVER, workdir  # noqa: F401  (the fixture)


def parsed(argv):
    parser = build_parser()
    return parser.parse_args(as_gflags_reads(argv, parser.commands))


@pytest.mark.parametrize("command", ["train", "test", "time"])
def test_flag_defaults_are_caffe_cpps(command):
    """tools/caffe.cpp: DEFINE_int32(level, 0), DEFINE_int32(iterations, 50),
    DEFINE_string(sigint_effect, "stop"), DEFINE_string(sighup_effect, "snapshot"), the
    string flags "" (not given); main sets FLAGS_alsologtostderr = 1."""
    args = parsed([command])
    assert (args.level, args.iterations, args.sigint_effect, args.sighup_effect) == (
        0, 50, "stop", "snapshot")
    assert all(getattr(args, flag) is None for flag in
               ("solver", "model", "phase", "stage", "snapshot", "weights", "gpu"))
    assert args.alsologtostderr is True and args.logtostderr is False
    assert (args.minloglevel, args.stderrthreshold, args.v) == (0, 2, 0)


def test_train_without_weights_or_snapshot_finetunes_from_the_solvers_weights(workdir, caplog):
    """caffe.cpp (BVLC master) clears the solver's ``weights`` only for -snapshot, and
    replaces them only for -weights: with neither, the solver's own field fills the nets.
    Mutant C06 (no -weights clears the field) trains from the fillers."""
    caplog.set_level(logging.INFO)
    Net("net.prototxt", TEST).save(workdir / "a.caffemodel")
    (workdir / "w.prototxt").write_text(SOLVER.format(max_iter=1) + '\nweights: "a.caffemodel"')
    assert main(["train", "-solver", "w.prototxt"]) == 0
    assert [m for m in caplog.messages if m.startswith("Finetuning")] == [
        "Finetuning from a.caffemodel"] * 2          # the train net and the test net


def test_a_finished_training_gives_no_resume_line(workdir, caplog):
    """The "Stopped at iteration N; resume ... with" line is for a run a signal stopped; one
    that reached max_iter (and snapshotted) ends with "Optimization Done." alone. Mutant C09
    (the line whenever a snapshot exists) prints it."""
    caplog.set_level(logging.INFO)
    (workdir / "s.prototxt").write_text(SOLVER.format(max_iter=4))
    assert main(["train", "-solver", "s.prototxt"]) == 0
    assert (workdir / "snap_iter_4.solverstate").exists()
    assert "Optimization Done." in caplog.messages
    assert not any(m.startswith("Stopped at iteration") for m in caplog.messages)


def test_logtostderr_writes_no_log_file_even_with_log_dir(workdir, capsys):
    """glog's -logtostderr sends every message to stderr "instead of logfiles": -log_dir
    then makes no file (mutant F17 wrote them)."""
    from runtime import caffe_flags
    (workdir / "logs").mkdir()
    try:
        assert main(["time", "-model", "net.prototxt", "-iterations", "1", "-logtostderr",
                     "-log_dir", "logs"]) == 0
    finally:
        for handler in caffe_flags._installed:
            logging.getLogger().removeHandler(handler)
            handler.close()
        caffe_flags._installed[:] = []
    assert list((workdir / "logs").iterdir()) == []


@pytest.mark.parametrize("flag", ["-model", "--model"])
def test_a_value_starting_with_a_minus_follows_either_spelling_of_its_flag(flag):
    """README: the argument after a flag that takes a value is its value, even one starting
    with a minus; gflags reads --model as -model, so ``--model -x.prototxt`` too."""
    args = parsed(["test", flag, "-x.prototxt", "--weights", "-w.caffemodel"])
    assert (args.model, args.weights) == ("-x.prototxt", "-w.caffemodel")


def test_an_unknown_double_dash_number_is_named_as_typed(capsys):
    """_single_dash: ``--1`` is no gflags --name (it stays), so the error names it as given."""
    with pytest.raises(SystemExit):
        parsed(["train", "--1"])
    assert "unrecognized arguments: --1 " in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_several_gpus_under_torchrun_are_each_process_s_own(workdir, capsys, monkeypatch):
    """Under torchrun (WORLD_SIZE 2) -gpu 0,1 is not refused with the torchrun hint: each
    process takes its LOCAL_RANK's GPU; here (no CUDA) it gets as far as asking for one."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "solver4.prototxt", "-gpu",
                                           "0,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "torchrun --nproc_per_node" not in err
    assert err.endswith("-gpu 0,1 asked for, but CUDA is not available here")


@pytest.mark.parametrize("argv, code", [(["train", "--", "-solver", "s.prototxt"], 2),
                                        (["--", "device_query", "-gpu", "0"], 2),
                                        (["-version", "--", "device_query"], 0)])
def test_nothing_after_double_dash_is_a_flag(argv, code, capsys):
    """gflags ends its flags at --; caffe.cpp then runs the one argument left, its command,
    and prints its usage for more (README: '`--` ends the flags'). Before, the flags after
    -- were read as flags."""
    assert run_cli(main, "allconv-caffe", argv) == code
    if code:
        assert "after --, where gflags' flags end, only the command may stand" in \
            capsys.readouterr().err

