"""Filler details against the reference Caffe. Expected values come from the pycaffe scripts
in tools/caffe_reference/module_edges/ (named at each test), run on the reference build."""
import math

import pytest
import torch

from runtime.errors import AllconvError
from runtime.fillers import fill
from runtime.proto import pb


def draw(shape, seed=0, **fields):
    return fill(torch.empty(shape), pb.FillerParameter(**fields),
                torch.Generator().manual_seed(seed))


# module_edges/bilinear_odd.py: the first row of Caffe's k x k bilinear filter (a Deconvolution
# weight_filler { type: "bilinear" }); the filter is the outer product of that ramp with itself
CAFFE_BILINEAR_RAMP = {
    1: [1.0],
    2: [1.0, 0.0],                      # rows below: ramp[0] * ramp
    3: [0.25, 0.75, 0.75],              # printed row 0: 0.0625, 0.1875, 0.1875
    5: [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3],
    7: [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375],
}


@pytest.mark.parametrize("k", [1, 4, 5])
def test_bilinear_is_caffes_where_both_formulas_agree(k):
    ramp = torch.tensor(CAFFE_BILINEAR_RAMP.get(k, [0.25, 0.75, 0.75, 0.25]))
    w = draw((2, 1, k, k), type="bilinear")
    assert torch.allclose(w, (ramp[:, None] * ramp[None, :]).expand(2, 1, k, k), atol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_bilinear_of_the_sizes_where_caffes_centre_differs(k):
    """Caffe centres at c = (2f - 1 - f % 2) / 2f, not (k - 1) / 2f: they differ when k and
    f = ceil(k / 2) are of unlike parity (k = 2, 3, 6, 7, ...), an off-centre filter."""
    ramp = torch.tensor(CAFFE_BILINEAR_RAMP[k])
    w = draw((1, 1, k, k), type="bilinear")
    assert torch.allclose(w[0, 0], ramp[:, None] * ramp[None, :], atol=1e-6)


def test_bilinear_refuses_a_filter_that_is_not_square():
    # module_edges/filler_checks2.py: "Check failed: blob->width() == blob->height() (4 vs. 2)
    # Filter must be square"
    with pytest.raises(AllconvError, match="square filters"):
        draw((1, 1, 2, 4), type="bilinear")


def test_uniform_with_min_equal_to_max_fills_that_value():
    # module_edges/filler_checks.py: uniform min: 0.5 max: 0.5 builds, every weight 0.5
    assert torch.all(draw((2, 3), type="uniform", min=0.5, max=0.5) == 0.5)


def test_xavier_average_of_an_odd_fan_sum_is_a_float_mean():
    # filler.hpp: n = (fan_in + fan_out) / Dtype(2); a (2, 1) blob: fans 1 and 2, n = 1.5,
    # scale sqrt(3 / 1.5) = sqrt(2) (integer halving would give n = 1, scale sqrt(3))
    gen = torch.Generator().manual_seed(0)
    param = pb.FillerParameter(type="xavier", variance_norm=pb.FillerParameter.AVERAGE)
    x = torch.cat([fill(torch.empty(2, 1), param, gen).reshape(-1) for _ in range(3000)])
    assert x.abs().max() <= math.sqrt(2) and x.abs().max() > 0.99 * math.sqrt(2)


def test_an_empty_blob_is_refused():
    # module_edges/filler_checks2.py: num_output 0 aborts in Caffe ("Check failed: data_")
    with pytest.raises(AllconvError, match="cannot fill an empty blob"):
        draw((0, 3), type="gaussian")


def test_gaussian_sparse_past_the_output_count_is_refused():
    """GaussianFiller draws the mask with caffe_rng_bernoulli(sparse / num_outputs), which
    aborts past 1 (module_edges/filler_checks.py: num_output 2, sparse 5 gives "Check failed:
    p <= 1 (2.5 vs. 1)"; sparse 2 builds)."""
    draw((2, 3), type="gaussian", sparse=2)
    with pytest.raises(AllconvError, match="sparse 5 is more than the blob's 2 outputs"):
        draw((2, 3), type="gaussian", sparse=5)


def test_msra_ignores_the_mean_field():
    # module_edges/msra_mean.py: msra with mean: 5 on a (2000, 50) InnerProduct weight gives
    # mean 0.0006, std 0.1997 (sqrt(2 / fan_in 50) = 0.2)
    x = draw((2000, 50), type="msra", mean=5.0)
    assert abs(float(x.mean())) < 0.005 and abs(float(x.std()) - 0.2) < 0.002
