"""What the README and the tools tell a new user holds: paths, prefixes, ignores, messages."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from generator import cli as gen_cli
from runtime.data import cli as prep_cli
from harness.net_transforms import data_as_input, transformed
from runtime import TEST, TRAIN, Net
from runtime.prototxt import parse_solver, read_net
from runtime.cli_support import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SESSION_ROOT = "/wo" "rk/"    # where the checkouts lie on the machines of the sessions (split so
                              # that this file does not match itself)


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_readme_restores_the_snapshot_its_solver_writes(tmp_path, monkeypatch):
    solver_file = re.search(r'SGDSolver\("([^"]+)"\)', README).group(1)
    restored = re.search(r'solver\.restore\("([^"]+)"\)', README).group(1)
    command = next(line for line in README.splitlines()
                   if line.startswith("gen-prototxt") and f"--solver {solver_file}" in line)
    monkeypatch.chdir(tmp_path)
    args = command.split("#")[0].split()[1:]
    assert run_cli(gen_cli.main, "gen-prototxt", args) == 0
    prefix = parse_solver((tmp_path / solver_file).read_text()).snapshot_prefix
    assert restored.startswith(f"{prefix}_iter_"), (restored, prefix)


def test_prep_cifar_output_is_git_ignored():
    _tracked_files()
    out = prep_cli.build_parser().parse_args([]).out
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{out}/cifar10_gcn_zca_train.npz"],
                             cwd=ROOT)
    assert ignored.returncode == 0, f"{out}/ is not in .gitignore"


def test_no_absolute_paths_to_the_shared_folder():
    offenders = [str(p.relative_to(ROOT)) for p in _tracked_files()
                 if p.suffix in {".md", ".sh", ".py", ".toml", ".cfg", ".j2", ""}
                 and SESSION_ROOT in p.read_text(errors="replace")]
    assert offenders == []


def test_readme_setup_gives_the_cpu_build_its_own_line():
    block = README.split("## Set-up and first run", 1)[1].split("```bash", 1)[1].split("```")[0]
    lines = [line for line in block.strip().splitlines() if not line.startswith("#")]
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in lines
    assert any("CPU-only" in line for line in block.splitlines() if line.startswith("#"))


def test_check_generated_nets_says_why_when_the_generator_cannot_run():
    run = subprocess.run(["bash", "tools/caffe_reference/check_generated_nets.sh"], cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false"},
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "the generator does not run with /bin/false" in run.stderr


def test_every_console_script_of_setup_cfg_resolves():
    import configparser
    import importlib
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = [line.split("=") for line in
               config["options.entry_points"]["console_scripts"].strip().splitlines()]
    assert {name.strip() for name, _ in scripts} >= {"export-onnx", "replicate", "visualize"}
    for name, target in scripts:
        module, _, function = target.strip().partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_ctrl_c_while_a_console_script_imports_torch_is_one_line(tmp_path, monkeypatch, capsys):
    """A command is Ctrl-C'd in its first seconds (torch's import): one line and 130, as later."""
    from runtime.console import launch
    (tmp_path / "slow_cli.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        launch("slow_cli", "replicate")
    assert stop.value.code == 130
    assert capsys.readouterr().err == "replicate: interrupted\n"


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_while_a_console_script_imports_torch_is_one_line(tmp_path, name,
                                                                             default_stop_signals):
    """A scheduler's SIGTERM in a command's first seconds: one line and 128 + its number, as
    later, not a silent death; the default handler is back for the command's own."""
    (tmp_path / "term_cli.py").write_text(
        f"import os, signal, time\nos.kill(os.getpid(), signal.{name})\ntime.sleep(5)\n")
    script = ("import signal, sys\nfrom runtime.console import launch\n"
              "try:\n    launch('term_cli', 'replicate')\nfinally:\n"
              f"    assert signal.getsignal(signal.{name}) is signal.SIG_DFL\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"}, timeout=60)
    assert (done.returncode, done.stderr) == (128 + getattr(signal, name),
                                              f"replicate: interrupted by {name}\n")


def test_the_console_scripts_launch_before_protobuf_or_torch_is_imported():
    """Ctrl-C is one line from the launcher's import on: a console script's package reaches it
    without importing protobuf (55 ms) or torch; pycaffe's names are still found on first use."""
    script = ("import sys, generator, harness, visualize, runtime\n"
              "assert not [m for m in sys.modules if m.startswith(('google', 'torch'))]\n"
              "import runtime as caffe\n"
              "print(caffe.TRAIN, caffe.TEST, caffe.proto.caffe_pb2.TEST)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.stdout, done.stderr) == ("0 1 1\n", "")


def test_the_prototxt_parser_imports_and_parses_without_torch():
    """runtime/__init__.py: runtime.prototxt is a light module; torch loads only on the path
    that names a binary file given as a prototxt."""
    script = ("import sys\nfrom runtime.prototxt import parse_net\n"
              "print(parse_net('name: \"x\" layer { name: \"a\" type: \"Input\" top: \"a\" }').name)\n"
              "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.stdout, done.stderr) == ("x\n", "")


def test_ctrl_c_that_an_import_swallows_still_stops_the_command(tmp_path, monkeypatch, capsys,
                                                               default_stop_signals):
    """torch's import swallows a KeyboardInterrupt raised while its C extension imports numpy
    and goes on: the command then ran to its end and exited 0. The signal itself counts."""
    from runtime.console import launch
    (tmp_path / "swallowing_cli.py").write_text(
        "import os, signal\n"
        "try:\n    os.kill(os.getpid(), signal.SIGINT)\nexcept KeyboardInterrupt:\n    pass\n"
        "def entry_point():\n    raise AssertionError('the command ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        launch("swallowing_cli", "replicate")
    assert stop.value.code == 130
    assert capsys.readouterr().err == "replicate: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_reader_that_goes_away_ends_a_command_quietly_as_sigpipe_does():
    """`gen-prototxt --list | head -1`: before, "error:: Broken pipe" and exit 2."""
    import os
    import sys
    script = ("import sys\nfrom runtime.cli_support import run_cli\n"
              "def main(argv):\n    sys.stdout.write('row\\n' * 100_000)\n    sys.stdout.flush()\n"
              "sys.exit(run_cli(main, 'replicate', []))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()                           # the reader is gone before the first write
    assert proc.stderr.read() == b"" and proc.wait() == 141


def test_a_command_started_with_stdout_closed_says_so_where_it_writes_there():
    """`gen-prototxt --variant all-c >&-`: Python's sys.stdout is None; before, an
    AttributeError's traceback. Written to a file (-o), the command runs."""
    import os
    import sys
    script = ("import sys\nsys.argv[0] = 'gen-prototxt'\nfrom generator.cli import entry_point\n"
              "entry_point()\n")
    for extra, status, err in (([], 2, b"gen-prototxt: error: standard output is closed\n"),
                               (["-o", "net.prototxt"], 0, b"wrote net.prototxt\n")):
        with tempfile.TemporaryDirectory() as folder:
            proc = subprocess.run([sys.executable, "-c", script, "--variant", "all-c", *extra],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  preexec_fn=lambda: os.close(1))
        assert (proc.returncode, proc.stderr) == (status, err), extra


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_commands_work_leaves_with_its_status(name):
    """A Ctrl-C or SIGTERM while the interpreter shuts down (here from an exit handler, as
    torch's teardown gives it a second): the command's own status, no traceback."""
    script = ("import atexit, os, signal, sys, time\nfrom runtime.cli_support import run_command\n"
              "def main(argv):\n    print('done')\n"
              f"    atexit.register(lambda: (os.kill(os.getpid(), signal.{name}), time.sleep(5)))\n"
              "run_command(main, 'replicate')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


def test_a_command_started_with_stderr_closed_runs_and_its_status_says_the_rest():
    """`allconv-prep-cifar ... 2>&-`: Python's sys.stderr is None, which a progress bar asked
    isatty() of; the command runs, and an error is its status alone."""
    script = ("import sys\nfrom runtime.cli_support import run_command\n"
              "def main(argv):\n    sys.stderr.isatty()\n    print('ran', file=sys.stderr)\n"
              "    return int(sys.argv[1]) if sys.argv[1:] else 0\nrun_command(main, 'replicate')\n")
    for argv, status in (([], 0), (["2"], 2)):
        done = subprocess.run([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, preexec_fn=lambda: os.close(2),
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert (done.returncode, done.stdout) == (status, b""), argv


def test_a_broken_pipe_that_is_not_stdouts_is_said(capsys):
    """Only stdout's lost reader is quiet: another pipe's error is one line (also where
    stdout is no file, as the fuzzer runs commands)."""
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")
    assert run_cli(main, "replicate", []) == 2
    assert capsys.readouterr().err == "replicate: error: Broken pipe\n"


@pytest.mark.parametrize("flag", ["--version", "-version"])
def test_every_command_says_its_version(flag, capsys):
    """As `caffe -version`: the package's version and torch's."""
    import torch
    from harness import cli as replicate_cli
    from harness import export_onnx
    from runtime import cli as caffe_cli
    from visualize import cli as visualize_cli
    mains = {"gen-prototxt": gen_cli.main, "allconv-prep-cifar": prep_cli.main,
             "replicate": replicate_cli.main, "export-onnx": export_onnx.main,
             "visualize": visualize_cli.main, "allconv-caffe": caffe_cli.main}
    for prog, main in mains.items():
        if flag == "-version" and prog != "allconv-caffe":
            continue                              # gflags' spelling is allconv-caffe's alone
        assert run_cli(main, prog, [flag]) == 0
        out = capsys.readouterr().out
        assert re.fullmatch(rf"{prog}: allconv (\S+|\(not installed\)), torch "
                            rf"{re.escape(torch.__version__)}\n", out), out


def test_readme_python_layer_example_runs_as_written(tmp_path):
    """The README's Python layer: its module beside the script, run with PYTHONPATH=., prints
    what the comment says."""
    start = README.index("# my_layers.py, here in the current folder")
    (tmp_path / "my_layers.py").write_text(README[start:README.index("```", start)])
    start = README.index("# then, run with PYTHONPATH=.")
    script = README[start:README.index("```", start)]
    (tmp_path / "script.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([".", str(ROOT)]))
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == script.split("# ")[-1].strip() == "tensor([[3., 3., 3.]])"


def test_readme_net_spec_example_runs_as_written(tmp_path):
    """The README's NetSpec script writes a prototxt that reads back as the net it built, and
    prints the shape its comment says."""
    start = README.index("from runtime.net_spec import NetSpec")
    start = README.rindex("```python\n", 0, start) + len("```python\n")
    script = README[start:README.index("```", start)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == script.split("# ")[-1].strip() == "torch.Size([1, 96, 1, 1])"
    written = read_net(str(tmp_path / "mine.prototxt"))
    assert [layer.type for layer in written.layer] == ["Input", "Convolution", "ReLU", "Pooling"]


def test_readme_packed_runs_example_runs_as_written(tmp_path):
    """The README's pack of four All-CNN-C runs (its import had moved into the tests: a new
    user's ImportError), on the gen-prototxt files the README makes first, at a batch of 8 for
    the CPU: member 2's weights load into the solo net."""
    start = README.index("from harness.net_transforms import")
    script = README[start:README.index("```", start)].replace("128", "8")
    assert run_cli(gen_cli.main, "gen-prototxt", [
        "--variant", "All-CNN-C", "-o", str(tmp_path / "all_c.prototxt"),
        "--solver", str(tmp_path / "all_c_solver.prototxt")]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    as_input = data_as_input({TRAIN: 8, TEST: 8}, (3, 32, 32))
    solo = Net(transformed(read_net(str(tmp_path / "all_c.prototxt")), [as_input], TEST), TEST,
               weights=str(tmp_path / "member_2.caffemodel"))
    assert solo.params["conv1"][0].data.abs().sum() > 0


def test_readme_contents_links_lead_to_its_headings():
    """Every in-page link (#anchor) names a heading, as GitHub makes its anchors."""
    anchors = {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
               for title in re.findall(r"^#{2,3} (.+)$", README, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert len(links) > 15 and set(links) <= anchors, set(links) - anchors
