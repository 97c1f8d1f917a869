"""harness/net_source.py: `visualize --prototxt NET` without --weights is refused with
the line that says what to give (harness/net_source.py: 'the weights: give --prototxt NET
--weights W.caffemodel, or --run DIR'); visualizing a net's random filler weights is never what
a user meant. (export-onnx, which passes weights_required=False, takes --prototxt alone.)"""
from types import SimpleNamespace

import pytest

from harness.net_source import net_source
from runtime.errors import AllconvError
from runtime.cli_support import run_cli
from visualize.cli import main

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } } }
"""


def test_net_source_wants_weights_unless_told_otherwise():
    args = SimpleNamespace(run=None, prototxt="net.prototxt", weights=None, dataset=None)
    with pytest.raises(AllconvError, match="the weights: give --prototxt NET --weights"):
        net_source(args)
    assert net_source(args, weights_required=False).weights is None


def test_visualize_with_a_prototxt_and_no_weights_is_refused(tmp_path, capsys):
    (tmp_path / "net.prototxt").write_text(NET)
    code = run_cli(main, "visualize", ["filters", "--prototxt", str(tmp_path / "net.prototxt"),
                                       "--blob", "conv1", "--device", "cpu",
                                       "-o", str(tmp_path / "f.png")])
    assert code != 0 and not (tmp_path / "f.png").exists()
    assert "the weights: give --prototxt NET --weights" in capsys.readouterr().err
