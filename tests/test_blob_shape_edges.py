"""Blob::Reshape's limits at their edges, against the reference Caffe: the pycaffe script
tools/caffe_reference/module_edges/blob_limits.py builds an Input of each shape."""
import pytest

from runtime import blob_shape
from runtime.blob_shape import check_blob_shape
from runtime.errors import AllconvError
from runtime.limits import INT_MAX


@pytest.fixture
def no_memory_limit(monkeypatch):
    # the runtime's own memory check aside (0: the OS does not say), Caffe's limits alone
    monkeypatch.setattr(blob_shape, "physical_memory", lambda: 0)


def test_32_axes_are_caffes_most(no_memory_limit):
    # blob_limits.py: 32 axes built; 33 "Check failed: shape.dim_size() <= kMaxBlobAxes"
    assert check_blob_shape((1,) * 32, "x") == (1,) * 32
    with pytest.raises(AllconvError, match="33 axes, more than Caffe's kMaxBlobAxes"):
        check_blob_shape((1,) * 33, "x")


def test_int_max_elements_are_caffes_most(no_memory_limit):
    # blob_limits.py: dim 2147483647 built; 2147483648 aborts (read as a negative int)
    assert check_blob_shape((INT_MAX,), "x") == (INT_MAX,)
    with pytest.raises(AllconvError):
        check_blob_shape((INT_MAX + 1,), "x")


def test_a_dim_past_int_beside_a_zero_dim_is_refused(no_memory_limit):
    # blob_limits.py: dim 0 dim 2147483648 aborts ("shape[i] >= 0 (-2147483648 vs. 0)")
    with pytest.raises(AllconvError, match="dim 1 is 2147483648 .*more than Caffe's int"):
        check_blob_shape((0, INT_MAX + 1), "x")
    assert check_blob_shape((0, INT_MAX), "x") == (0, INT_MAX)
