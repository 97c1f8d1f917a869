"""WindowData and HDF5 data cases the mutation round of runtime/data/windows.py and hdf5.py
found untested. Geometry: window_data_layer.cpp's arithmetic, worked by
hand below; HDF5: hdf5_data_layer.cpp's Next() and LoadHDF5FileData, hdf5.cpp's
H5T_INTEGER."""
import numpy as np
import pytest
import torch

from runtime import TEST, Net
from runtime.data.windows import Window, warp_of
from runtime.errors import AllconvError
from test_window_data import _net, _window_file


def test_a_square_crop_without_context_pad_is_squared_and_its_rounding_clipped():
    """Caffe widens a window when ``context_pad > 0 || use_square``. Window (2, 2)-(3, 5)
    of a 10x12 image, crop 6: half sizes 2 and 1 about (3, 4) become 2 and 2, so the box
    1..5 x 2..6, warped whole to 6x6."""
    assert warp_of(Window(0, 1, 2, 2, 3, 5), 10, 12, 6, 0, True, False) == (1, 2, 5, 6, 6, 6,
                                                                            0, 0)
    # (0, 0)-(0, 1): squared to x -1..2 (C's round(-0.5) is -1), y 0..2; one column cut on
    # the left, padded by round(1 * 6/4) = 2; the clipped 3 columns warp to round(4.5) = 5,
    # which with the padding passes the crop: Caffe cuts it to 6 - 2 = 4
    assert warp_of(Window(0, 1, 0, 0, 0, 1), 10, 12, 6, 0, True, False) == (0, 0, 2, 2, 6, 4,
                                                                            0, 2)
    # the same along the rows: (0, 0)-(1, 0) pads 2 rows on top, its height cut to 4
    assert warp_of(Window(0, 1, 0, 0, 1, 0), 10, 12, 6, 0, True, False) == (0, 0, 2, 2, 4, 6,
                                                                            2, 0)


FG, BG = (3, 0.9, 2, 1, 7, 6), (0, 0.1, 3, 2, 8, 7)


def test_the_foreground_count_is_truncated_as_caffes_static_cast(tmp_path):
    """num_fg = static_cast<int>(batch_size * fg_fraction): 3 x 0.5 is 1 foreground window,
    after 2 background ones."""
    _window_file(tmp_path, [[FG], [BG]])
    assert _net(tmp_path, "fg_fraction: 0.5", batch_size=3).forward()["label"].tolist() == [
        0, 0, 3]


def test_without_mirror_each_window_takes_one_draw(tmp_path):
    """``mirror && PrefetchRand() % 2``: no flip is drawn without mirror, so the windows are
    the generator's successive draws."""
    _window_file(tmp_path, [[FG, (5, 0.6, 0, 0, 5, 5), (1, 0.5, 1, 1, 6, 6)], [BG]])
    net = _net(tmp_path, "fg_fraction: 1", batch_size=16)
    feed = net.layers[0].feed
    generator = torch.Generator()
    generator.set_state(feed.generator.get_state())
    labels = [3, 5, 1]
    expected = [labels[int(torch.randint(0, 2**32, (), generator=generator)) % 3]
                for _ in range(16)]
    assert net.forward()["label"].tolist() == expected


# ------------------------------------------------------------------------------ HDF5

h5py = pytest.importorskip("h5py", reason="HDF5 layers need h5py (the hdf5 extra)")


def _files(tmp_path, rows=(4, 3), dtype=np.float32):
    names, start = [], 0
    for i, n in enumerate(rows):
        with h5py.File(tmp_path / f"f{i}.h5", "w") as f:
            f["data"] = (np.arange(start, start + n)[:, None] * [1, 2]).astype(dtype)
            f["label"] = np.arange(start, start + n).astype(dtype)
        names.append(str(tmp_path / f"f{i}.h5"))
        start += n
    (tmp_path / "list.txt").write_text("\n".join(names))
    return str(tmp_path / "list.txt")


def test_a_shuffled_single_file_is_reshuffled_at_each_pass(tmp_path):
    """Next(): at the end of the rows, with shuffle, data_permutation_ is shuffled again,
    whatever the number of files."""
    from runtime.data.hdf5 import HDF5Feed
    feed = HDF5Feed(_files(tmp_path, rows=(8,)), ("data", "label"), shuffle=True,
                    generator=torch.Generator().manual_seed(0))
    passes = [tuple(feed(8)[1].int().tolist()) for _ in range(6)]
    assert all(sorted(p) == list(range(8)) for p in passes)
    assert len(set(passes)) > 1


def test_a_single_file_is_read_once(tmp_path, monkeypatch):
    """Caffe loads a file again only when there are several (``num_files_ > 1``)."""
    from runtime.data import hdf5
    loads = []
    real = hdf5.load
    monkeypatch.setattr(hdf5, "load", lambda *a: loads.append(a[0]) or real(*a))
    feed = hdf5.HDF5Feed(_files(tmp_path, rows=(3,)), ("data", "label"))
    for _ in range(4):
        feed(2)
    assert len(loads) == 1


def test_a_shuffled_feed_resumes_from_its_state_exactly(tmp_path):
    """The state holds the row order and the generator: a feed of another seed given it
    goes on as the first, across wraps of its rows and files (where it draws anew)."""
    from runtime.data.hdf5 import HDF5Feed
    source, tops = _files(tmp_path), ("data", "label")
    feed = HDF5Feed(source, tops, shuffle=True, generator=torch.Generator().manual_seed(3))
    feed(5)                                     # mid-way through the second file
    state = feed.state_dict()
    after = [feed(5)[1].tolist() for _ in range(6)]
    other = HDF5Feed(source, tops, shuffle=True, generator=torch.Generator().manual_seed(99))
    other.load_state_dict(state)
    assert [other(5)[1].tolist() for _ in range(6)] == after


def test_integer_datasets_of_any_sign_are_read_as_floats(tmp_path):
    """hdf5_load_nd_dataset takes the H5T_INTEGER class, unsigned too, converted to float."""
    from runtime.data.hdf5 import HDF5Feed
    for dtype in (np.uint8, np.uint16, np.int32):
        data, label = HDF5Feed(_files(tmp_path, rows=(3,), dtype=dtype), ("data", "label"))(3)
        assert data.dtype == torch.float32
        assert data.tolist() == [[0, 0], [1, 2], [2, 4]] and label.tolist() == [0, 1, 2]


def test_a_later_file_of_other_row_shapes_is_refused(tmp_path):
    """Caffe copies the first file's row size from each (out of its rows, or short of them);
    here it is refused, naming the file."""
    from runtime.data.hdf5 import HDF5Feed
    source = _files(tmp_path)
    with h5py.File(tmp_path / "f1.h5", "a") as f:
        del f["data"]
        f["data"] = np.zeros((3, 3), np.float32)
    feed = HDF5Feed(source, ("data", "label"))
    with pytest.raises(AllconvError, match=r"f1\.h5: dataset 'data' has rows of shape \(3,\), "
                                           r"the first file's \(2,\)"):
        feed(5)


def test_hdf5_output_refuses_bottoms_reshaped_to_other_batch_sizes(tmp_path):
    """Forward_cpu's CHECK_EQ(bottom[0]->num(), bottom[1]->num()), at every forward."""
    out = tmp_path / "out.h5"
    net = Net(f"""layer {{ name: "in" type: "Input" top: "x" top: "y"
        input_param {{ shape {{ dim: 2 dim: 5 }} shape {{ dim: 2 }} }} }}
        layer {{ name: "o" type: "HDF5Output" bottom: "x" bottom: "y"
        hdf5_output_param {{ file_name: "{out}" }} }}""", TEST)
    net.blobs["x"].reshape(3, 5)
    net.reshape()
    with pytest.raises(AllconvError, match=r"same batch size \(3 vs 2\)"):
        net.forward(x=np.zeros((3, 5), np.float32), y=np.zeros(2, np.float32))
    with h5py.File(out, "r") as f:
        assert list(f) == []


def test_hdf5_output_of_two_batch_sizes_builds_and_refuses_at_its_forward(tmp_path):
    """hdf5_output_layer.cpp checks the batch sizes in Forward_cpu only: the net builds (its
    file created), its forward is refused. Before, the net was refused as it was built."""
    out = tmp_path / "out.h5"
    net = Net(f"""layer {{ name: "in" type: "Input" top: "x" top: "y"
        input_param {{ shape {{ dim: 3 dim: 5 }} shape {{ dim: 2 }} }} }}
        layer {{ name: "o" type: "HDF5Output" bottom: "x" bottom: "y"
        hdf5_output_param {{ file_name: "{out}" }} }}""", TEST)
    assert out.exists()
    with pytest.raises(AllconvError, match=r"same batch size \(3 vs 2\)"):
        net.forward()


def test_hdf5_output_without_a_file_name_is_one_line():
    """Caffe's LayerSetUp: H5Fcreate("") fails, "Failed to open HDF5 file" (a CHECK)."""
    with pytest.raises(AllconvError, match=r"^layer 'o' \(HDF5Output\): hdf5_output_param"
                                           r"\.file_name is required$"):
        Net("""layer { name: "in" type: "Input" top: "x" top: "y"
            input_param { shape { dim: 2 dim: 5 } shape { dim: 2 } } }
            layer { name: "o" type: "HDF5Output" bottom: "x" bottom: "y" }""", TEST)
