"""An option value that starts with a minus but no digit (a mutation round over
runtime/cli_support.py: every other test's negative value started with a digit)."""
import pytest

from runtime.cli_support import Parser, number


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
