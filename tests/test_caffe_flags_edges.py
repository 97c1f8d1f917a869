"""caffe.cpp's flag defaults as allconv-caffe parses them, and -logtostderr beside -log_dir
(a mutation round over runtime/caffe_flags.py: a -sighup_effect default of stop passed every
other test)."""
import pytest

from runtime.caffe_flags import as_gflags_reads
from runtime.cli import build_parser


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


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    from tools.tiny_caffe import write_tiny_net
    write_tiny_net(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_logtostderr_writes_no_log_file_even_with_log_dir(workdir, capsys):
    """glog's -logtostderr sends every message to stderr "instead of logfiles": -log_dir
    then makes no file (mutant F17 wrote them)."""
    import logging

    from runtime import caffe_flags
    from runtime.cli import main
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
