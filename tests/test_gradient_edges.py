"""normalization_backward (runtime/layers/gradient.py): edges a mutation round found untested.
Caffe's BatchNorm/MVN backward ends in caffe_cpu_axpby(1, top_diff, Dtype(-1. / m),
bottom_diff): the scalar -1/m rounded to float, a multiply-add, then the division by std."""
import numpy as np
import torch

from runtime.layers.gradient import normalization_backward


def test_the_sums_are_scaled_by_float_minus_one_over_m_as_caffe():
    rng = np.random.default_rng(3)
    dy, y = (rng.standard_normal((64, 3, 1, 1)).astype(np.float32) for _ in range(2))
    std = np.float32(1.7) * np.ones((64, 1, 1, 1), np.float32)
    together = y * (dy * y).sum(1, keepdims=True) + dy.sum(1, keepdims=True)
    expected = (dy + together * np.float32(-1.0 / 3)) / std
    got = normalization_backward(torch.from_numpy(dy), torch.from_numpy(y),
                                 torch.from_numpy(std), (1,))
    np.testing.assert_array_equal(got.numpy(), expected)
