"""runtime/cli_support.py behaviours no other test pins: an option value that starts with a
minus but no digit (a mutation round: every other test's negative value started with a digit);
a worker process's warnings."""
import contextvars
import warnings

import pytest

from runtime import cli_support
from runtime.cli_support import Parser, number
import argparse
from runtime.cli_support import MAX_RANGE, index_ranges, resolve_device, warning_line
from runtime.errors import AllconvError


@pytest.mark.parametrize("value, message", [
    ("-inf", "must be a finite number, not -inf"),
    ("-nan", "must be a finite number, not -nan"),
    ("-.5", "must be positive, not -.5"),
])
def test_minus_inf_nan_and_a_leading_dot_are_values_the_option_refuses(value, message, capsys):
    """-inf, -nan and -.5 reach the option's own check (its reason said), not argparse's
    "expected one argument"."""
    parser = Parser(prog="p")
    parser.add_argument("--rate", type=number(float))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--rate", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "expected one argument" not in err


def test_a_worker_process_warns_as_its_command(monkeypatch, capsys):
    """--rows-in-parallel's spawned workers inherit no context: before, their warnings read
    "warning: ..." (warning_line) or Python's two-line form; speak_as names the command."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    context, before = contextvars.copy_context(), cli_support.command_prog()

    def worker():
        cli_support.speak_as("replicate")
        warnings.warn("a run diverged", stacklevel=1)
        return cli_support.warning_line("the other runs go on")
    assert context.run(worker) == "replicate: warning: the other runs go on"
    assert capsys.readouterr().err == "replicate: warning: a run diverged\n"
    assert cli_support.command_prog() == before          # the caller's context kept its own


def test_a_range_of_max_range_indices_is_taken_one_more_is_not():
    assert len(index_ranges(f"0-{MAX_RANGE - 1}")) == MAX_RANGE
    with pytest.raises(argparse.ArgumentTypeError, match=f"the range 0-{MAX_RANGE} is longer "
                                                         f"than {MAX_RANGE:,} indices"):
        index_ranges(f"0-{MAX_RANGE}")


@pytest.mark.parametrize("name", ["meta", "mps", "xpu"])
def test_a_device_other_than_cpu_or_cuda_is_unknown(name):
    """--device takes cpu, cuda or cuda:N (DEVICES); torch's other device types are refused."""
    with pytest.raises(AllconvError, match=f"^unknown device '{name}'; valid: cpu, cuda, cuda:N$"):
        resolve_device(name)


def test_a_warning_line_is_one_line():
    """warning_line: a message holding a line break (a file name, say) stays one line."""
    line = warning_line("file a\nb.png\rc is odd", "replicate")
    assert line == "replicate: warning: file a\\nb.png\\rc is odd"
    assert len(line.splitlines()) == 1
