"""HDF5 snapshot details no other test pins: the solver state's current_step and int32
datasets, a layer that shares only its weight, the .h5 ending as the format's sign, a user
block before the signature, and a layer name given twice."""
import io

import numpy as np
import pytest

from runtime import hdf5_snapshot
from runtime.errors import AllconvError
from runtime.files import HDF5_MAGIC
from runtime.proto import pb

h5py = pytest.importorskip("h5py")


def _state():
    state = pb.SolverState(iter=7, current_step=3, learned_net="snap_iter_7.caffemodel.h5")
    for values in ([1.0, -2.0], [0.5]):
        blob = state.history.add()
        blob.shape.dim.append(len(values))
        blob.data.extend(values)
    return state


def test_a_state_keeps_iter_and_current_step_as_caffes_int32_datasets(tmp_path):
    # Caffe's SnapshotSolverStateToHDF5: hdf5_save_int for iter and current_step, shape (1,)
    path = tmp_path / "s.solverstate.h5"
    hdf5_snapshot.write_state(path, _state())
    with h5py.File(path, "r") as f:
        for name, value in (("iter", 7), ("current_step", 3)):
            assert f[name].dtype == np.int32 and f[name].shape == (1,)
            assert int(f[name][0]) == value
    back = hdf5_snapshot.read_state(path)
    assert (back.iter, back.current_step, back.learned_net) == (7, 3, "snap_iter_7.caffemodel.h5")
    assert [list(b.data) for b in back.history] == [[1.0, -2.0], [0.5]]


def test_an_iter_of_two_values_is_refused(tmp_path):
    path = tmp_path / "s.solverstate.h5"
    hdf5_snapshot.write_state(path, _state())
    with h5py.File(path, "a") as f:
        del f["iter"]
        f.create_dataset("iter", data=np.array([7, 8], np.int32))
    with pytest.raises(AllconvError, match="'iter' holds 2 values, where Caffe reads one"):
        hdf5_snapshot.read_state(path)


def test_a_layer_sharing_only_its_weight_stores_its_bias_as_dataset_1(tmp_path):
    # Net::ToHDF5 names each dataset by the blob's index in the layer and skips the shared
    # ones: the second layer holds "1" alone, and reads back as [None, bias]
    path = tmp_path / "w.caffemodel.h5"
    w, b1, b2 = np.ones((2, 3), np.float32), np.zeros(2, np.float32), np.full(2, 5, np.float32)
    hdf5_snapshot.write_weights(path, [("ip1", [w, b1]), ("ip2", [None, b2])])
    with h5py.File(path, "r") as f:
        assert sorted(f["data/ip1"]) == ["0", "1"] and sorted(f["data/ip2"]) == ["1"]
    read = dict(hdf5_snapshot.read_weights(path))
    assert read["ip2"][0] is None and np.array_equal(read["ip2"][1], b2)


def test_only_the_h5_ending_makes_a_snapshot_hdf5():
    # the reference build compares the name's last three characters with ".h5"
    assert hdf5_snapshot.is_hdf5("a/w.caffemodel.h5")
    assert not hdf5_snapshot.is_hdf5("w.h5.caffemodel") and not hdf5_snapshot.is_hdf5("h5/w")


def test_a_file_with_a_1024_byte_user_block_is_hdf5(tmp_path):
    # H5Fis_hdf5 looks for the signature at 0, 512, 1024, 2048, ...
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=1024) as f:
        f.create_group("data").create_group("ip").create_dataset("0", data=np.ones(2, np.float32))
    data = buffer.getvalue()
    assert data[1024:1032] == HDF5_MAGIC and data[:8] != HDF5_MAGIC
    path = tmp_path / "w.caffemodel.h5"
    path.write_bytes(data)
    assert [(n, [list(b) for b in blobs]) for n, blobs in hdf5_snapshot.read_weights(path)] \
        == [("ip", [[1.0, 1.0]])]


def test_a_layer_name_given_twice_is_refused():
    # ToHDF5's H5Gcreate2 fails on a group that exists: "Error saving weights"
    with pytest.raises(AllconvError, match="layer 'ip': .*two layers have it"):
        hdf5_snapshot.check_names(["ip", "relu", "ip"])
