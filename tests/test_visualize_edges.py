"""Edges of the reconstruction rules, unit choice and figure scaling that the mutation round
mutants46 found unpinned. Each test names its reference: the paper's rules as
runtime/layers/relu.py states them (g(f)·R, g(R)·R, g(f)·g(R)·R), Captum's definitions, or
the figure's stated scaling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import re
from runtime import TEST, AllconvError, Net
from runtime.reconstruction import top_units


def test_rules_of_a_negative_slope_gate_each_by_its_own_quantity():
    """relu.py's rules with g(v) = 1 if v > 0 else s: backprop g(f)·R, deconvnet g(R)·R,
    guided g(f)·g(R)·R. With s < 0 the guided signal gate must read R from above, not the
    input-gated signal (whose sign s flips): f = -1, R = -1 gives s·s·(-1) = -0.25."""
    from runtime.layers.relu import rule_backward
    s = -0.5
    f = torch.tensor([-1.0, -1.0, 2.0, 2.0])
    r = torch.tensor([1.0, -1.0, 1.0, -1.0])
    expected = {"backprop": [-0.5, 0.5, 1.0, -1.0],
                "deconvnet": [1.0, 0.5, 1.0, 0.5],
                "guided": [-0.5, -0.25, 1.0, 0.5]}
    for method, values in expected.items():
        assert rule_backward(f, r, s, method).tolist() == values, method


# data (1x1x1x4) -> 1x1 conv of weight 1, bias 0 -> ReLU of slope -0.5 in place on "conv"
INPLACE = (Path(__file__).parent / "fixtures" / "edge_nets" / "relu_in_place.prototxt").read_text()


def test_an_in_place_negative_slope_relus_gradient_reads_its_top():
    """Real pycaffe (tools/caffe_reference/edge_values.py): for inputs (-1, -2, 2, 3) the
    in-place ReLU's top is (0.5, 1, 2, 3), and Backward from each unit gives 1 at that input,
    for the negative inputs too (Caffe reads the overwritten bottom, now positive), not the
    slope."""
    from runtime import TEST, Net
    from runtime.reconstruction import reconstruct
    net = Net(INPLACE, TEST, seed=0)
    x = torch.tensor([-1.0, -2.0, 2.0, 3.0]).reshape(1, 1, 1, 4).repeat(4, 1, 1, 1)
    signal = reconstruct(net, "conv", x, "backprop", [(0, 0, i) for i in range(4)])
    assert signal.reshape(4, 4).tolist() == np.eye(4).tolist()


def test_a_tiny_but_nonzero_reconstruction_is_drawn_not_called_blank():
    """The figure's stated scaling is 0.5 + 0.5·r / max|r| per panel, so a reconstruction of
    values near 1e-6 (deep units of small weights) fills the whole grey range; only one that is
    0 everywhere is labelled blank."""
    from visualize.figures import blank, shown
    r = np.zeros((3, 2, 2), np.float32)
    r[0, 0, 0], r[1, 1, 1] = 1e-6, -5e-7
    assert not blank(r)
    image = shown(r)
    assert image.max() == pytest.approx(1.0) and image.min() == pytest.approx(0.25)
    assert blank(np.zeros((3, 2, 2), np.float32))


def test_an_input_picture_is_rescaled_min_to_0_and_max_to_1_in_rgb():
    """visualize.inputs.rescaled: (C, H, W) -> (H, W, C) with the minimum at 0 and the maximum
    at 1 (a whitened input is mostly negative), channels reversed for a BGR net."""
    from visualize.inputs import rescaled
    a = np.stack([np.full((1, 2), -3.0), np.array([[-1.0, 1.0]]), np.full((1, 2), 0.0)])
    rgb = rescaled(a.astype(np.float32))
    assert rgb.shape == (1, 2, 3)
    assert rgb[..., 0].tolist() == [[0.0, 0.0]] and rgb[..., 1].tolist() == [[0.5, 1.0]]
    assert rgb[..., 2].tolist() == [[0.75, 0.75]]
    bgr = rescaled(a.astype(np.float32), "BGR")
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])


def test_a_cifar_test_image_is_shown_as_its_pixels_over_255(monkeypatch):
    """--cifar-index shows the raw uint8 pixels as pixels / 255 (255 is white, 1.0)."""
    from types import SimpleNamespace
    from runtime import TEST, Net
    from runtime.data.datasets import CIFAR_RELEASE
    import visualize.inputs as inputs
    net = Net('name: "n" layer { name: "data" type: "Input" top: "data" '
              'input_param { shape { dim: 1 dim: 3 dim: 2 dim: 2 } } }', TEST)
    raw = np.array([0, 51, 255, 128] * 3, np.uint8).reshape(1, 3, 2, 2)
    whitened = np.zeros((1, 3, 2, 2), np.float32)
    monkeypatch.setattr(inputs, "load_images", lambda *a: inputs.Images(whitened, raw))
    source = SimpleNamespace(dataset=SimpleNamespace(layout=CIFAR_RELEASE, colours="RGB"))
    args = SimpleNamespace(input=None, image=None, cifar_index=0)
    picture = inputs.load_picture(args, net, source)
    np.testing.assert_array_equal(picture.shown, np.moveaxis(raw[0], 0, -1) / 255.0)
    assert picture.shown.max() == 1.0

# data (1x1x2x2) -> 1x1 conv of 2 filters, weights 1, bias 0: each filter's map is the input
COPY = ('name: "copy" layer { name: "data" type: "Input" top: "data" input_param { shape { '
        'dim: 1 dim: 1 dim: 2 dim: 2 } } } layer { name: "conv" type: "Convolution" '
        'bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 '
        'weight_filler { type: "constant" value: 1 } } }')


def test_top_units_take_the_first_position_of_a_tied_maximum():
    """top_units: ties go to the earlier image, and within an image to the first position in
    row-major order: a constant map's strongest unit is (0, 0)."""
    from runtime import TEST, Net
    from runtime.reconstruction import top_units
    net = Net(COPY, TEST)
    images = torch.ones(6, 1, 2, 2)
    images[4] = 2
    top = top_units(net, "conv", images, [0], 3, batch_size=4, progress=False)
    assert top.images.tolist() == [[4, 0, 1]]
    assert top.positions.tolist() == [[[0, 0], [0, 0], [0, 0]]]


def test_unit_reports_the_chosen_units_activation_not_the_blobs_max(tmp_path, capsys):
    """`visualize unit --unit C,Y,X` prints and titles the activation of that unit."""
    from runtime import TEST, Net
    from visualize.cli import main
    (tmp_path / "net.prototxt").write_text(COPY)
    Net(COPY, TEST).save(str(tmp_path / "w.caffemodel"))
    np.save(tmp_path / "x.npy", np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32))
    assert main(["unit", "--prototxt", str(tmp_path / "net.prototxt"), "--weights",
                 str(tmp_path / "w.caffemodel"), "--blob", "conv", "--unit", "1,0,1",
                 "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "u.png")]) == 0
    assert "blob conv unit 1,0,1: activation 2\n" in capsys.readouterr().out


NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 1 } } }
"""


@pytest.mark.parametrize("filters", [[-1], [0, 3]])
def test_a_filter_outside_the_blobs_channels_is_one_line(filters):
    """A negative index is no channel either (torch would take -1 as the last one, or fail)."""
    net = Net(NET, TEST, seed=1)
    bad = [f for f in filters if not 0 <= f < 3]
    with pytest.raises(AllconvError, match="^" + re.escape(f"filter(s) {bad} out of range")):
        top_units(net, "conv", torch.zeros(2, 1, 4, 4), filters, 1, progress=False)
