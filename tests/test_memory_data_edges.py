"""MemoryData (runtime/layers/memory_data.py): edges a mutation round found untested. Caffe's
values: tools/caffe_reference/module_edges/memory_data_ref.py (pycaffe's Net_SetInputArrays),
printed in memory_data_ref.out there."""
import numpy as np
import pytest

from runtime import TEST, AllconvError, Net


def _net(params="batch_size: 2 channels: 1 height: 1 width: 3", transform=""):
    return Net('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
               f'{transform} memory_data_param {{ {params} }} }}', TEST)


@pytest.mark.parametrize("params", ["batch_size: 2 channels: 1 height: 1 width: 0",
                                    "batch_size: 0 channels: 1 height: 1 width: 3",
                                    "batch_size: 2 channels: 1 height: 1"])
def test_a_zero_or_missing_dimension_is_refused_as_caffes_check(params):
    with pytest.raises(AllconvError, match="batch_size, channels, height, and width must be "
                                           "specified and positive in memory_data_param"):
        _net(params)


def test_more_data_rows_than_labels_are_refused():
    """pycaffe: 'data and labels must have the same first dimension' (memory_data_ref.py)."""
    with pytest.raises(AllconvError, match=r"same first dimension \(4 vs 2\)"):
        _net().set_input_arrays(np.zeros((4, 1, 1, 3), np.float32), np.zeros(2, np.float32))


def test_empty_arrays_are_refused():
    """Caffe takes them and then divides by n = 0 in its first forward; refused here."""
    with pytest.raises(AllconvError, match=r"positive multiple of batch size 2 \(got 0\)"):
        _net().set_input_arrays(np.zeros((0, 1, 1, 3), np.float32), np.zeros(0, np.float32))


def test_a_transform_param_draws_a_warning_at_set_input_arrays():
    """Caffe's Reset logs 'does not transform array data'."""
    net = _net(transform="transform_param { scale: 2 }")
    with pytest.warns(UserWarning, match="MemoryData does not transform array data"):
        net.set_input_arrays(np.ones((2, 1, 1, 3), np.float32), np.zeros(2, np.float32))
    np.testing.assert_array_equal(np.asarray(net.forward()["data"]), np.ones((2, 1, 1, 3)))


def test_labels_of_more_than_one_value_per_row_are_refused():
    """pycaffe: 'labels array has wrong number of channels' for (N, 2, 1, 1)."""
    with pytest.raises(AllconvError, match=r"labels array must be \(N, 1, 1, 1\), got "
                                           r"\(2, 2, 1, 1\)"):
        _net().set_input_arrays(np.zeros((2, 1, 1, 3), np.float32),
                                np.zeros((2, 2, 1, 1), np.float32))


def test_the_arrays_are_shared_as_pycaffe_keeps_pointers_into_them():
    """memory_data_ref.out: arrays filled with 7 and labels with 9 after set_input_arrays
    give "changed after set [7.0 x 6] [9.0, 9.0]"; the rows wrap, and a new call starts at
    row 0 ("after reset [5.0, 4.0]")."""
    net = _net()
    data, labels = np.zeros((2, 1, 1, 3), np.float32), np.zeros((2, 1, 1, 1), np.float32)
    net.set_input_arrays(data, labels)
    data[:], labels[:] = 7, 9
    out = net.forward()
    assert np.asarray(out["data"]).ravel().tolist() == [7.0] * 6
    assert np.asarray(out["label"]).ravel().tolist() == [9.0, 9.0]
    rows = np.arange(18, dtype=np.float32).reshape(6, 1, 1, 3)
    net.set_input_arrays(rows, np.arange(6, dtype=np.float32))
    assert [np.asarray(net.forward()["label"]).ravel().tolist() for _ in range(4)] == [
        [0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [0.0, 1.0]]
    net.set_input_arrays(rows[::-1].copy(), np.arange(6, dtype=np.float32)[::-1].copy())
    assert np.asarray(net.forward()["label"]).ravel().tolist() == [5.0, 4.0]
