"""runtime.io against real pycaffe's caffe.io (fixture: tests/fixtures/pycaffe_io_cases.npz,
made by tools/caffe_reference/make_io_cases.py): the Transformer both ways, the BlobProto and
Datum conversions byte for byte, oversample, and the class of each error."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import runtime
from runtime import io
from runtime.errors import AllconvError
from runtime.proto import pb

FIXTURES = Path(__file__).parent / "fixtures"
CASES = np.load(FIXTURES / "pycaffe_io_cases.npz")
TRANSFORMERS = sorted({key.split("/")[1] for key in CASES.files if key.startswith("transformer/")})


def _shared():
    spec = importlib.util.spec_from_file_location("pycaffe_io_cases",
                                                  FIXTURES / "pycaffe_io" / "cases.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    return shared


SHARED = _shared()


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_is_pycaffe_s_both_ways(name):
    case = {key.split("/")[2]: CASES[key] for key in CASES.files
            if key.startswith(f"transformer/{name}/")}
    settings = json.loads(str(case["settings"]))
    assert settings == SHARED.TRANSFORMERS[name]
    pre = SHARED.transformer(io, settings).preprocess("data", case["image"])
    assert pre.dtype == np.float32
    np.testing.assert_array_equal(pre, case["preprocessed"])
    if "deprocess_error" in case:     # pycaffe's squeeze() took the one channel's axis
        assert str(case["deprocess_error"]) == "ValueError"
        back = SHARED.transformer(io, settings).deprocess("data", pre[None])
        np.testing.assert_allclose(back, case["image"], rtol=1e-5, atol=1e-6)
        return
    np.testing.assert_array_equal(SHARED.transformer(io, settings).deprocess("data", pre[None]),
                                  case["deprocessed"])
    # a blob's tensor deprocesses as its array does
    np.testing.assert_array_equal(
        SHARED.transformer(io, settings).deprocess("data", torch.from_numpy(pre[None])),
        case["deprocessed"])


def test_blobproto_and_datum_conversions_are_pycaffe_s_byte_for_byte():
    arr = CASES["blob/array"]
    blob = io.array_to_blobproto(arr, arr * 2)
    assert blob.SerializeToString() == CASES["blob/bytes"].tobytes()
    np.testing.assert_array_equal(io.blobproto_to_array(blob, return_diff=True),
                                  CASES["blob/diff_back"])
    assert io.blobproto_to_array(blob).dtype == np.float64
    vector = io.arraylist_to_blobprotovector_str([arr, arr[0]])
    assert vector == CASES["blob/vector_bytes"].tobytes()
    back = io.blobprotovector_str_to_arraylist(vector)
    assert [a.shape for a in back] == [arr.shape, arr[0].shape]
    np.testing.assert_array_equal(back[1], arr[0])
    u8 = CASES["datum/uint8"]
    assert io.array_to_datum(u8, 7).SerializeToString() == CASES["datum/uint8_bytes"].tobytes()
    assert io.array_to_datum(arr[0].astype(np.float64)).SerializeToString() \
        == CASES["datum/float_bytes"].tobytes()
    np.testing.assert_array_equal(io.datum_to_array(io.array_to_datum(u8, 7)), u8)
    assert io.datum_to_array(io.array_to_datum(u8)).dtype == np.uint8


def test_a_legacy_blobproto_takes_its_four_axes():
    """As Caffe's Blob::FromProto: any of num, channels, height and width make the legacy four
    win over ``shape`` (allconv took ``shape``: helper fuzz39); none, and no shape: 0-d."""
    blob = pb.BlobProto(num=1, channels=2, height=1, width=3, data=range(6))
    assert io.blobproto_to_array(blob).shape == (1, 2, 1, 3)
    for name, blob in SHARED.legacy_blobs(pb).items():
        expected = CASES[f"blob/{name}"]
        mine = io.blobproto_to_array(blob)
        assert mine.shape == expected.shape, name
        np.testing.assert_array_equal(mine, expected)


def test_oversample_is_pycaffe_s():
    crops = io.oversample(list(CASES["oversample/images"]), (8, 7))
    assert crops.dtype == np.float32
    np.testing.assert_array_equal(crops, CASES["oversample/crops"])
    # a crop wider than the image: what slicing gives, broadcast to the crop's size
    np.testing.assert_array_equal(io.oversample(*SHARED.past_edge()),
                                  CASES["oversample/past_edge"])


def test_errors_are_pycaffe_s_classes():
    calls = SHARED.error_calls(io)
    for name, want in json.loads(str(CASES["errors"])).items():
        with pytest.raises(Exception) as error:      # pycaffe's bare Exception: ValueError here
            calls[name]()
        assert want in {cls.__name__ for cls in type(error.value).__mro__}, name
    # a mean of another size is refused, as master's pycaffe does (the reference build's
    # older one resized it)
    with pytest.raises(ValueError, match="Mean shape incompatible with input shape"):
        io.Transformer({"data": SHARED.SHAPE}).set_mean("data", np.ones((3, 2, 2)))


def test_load_image_and_resize_image(tmp_path):
    from PIL import Image
    pixels = np.random.RandomState(0).randint(0, 256, (5, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    rgb = io.load_image(tmp_path / "x.png")
    assert rgb.dtype == np.float32 and rgb.shape == (5, 4, 3)
    np.testing.assert_array_equal(rgb, (pixels / 255.0).astype(np.float32))
    grey = io.load_image(tmp_path / "x.png", color=False)
    np.testing.assert_allclose(grey[:, :, 0], (pixels / 255.0) @ io.GREY_WEIGHTS, rtol=1e-6)
    assert grey.shape == (5, 4, 1)
    # 16 bits a value: Pillow's RGB would clip every pixel to 1.0 (helper fuzz39)
    Image.fromarray(np.full((2, 3), 40000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(AllconvError, match=r"deep.png: an image of mode I;16 .* reads 8-bit"):
        io.load_image(tmp_path / "deep.png")
    # bilinear with half-pixel centres: doubling a 1x2 row puts 1/4 and 3/4 between the ends
    row = np.array([[[0.0], [4.0]]], np.float32)
    assert io.resize_image(row, (1, 4))[0, :, 0].tolist() == [0, 1, 3, 4]
    assert io.resize_image(row, (1, 4), interp_order=0)[0, :, 0].tolist() == [0, 0, 4, 4]
    with pytest.raises(ValueError, match="interp_order must be 0"):
        io.resize_image(row, (2, 2), interp_order=3)
    with pytest.raises(ValueError, match=r"preprocess resizes a \(height, width, K\) image"):
        io.Transformer({"data": (1, 1, 3, 3)}).preprocess("data", [[1, 2], [3, 4]])
    for image, dims in ((row[0], (2, 2)), (row[:, :0], (2, 2)), (row, (0, 2))):
        with pytest.raises(ValueError, match="resize_image"):     # not torch's own words
            io.resize_image(image, dims)


def test_pycaffe_s_names_are_found_on_the_package():
    from runtime.layers import LAYERS
    from runtime.python_layer_api import Layer
    assert runtime.io is io
    assert runtime.net_spec.NetSpec.__name__ == "NetSpec"
    assert (runtime.NetSpec, runtime.params, runtime.to_proto) == (
        runtime.net_spec.NetSpec, runtime.net_spec.params, runtime.net_spec.to_proto)
    assert runtime.proto.caffe_pb2 is pb
    assert runtime.Layer is Layer
    # as Caffe's LayerRegistry lists them: every registered type, in byte order
    types = runtime.layer_type_list()
    assert types == sorted(LAYERS) and types.index("BNLL") < types.index("BatchNorm")


def test_array_to_datum_sets_a_label_of_0_and_refuses_2d_as_pycaffe():
    u8 = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    # pycaffe's bytes (reference build): label 0 is set, so it is written (28 00 at the end)
    want = bytes.fromhex("0802100318042218000102030405060708090a0b0c0d0e0f10111213141516172800")
    assert io.array_to_datum(u8, 0).SerializeToString() == want
    with pytest.raises(ValueError, match="Incorrect array shape"):
        io.array_to_datum(np.zeros((3, 4), np.uint8))


def test_load_image_grey_takes_skimages_rgb2gray_weights(tmp_path):
    from PIL import Image
    pixels = np.zeros((1, 3, 3), np.uint8)
    pixels[0, 0, 0] = pixels[0, 1, 1] = pixels[0, 2, 2] = 255      # red, green, blue
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    grey = io.load_image(tmp_path / "rgb.png", color=False)[0, :, 0]
    np.testing.assert_allclose(grey, [0.2125, 0.7154, 0.0721], rtol=1e-6)


def test_nearest_resize_takes_half_pixel_centres():
    # skimage's order-0 resize (pycaffe's) samples at (i + 0.5)·scale − 0.5, rounded: 3 -> 2
    row = np.array([[[0.0], [4.0], [8.0]]], np.float32)
    assert io.resize_image(row, (1, 2), interp_order=0)[0, :, 0].tolist() == [0, 8]


def test_oversample_centre_start_is_truncated_as_pycaffe():
    image = np.arange(121, dtype=np.float32).reshape(11, 11, 1)
    crops = io.oversample([image], (8, 8))
    assert crops[4][0, 0, 0] == 12.0        # pycaffe: start 1.5 -> 1 (row 1, column 1)
    assert crops[9][0, -1, 0] == 12.0       # its mirror


def test_deprocess_undoes_a_channel_swap_that_is_not_its_own_inverse():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (1, 2, 0))
    image = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    pre = t.preprocess("data", image)
    assert pre[:, 0, 0].tolist() == [1, 2, 0]       # pycaffe's (reference build)
    np.testing.assert_array_equal(t.deprocess("data", pre[None]), image)


def test_preprocess_resizes_an_image_to_the_blob():
    t = io.Transformer({"data": (1, 3, 4, 6)})
    t.set_transpose("data", (2, 0, 1))
    pre = t.preprocess("data", np.full((2, 3, 3), 0.5, np.float32))
    assert pre.shape == (3, 4, 6)
    np.testing.assert_array_equal(pre, 0.5)
