"""The tests' comparison of two .caffemodel files, blob by blob."""
import numpy as np

from runtime.caffemodel import read_weights


def assert_same_weights(a, b, rtol: float = 0.0, atol: float = 0.0) -> None:
    """The caffemodels ``a`` and ``b`` hold the same layers and blobs, every blob equal bit for
    bit, or within ``rtol``/``atol`` where one is given."""
    first, second = read_weights(a), read_weights(b)
    assert first.keys() == second.keys()
    for layer in first:
        assert len(first[layer]) == len(second[layer]), layer
        for x, y in zip(first[layer], second[layer]):
            if rtol or atol:
                np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=layer)
            else:
                np.testing.assert_array_equal(x, y, err_msg=layer)
