"""Caffe's Blob::Reshape limits: at most 32 axes, dims >= 0, at most INT_MAX elements, uint32 geometry fields
kept in an int; and blobs that cannot fit in memory. Each is one error naming layer and field."""
import pytest

from runtime import TEST, AllconvError, Net
from runtime import blob_shape

INPUT = ('layer {{ name: "input" type: "Input" top: "data" '
         'input_param {{ shape {{ dim: {} dim: 3 dim: {} dim: 4 }} }} }}\n')
CONV = ('layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        'convolution_param {{ num_output: {} kernel_size: 3 {} '
        'weight_filler {{ type: "xavier" }} }} }}\n')
POOL = ('layer {{ name: "pool1" type: "Pooling" bottom: "data" top: "pool1" '
        'pooling_param {{ pool: MAX kernel_size: 3 {} }} }}\n')
OK = INPUT.format(1, 4)

CASES = [
    (INPUT.format(-1, 4), r"layer 'input' \(Input\): input_param.shape\[0\]: dim 0 is -1"),
    # found by a mutation round: real Caffe aborts (kMaxBlobAxes), the runtime made 40 axes
    (INPUT.replace("dim: 4", "dim: 1 " * 30).format(1, 4),
     r"input_param.shape\[0\]: 33 axes, more than Caffe's kMaxBlobAxes \(32\)"),
    (INPUT.format(1, 2**31), r"layer 'input' \(Input\): input_param.shape\[0\]: shape "
                             r"\(1, 3, 2147483648, 4\) has .* more than Caffe's limit of INT_MAX"),
    (INPUT.format(2**62, 4), r"input_param.shape\[0\]: .* more than Caffe's limit"),
    # found by tools/fuzz.py: a huge dim beside a 0 has no elements, but no tensor takes it
    (INPUT.format(0, 2**63 - 1), r"input_param.shape\[0\]: dim 2 is 9223372036854775807 in "
                                 r"shape \(0, 3, 9223372036854775807, 4\), more than Caffe's int"),
    (OK + CONV.format(2, "pad: 2147483648"),
     r"layer 'conv1' \(Convolution\): convolution_param.pad 2147483648 is out of range"),
    (OK + CONV.format(2, "stride: 4294967295"), r"convolution_param.stride 4294967295"),
    (OK + CONV.format(2, "kernel_h: 3 kernel_w: 2147483648 kernel_size: 1")
     .replace("kernel_size: 3 ", ""), r"layer 'conv1'.*(kernel_h/kernel_w|kernel_size)"),
    (OK + CONV.format(2, "pad: 2147483647"),
     r"layer 'conv1' \(Convolution\): top 'conv1': shape .* more than Caffe's limit"),
    (OK + CONV.format(2147483647, ""),
     r"layer 'conv1' \(Convolution\): learnable blob 0: shape \(2147483647, 3, 3, 3\)"),
    (OK + POOL.format("pad_h: 2147483648 pad_w: 0"), r"layer 'pool1' \(Pooling\): "
                                                     r"pooling_param.pad_h/pad_w 2147483648"),
    (OK + POOL.format("stride: 3000000000"), r"pooling_param.stride 3000000000 is out of range"),
]


@pytest.mark.parametrize("text, message", CASES)
def test_out_of_range_dims_are_one_error_naming_layer_and_field(text, message):
    with pytest.raises(AllconvError, match=message) as caught:
        Net(text, TEST)
    assert "\n" not in str(caught.value)


def test_blob_that_cannot_fit_in_memory_is_refused(monkeypatch):
    monkeypatch.setattr(blob_shape, "physical_memory", lambda: 2**30)
    with pytest.raises(AllconvError, match=r"layer 'input' \(Input\): input_param.shape\[0\]: "
                                           r"shape \(1, 3, 2147483648, 4\) .* INT_MAX"):
        Net(INPUT.format(1, 2**31), TEST)
    with pytest.raises(AllconvError, match=r"layer 'input' \(Input\): input_param.shape\[0\]: "
                                           r"shape \(1, 3, 33554432, 4\) needs 1.5 GiB as "
                                           r"float32, more than this machine's 1 GiB"):
        Net(INPUT.format(1, 2**25), TEST)
    Net(INPUT.format(1, 16), TEST)


def test_pycaffe_reshape_is_checked_too():
    net = Net(OK, TEST)
    with pytest.raises(AllconvError, match=r"layer 'input' \(Input\): reshape of top 'data': "
                                           r"dim 1 is -3"):
        net.blobs["data"].reshape(1, -3, 4, 4)


def test_reshape_to_a_too_large_input_names_the_growing_top():
    net = Net(OK + CONV.format(2, "pad: 16000"), TEST)     # top (1, 2, 32002, 32002)
    net.blobs["data"].reshape(2, 3, 4, 4)
    with pytest.raises(AllconvError, match=r"layer 'conv1' \(Convolution\): top 'conv1'"):
        net.reshape()


def test_lrn_across_channels_checks_caffes_padded_square_blob():
    lrn = ('layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
           'lrn_param { local_size: %d } }')
    with pytest.raises(AllconvError, match=r"layer 'norm' \(LRN\): lrn_param.local_size: shape "
                                           r"\(1, 2147483649, 4, 4\) .* INT_MAX"):
        Net(OK + lrn % (2**31 - 1), TEST)
    with pytest.raises(AllconvError, match=r"lrn_param.local_size 4294967295 is out of range"):
        Net(OK + lrn % (2**32 - 1), TEST)
    # the blob is one image's (lrn_layer.cpp: padded_square(1, channels + size - 1, ...)): a
    # batch of 2 whose two padded images together pass INT_MAX is Caffe's too
    from layer_kit import build
    norm = build('name: "norm" type: "LRN" bottom: "x" top: "y" '
                 f'lrn_param {{ local_size: {2**30 + 1} }}', (2, 1, 1, 1))
    assert norm.top_shapes == [(2, 1, 1, 1)]


@pytest.mark.parametrize("method, outside", [("MAX", -3.4028234663852886e38), ("AVE", 0.0)])
def test_pooling_stride_far_past_the_input_allocates_no_padded_copy(method, outside):
    """A window starting past the input (pad 0, rounding up) reads nothing: -FLT_MAX for MAX,
    a zero sum for AVE, as pooling_layer.cpp; without padding the input out to the stride."""
    import torch
    text = OK + POOL.format("stride: 2000000000").replace("MAX", method)
    net = Net(text, TEST)
    assert net.blobs["pool1"].shape == (1, 3, 2, 2)
    x = torch.arange(48.0).reshape(1, 3, 4, 4)
    y = net.forward(data=x)["pool1"]
    first = x[:, :, :3, :3].amax((2, 3)) if method == "MAX" else x[:, :, :3, :3].mean((2, 3))
    torch.testing.assert_close(y[:, :, 0, 0], first)
    for i, j in ((0, 1), (1, 0), (1, 1)):
        assert torch.all(y[:, :, i, j] == outside)


def test_legacy_shape_pads_as_caffes_legacy_accessors_and_refuses_five_axes():
    """num()..width() pad after the last axis; ShapeEquals' LegacyShape(-4..-1) before the
    first; a 5-axis blob has no legacy shape (Caffe's CHECK), named in the error."""
    assert blob_shape.legacy_shape((7, 3), "b") == (7, 3, 1, 1)
    assert blob_shape.legacy_shape((7, 3), "b", from_end=True) == (1, 1, 7, 3)
    assert blob_shape.legacy_shape((), "b") == (1, 1, 1, 1)
    assert blob_shape.legacy_shape((2, 3, 4, 5), "b", from_end=True) == (2, 3, 4, 5)
    with pytest.raises(AllconvError, match=r"^bottom 1 has 5 axes \(1, 2, 3, 4, 5\), more "
                                           "than the 4 of Caffe's legacy num"):
        blob_shape.legacy_shape((1, 2, 3, 4, 5), "bottom 1")
    five = (INPUT.format(2, 1).replace("dim: 4", "dim: 1 dim: 1")
            + 'layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 } } }\n'
            + 'layer { name: "loss" type: "ContrastiveLoss" bottom: "data" bottom: "data" '
              'bottom: "y" top: "loss" }\n')
    with pytest.raises(AllconvError, match=r"layer 'loss' \(ContrastiveLoss\): bottom 0 has 5"):
        Net(five, TEST)
