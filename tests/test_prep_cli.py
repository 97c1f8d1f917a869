"""allconv-prep-cifar writes the whitened sources that gen-prototxt's nets read by default."""
import sys

import numpy as np
import pytest

from runtime import TEST
from runtime.data import cli
from runtime.data.preprocess import Prepared
from runtime.data.source import open_source
from runtime.data.stage_bar import StageBar


def test_writes_default_sources(tmp_path, monkeypatch, capsys):
    """On a terminal, a bar of the stages on stderr; the files written on stdout."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rng = np.random.RandomState(0)
    fake = Prepared(rng.randn(6, 3, 32, 32).astype("f4"), np.arange(6) % 10,
                    rng.randn(4, 3, 32, 32).astype("f4"), np.arange(4), None)
    seen = {}

    def prepared(name, data_dir, verify, stage):
        seen.update(name=name, data_dir=data_dir, verify=verify)
        stage("md5 sums of the files")
        stage("fitting ZCA")
        return fake
    monkeypatch.setattr(cli, "prepared_cifar", prepared)
    assert cli.main(["--data", "somewhere", "--out", str(tmp_path / "data")]) == 0
    assert seen == {"name": "cifar10", "data_dir": "somewhere", "verify": True}
    source = open_source(str(tmp_path / "data" / "cifar10_gcn_zca_test.npz"), TEST)
    data, labels = source(4)
    np.testing.assert_array_equal(data.numpy(), fake.test_images)
    np.testing.assert_array_equal(labels.numpy(), np.arange(4))
    out, err = capsys.readouterr()
    assert "md5 sums of the files" in err and "fitting ZCA" in err           # progress on stderr
    assert "writing the sources" in err and "8/8 stages" in err
    assert "cifar10_gcn_zca_train.npz: 6 images (3, 32, 32)" in out
    assert "cifar10_gcn_zca_test.npz: 4 images (3, 32, 32)" in out
    assert (tmp_path / "data" / "cifar10_gcn_zca_train.npz").is_file()


def test_an_error_clears_the_progress_bar_and_stands_alone(tmp_path, monkeypatch, capsys):
    from runtime.cli_support import run_cli
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run_cli(cli.main, "allconv-prep-cifar", ["--data", str(tmp_path / "none"),
                                                    "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.split("\r")[-1]   # what a terminal shows last
    assert last.startswith("allconv-prep-cifar: error: CIFAR-10 train files not found")
    assert not (tmp_path / "out").exists()


def test_a_log_gets_no_bar_and_hand_made_data_skips_the_md5_check(tmp_path, monkeypatch, capsys):
    """stderr not a terminal (a log, a pipe): no progress lines before the error or the result;
    --no-verify reaches the reader (hand-made CIFAR files have other md5 sums)."""
    from runtime.cli_support import run_cli
    assert run_cli(cli.main, "allconv-prep-cifar", ["--data", str(tmp_path / "none"),
                                                    "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("allconv-prep-cifar: error: CIFAR-10 train files not found")
    assert err.count("\n") == 1 and "\r" not in err
    seen = {}

    def prepared(name, data_dir, verify, stage):
        seen.update(verify=verify)
        raise cli.AllconvError("stop here")
    monkeypatch.setattr(cli, "prepared_cifar", prepared)
    assert run_cli(cli.main, "allconv-prep-cifar", ["--no-verify"]) == 2
    assert seen == {"verify": False} and capsys.readouterr().err == \
        "allconv-prep-cifar: error: stop here\n"


def test_out_naming_a_file_is_refused_before_any_whitening(tmp_path, monkeypatch, capsys):
    from runtime.cli_support import run_cli
    monkeypatch.setattr(cli, "prepared_cifar", lambda *a, **k: pytest.fail("nothing is read"))
    (tmp_path / "file").write_text("x")
    assert run_cli(cli.main, "allconv-prep-cifar", ["--data", str(tmp_path),
                                                    "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == (f"allconv-prep-cifar: error: --out {tmp_path / 'file'}: "
                                       "a file, not a folder\n")


def test_an_out_folder_that_takes_no_file_is_refused_before_any_whitening(tmp_path, monkeypatch,
                                                                          capsys):
    """Found by a new user: an immutable --out was refused after 38 s of whitening (776 MB
    of cache written); under a file, or where no folder can be made, it is said first."""
    from runtime import files
    from runtime.cli_support import run_cli
    monkeypatch.setattr(cli, "prepared_cifar", lambda *a, **k: pytest.fail("nothing is read"))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "data"
    assert run_cli(cli.main, "allconv-prep-cifar", ["--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"allconv-prep-cifar: error: --out {out}: a file, not a "
                                       f"folder ({tmp_path / 'file'} is one)\n")

    def refused(**kwargs):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(files.tempfile, "mkdtemp", refused)
    out = tmp_path / "new" / "data"
    assert run_cli(cli.main, "allconv-prep-cifar", ["--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"allconv-prep-cifar: error: --out {out}: cannot write "
                                       f"there: {tmp_path} takes no new file (Operation not "
                                       "permitted)\n")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    monkeypatch.setattr(cli, "prepared_cifar", lambda *a, **k: pytest.fail("nothing is read"))
    long = tmp_path / ("x" * 300)     # before: an UnboundLocalError traceback
    assert run_cli(cli.main, "allconv-prep-cifar", ["--out", str(long)]) == 2
    assert capsys.readouterr().err == (f"allconv-prep-cifar: error: --out {long}: cannot write "
                                       "there: cannot reach it (File name too long)\n")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_ends_a_command_as_ctrl_c_leaving_no_temporary_file(
        tmp_path, signame, default_stop_signals):
    """Found by fuzzing: SIGTERM killed allconv-prep-cifar silently in its LMDB write and left
    its ~600 MB .partial folder; every console script (run_command) now unwinds as at Ctrl-C."""
    import signal
    import subprocess
    from pathlib import Path
    script = ("import sys, time\n"
              "from runtime.cli_support import run_command\n"
              "from runtime.files import atomic_writer\n"
              "def main(argv):\n"
              "    with atomic_writer(sys.argv[1]) as f:\n"
              "        f.write(b'x')\n"
              "        print('writing', flush=True)\n"
              "        time.sleep(60)\n"
              "run_command(main, 'cmd')\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out.npz")],
                               cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "writing\n"
    assert [p.name for p in tmp_path.iterdir()] != []          # its temporary file
    process.send_signal(getattr(signal, signame))
    assert process.wait(timeout=30) == 128 + getattr(signal, signame)
    assert process.stderr.read() == f"cmd: interrupted by {signame}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_stage_that_starts_is_not_yet_done(monkeypatch):
    """On a terminal: the bar stands at the number of stages before the one called, and full
    once the work is done."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with StageBar(("reading", "fitting", "writing")) as bar:
        bar("reading")
        assert bar.bar.n == 0
        bar("writing")
        assert bar.bar.n == 2
    assert bar.bar.n == 3
