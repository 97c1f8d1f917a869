"""WindowData (window_data_layer.cpp) on window files and images the tests write: Caffe's
sampling, flips, means, V1 upgrade and refusals. Its warps are pinned against real Caffe in
test_caffe_fixtures.py (the data_window_* cases)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from runtime import TEST, TRAIN, Net
from runtime.caffemodel import array_to_blob, write_binary
from runtime.data.windows import Window, warp_of
from runtime.errors import AllconvError


def _image(path, h, w, seed):
    rgb = np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)
    return torch.from_numpy(rgb[:, :, ::-1].copy()).permute(2, 0, 1).float()   # BGR


def _window_file(tmp_path, images, text=None):
    """Images a.png (10x12) and b.png (9x11), and a window file whose image blocks hold
    ``images[i]``'s windows (label overlap x1 y1 x2 y2); returns (file, BGR images)."""
    pixels = [_image(tmp_path / "a.png", 10, 12, 1), _image(tmp_path / "b.png", 9, 11, 2)]
    if text is None:
        lines = []
        for i, (name, h, w) in enumerate((("a.png", 10, 12), ("b.png", 9, 11))):
            lines += [f"# {i}", name, f"3 {h} {w}", str(len(images[i]))]
            lines += [" ".join(map(str, box)) for box in images[i]]
        text = "\n".join(lines) + "\n"
    (tmp_path / "w.txt").write_text(text)
    return tmp_path / "w.txt", pixels


def _net(tmp_path, window_param="", transform="crop_size: 6", phase=TRAIN, seed=0,
         batch_size=4):
    return Net(f"""layer {{ name: "w" type: "WindowData" top: "data" top: "label"
        window_data_param {{ source: "{tmp_path / 'w.txt'}" root_folder: "{tmp_path}/"
                             batch_size: {batch_size} {window_param} }}
        transform_param {{ {transform} }} }}""", phase, seed=seed)


FG, BG = (3, 0.9, 2, 1, 7, 6), (0, 0.1, 3, 2, 8, 7)     # two 6x6 windows


def test_batches_put_background_first_and_flip_at_random_in_either_phase(tmp_path):
    _, (a, b) = _window_file(tmp_path, [[FG], [BG]])
    fg, bg = a[:, 1:7, 2:8], b[:, 2:8, 3:9]
    seen = set()
    for phase in (TRAIN, TEST):
        net = _net(tmp_path, "fg_fraction: 0.5", "crop_size: 6 mirror: true", phase)
        for _ in range(8):
            out = net.forward()
            assert out["label"].tolist() == [0, 0, 3, 3]
            for item, window in zip(out["data"], (bg, bg, fg, fg)):
                flipped = torch.equal(item, window.flip(2))
                assert flipped or torch.equal(item, window)
                seen.add((phase, flipped))
    assert len(seen) == 4


def test_windows_are_drawn_uniformly_with_replacement(tmp_path):
    _window_file(tmp_path, [[FG, (5, 0.6, 0, 0, 5, 5), (1, 0.5, 1, 1, 6, 6)], [BG]])
    net = _net(tmp_path, "fg_fraction: 0.75", batch_size=200)
    labels = net.forward()["label"]
    assert (labels[:50] == 0).all()                  # int(200 * 0.75) foreground, last
    counts = torch.bincount(labels[50:].long(), minlength=6)[[1, 3, 5]]
    assert counts.sum() == 150 and counts.min() > 30


def test_thresholds_sort_windows_and_a_foreground_needs_a_label(tmp_path):
    _window_file(tmp_path, [[FG, (0, 0.35, 0, 0, 5, 5)], [BG]])
    labels = _net(tmp_path, "bg_threshold: 0.2 fg_fraction: 1").forward()
    with pytest.raises(AllconvError, match=r"window 1 of image 0 is foreground \(overlap "
                                           r"0.35\) with label 0; Caffe needs a label above 0"):
        _net(tmp_path, "fg_threshold: 0.35")
    assert labels["label"].tolist() == [3, 3, 3, 3]
    with pytest.raises(AllconvError, match=r"1 foreground and 0 background windows at "
                                           r"fg_threshold 0.5 and bg_threshold 0.1"):
        _net(tmp_path, "bg_threshold: 0.1")


def test_mean_file_is_read_at_its_centre_with_the_windows_padding(tmp_path):
    """Caffe reads the mean at (mean_off + pad + h, mean_off + pad + w), mean_off from the
    mean's width; outside the warped window the crop stays 0, unsubtracted."""
    _, (a, _) = _window_file(tmp_path, [[(2, 0.9, 0, 5, 3, 6)], [BG]])
    mean = np.random.RandomState(3).uniform(0, 255, (1, 3, 12, 13)).astype(np.float32)
    write_binary(tmp_path / "mean.binaryproto", array_to_blob(mean))
    net = _net(tmp_path, 'fg_fraction: 1 context_pad: 2 crop_mode: "square" scale: 0.5',
               f'crop_size: 9 mean_file: "{tmp_path / "mean.binaryproto"}"', TEST)
    item = net.forward()["data"][0]
    w = warp_of(Window(0, 2, 0, 5, 3, 6), 10, 12, 9, 2, True, False)
    assert (w.pad_h, w.pad_w, w.height, w.width) == (0, 2, 8, 7)    # left and bottom clipped
    rows, cols = slice(0, 8), slice(2, 9)
    centre = torch.from_numpy(mean[0, :, 2:11, 2:11])               # mean_off (13 - 9) // 2
    expected = torch.zeros(3, 9, 9)
    expected[:, rows, cols] = (a[:, 2:10, 0:7] - centre[:, rows, cols]) * 0.5
    assert torch.equal(item, expected)
    # read as the Data layer's transform reads it (an empty name was ".: is a directory")
    with pytest.raises(AllconvError, match=r"\(WindowData\): transform_param: mean_file is "
                                           "empty; give"):
        _net(tmp_path, "fg_fraction: 1", 'crop_size: 9 mean_file: ""', TEST)


def test_a_snapshot_state_resumes_the_draws(tmp_path):
    _window_file(tmp_path, [[FG, (5, 0.6, 0, 0, 5, 5)], [BG, (0, 0.0, 0, 0, 6, 6)]])
    net = _net(tmp_path, "fg_fraction: 0.5", "crop_size: 6 mirror: true", seed=5)
    feed = net.layers[0].feed
    net.forward()
    state = feed.state_dict()
    after = [net.forward()["data"].clone() for _ in range(3)]
    feed.load_state_dict(state)
    assert all(torch.equal(net.forward()["data"], x) for x in after)
    cached = _net(tmp_path, "fg_fraction: 0.5 cache_images: true", "crop_size: 6 mirror: true",
                  seed=5)
    assert torch.equal(cached.forward()["data"], _net(
        tmp_path, "fg_fraction: 0.5", "crop_size: 6 mirror: true", seed=5).forward()["data"])


def test_a_v1_window_data_layer_moves_its_transform_fields_as_caffe(tmp_path):
    """Caffe's upgrade moves a V1 layer's crop_size, mirror, mean_file and scale into
    transform_param, where WindowData reads all but the scale (window_data_param's)."""
    _, (a, b) = _window_file(tmp_path, [[FG], [BG]])
    net = Net(f"""layers {{ name: "w" type: WINDOW_DATA top: "data" top: "label"
        window_data_param {{ source: "{tmp_path / 'w.txt'}" root_folder: "{tmp_path}/"
                             batch_size: 2 crop_size: 6 scale: 0.5 fg_fraction: 0.5 }} }}""",
              TEST)
    assert torch.equal(net.forward()["data"], torch.stack([b[:, 2:8, 3:9], a[:, 1:7, 2:8]]))


def test_geometry_is_caffes_c_rounding_and_mirrored_padding():
    """Halves round away from zero (C's round): 2 + 1.5 -/+ 1.5 x 2 gives 1..7, not 0..6; a
    mirrored window's padding is its right side's, clipped at the image's edge."""
    w = warp_of(Window(0, 1, 2, 0, 4, 3), 10, 12, 8, 2, False, False)
    assert (w.x1, w.x2) == (1, 7)
    right = Window(0, 1, 8, 2, 11, 5)       # widened to 6..14 of 12 columns: 3 cut on the right
    assert warp_of(right, 10, 12, 9, 2, False, True) == (6, 0, 11, 8, 9, 6, 0, 3)
    assert warp_of(right, 10, 12, 9, 2, False, False) == (6, 0, 11, 8, 9, 6, 0, 0)


def test_an_overlap_is_read_as_a_float_in_one_rounding(tmp_path):
    """C++ reads 0.500000029802322387695312500001 straight to the float above 0.5, a double
    first would give 0.5: the window is foreground at that threshold, as in Caffe."""
    _window_file(tmp_path, [[FG, (4, "0.500000029802322387695312500001", 2, 1, 7, 6)], [BG]])
    labels = _net(tmp_path, "fg_threshold: 0.50000006 fg_fraction: 1",
                  batch_size=40).forward()["label"]
    assert set(labels.tolist()) == {3, 4}


def test_a_window_file_may_end_in_a_lone_mark_as_caffes_loop_stops(tmp_path):
    _, (a, b) = _window_file(tmp_path, [[FG], [BG]])
    (tmp_path / "w.txt").write_text((tmp_path / "w.txt").read_text() + "#\n")
    assert _net(tmp_path, "fg_fraction: 0.5").forward()["label"].tolist() == [0, 0, 3, 3]


@pytest.mark.parametrize("text, param, transform, message", [
    ("", "", "crop_size: 6", r"w.txt: it is empty"),
    ("# 0 a.png 3 10 12 1 3 0.9 2 1 7 6\n# 1 b.png 3 9 11 1 0 0.1 3 2 8 7\n# 2", "",
     "crop_size: 6", r"ends where the path of image 2 was expected"),
    ("# 0 a.png 3 10 12 1 2147483647 0.9 2 1 7 6\n# 1 b.png 3 9 11 1 0 0.1 3 2 8 7", "",
     "crop_size: 6", r"label 2147483647; Caffe needs a label above 0 .* below 2\^31"),
    ("# 0 a.png 3 10 12 1 99999999999 0.9 2 1 7 6", "", "crop_size: 6",
     r"the label of window 0 of image 0 is 99999999999, past C's int"),
    ("0 a.png 3 10 12 0", "", "crop_size: 6", r"it is empty: no '# index' starts it"),
    ("0 5 a.png 3 10 12 0", "", "crop_size: 6", r"'#' expected before image 0, found '0'"),
    ("# 0 a.png 3 10 12 1 3 0.9 2 1 7", "", "crop_size: 6",
     r"ends where y2 of window 0 of image 0 was expected"),
    ("# 0 a.png 3 10 12 1 3 high 2 1 7 6", "", "crop_size: 6",
     r"the overlap of window 0 of image 0 must be a number, found 'high'"),
    ("# 0 a.png 3 10 12 1 3 0.9 2 1 7 6\n# 2 b.png 3 9 11 1 0 0.1 3 2 8 7", "", "crop_size: 6",
     r"image index 2 has no image"),
    ("# 0 a.png 3 10 12 1 3 0.9 2 1 7 6\n# 1 b.png 1 9 11 1 0 0.1 3 2 8 7", "", "crop_size: 6",
     r"its last image has 1 channels.*in colour: 3"),
    (None, "", "", r"needs transform_param.crop_size"),
    (None, "context_pad: 3", "crop_size: 6", r"context_pad 3 leaves nothing of crop_size 6"),
    (None, "", "crop_size: 6 mean_value: 1 mean_value: 2",
     r"either 1 mean_value or as many as channels: 3 \(got 2\)"),
    (None, "fg_fraction: 1.5", "crop_size: 6", r"fg_fraction 1.5 is not a share of the batch"),
    (None, "fg_fraction: nan", "crop_size: 6", r"fg_fraction nan is not a share of the batch"),
    (None, "", "crop_size: 100000", r"batch_size and transform_param.crop_size: shape \(4, 3, "
                                    r"100000, 100000\) has 120,000,000,000 elements"),
    ("# 0 a.png 3 10 12 1 3 0.9 2 1 7 6\n# 1 b.png 3 9 11 1 0 0.1 3 2 8 1_0", "",
     "crop_size: 6", r"y2 of window 0 of image 1 must be an integer, found '1_0'"),
])
def test_refusals_are_one_line(tmp_path, text, param, transform, message):
    if text is not None:
        text = text.replace(" ", "\n", 2) if text else text
    _window_file(tmp_path, [[FG], [BG]], text)
    with pytest.raises(AllconvError, match=message) as err:
        _net(tmp_path, param, transform)
    assert "\n" not in str(err.value)


def test_an_unknown_crop_mode_warps_as_in_caffe_with_a_warning(tmp_path):
    _window_file(tmp_path, [[FG], [BG]])
    with pytest.warns(UserWarning, match=r"crop_mode 'sqaure' warps, as in Caffe"):
        odd = _net(tmp_path, 'crop_mode: "sqaure" context_pad: 1', seed=3).forward()["data"]
    assert torch.equal(odd, _net(tmp_path, "context_pad: 1", seed=3).forward()["data"])


def test_windows_outside_their_image_or_of_a_missing_file_are_named(tmp_path):
    _window_file(tmp_path, [[(3, 0.9, 8, 1, 12, 6)], [BG]])      # x2 past a's 12 columns
    with pytest.raises(AllconvError, match=r"a.png: the window \(8, 1, 12, 6\) cuts the box "
                                           r"8..12 x 1..6 out of the 12x10 image, which does "
                                           r"not hold it"):
        _net(tmp_path, "fg_fraction: 1").forward()
    _image(tmp_path / "wide.png", 3, 20, 3)        # all of it widened to 101 x 101: 3 rows
    _window_file(tmp_path, None, "# 0 wide.png 3 3 20 2 3 0.9 0 1 19 1 0 0.1 0 0 4 2")
    with pytest.raises(AllconvError, match=r"wide.png: the window \(0, 1, 19, 1\) warps to "
                                           r"0x1 pixels at crop_size 5: nothing to resize"):
        _net(tmp_path, 'fg_fraction: 1 context_pad: 2 crop_mode: "square"',
             "crop_size: 5").forward()
    _window_file(tmp_path, [[FG], [BG]])
    (tmp_path / "b.png").unlink()
    with pytest.raises(AllconvError, match=r"b.png: could not load the image"):
        _net(tmp_path).forward()
    with pytest.raises(AllconvError, match=r"b.png: could not load the image"):
        _net(tmp_path, "cache_images: true")            # read at set-up, as Caffe caches


def test_a_path_of_bytes_that_are_not_utf8_is_read_as_caffe_reads_it(tmp_path):
    import os
    _window_file(tmp_path, [[FG], [BG]])
    os.rename(tmp_path / "a.png", tmp_path / os.fsdecode(b"\xe9t\xe9.png"))
    text = (tmp_path / "w.txt").read_bytes().replace(b"a.png", b"\xe9t\xe9.png")
    (tmp_path / "w.txt").write_bytes(text)                      # Latin-1, as old tools wrote
    assert _net(tmp_path, "fg_fraction: 0.5").forward()["label"].tolist() == [0, 0, 3, 3]
