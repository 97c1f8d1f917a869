"""Include/exclude rules with levels (runtime/filter_net.py; a mutation round). Checked against
pycaffe: tools/caffe_reference/module_edges/filter_level.py (filter_level.out)."""
from runtime import TEST, Net

NET = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "a" type: "ReLU" bottom: "x" top: "a" include { phase: TEST } }
layer { name: "b" type: "ReLU" bottom: "x" top: "b" include { phase: TEST max_level: 5 } }
layer { name: "c" type: "ReLU" bottom: "x" top: "c" include { min_level: -3 } }
layer { name: "d" type: "ReLU" bottom: "x" top: "d" exclude { stage: "nope" } }
"""


def test_a_rule_without_min_level_matches_a_negative_level_as_caffe():
    """Caffe's StateMeetsRule reads min_level only where the rule has one: at level -2 a rule
    with none (a, b) still matches; min_level -3 holds -2 but not -4 (pycaffe's layer names)."""
    for level, kept in ((-2, ["a", "b", "c", "d"]), (-4, ["a", "b", "d"]),
                        (3, ["a", "b", "c", "d"])):
        names = Net(NET, TEST, level=level).layer_names
        assert [n for n in names if n in "abcd"] == kept, level
