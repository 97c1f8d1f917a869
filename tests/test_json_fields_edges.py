"""Hand-edited run files: the kinds of harness/json_fields.py
refuse the values their names exclude. Each case below was accepted by a mutant of
json_fields.py that the suite let live (a mutation round)."""
import math
import re

import pytest

from harness import run_folder
from harness.json_fields import (AMOUNT, INTEGER, NAME, NUMBER, OBJECT, PERCENT, POSITIVE,
                                 SECONDS, TEXT, checked_fields)
from runtime.errors import AllconvError


@pytest.mark.parametrize("kind, value", [
    (INTEGER, True), (NUMBER, False), (NUMBER, math.nan), (NUMBER, math.inf),
    (PERCENT, -0.5), (PERCENT, math.nan), (POSITIVE, 0), (POSITIVE, 0.0),
    (SECONDS, -1.0), (NAME, "   "), (NAME, ""), (TEXT, 3), (INTEGER, 2.0),
    (TEXT.list(), {"cat": 1}), (OBJECT, []), (OBJECT, [["a", 1]])])
def test_a_kind_refuses_what_its_name_excludes(kind, value):
    assert not kind.holds(value)


@pytest.mark.parametrize("kind, value", [(AMOUNT, 0), (AMOUNT, 0.0), (SECONDS, 0.0),
                                         (PERCENT, 0), (PERCENT, 100), (INTEGER, 0)])
def test_a_kind_takes_its_edge_values(kind, value):
    assert kind.holds(value)


def test_a_result_json_with_a_negative_or_nan_field_names_it(tmp_path):
    """result.json's test_error is a percentage and wall_seconds a number of seconds:
    -1 and NaN (which Python's json reads) are edits, not results."""
    result = {"row": "table3/all-cnn-c", "lr": 0.01, "seed": 0, "epochs": 1.0,
              "wall_seconds": 3.5, "test_error": 90.0, "never_predicted": [],
              "dead_class_units": []}
    for field, value, shown in (("test_error", -1.0, "-1.0"), ("wall_seconds", -3.5, "-3.5"),
                                ("test_error", math.nan, "NaN"), ("seed", True, "true")):
        with pytest.raises(AllconvError, match=re.escape(f"its {field!r} field is {shown}")):
            checked_fields(tmp_path / "result.json", {**result, field: value},
                           run_folder.FIELDS[run_folder.RESULT_JSON])
