"""Fillers against the formulas of Caffe's filler.hpp (statistics over many draws)."""
import math

import pytest
import torch

from runtime.errors import AllconvError
from runtime.fillers import FILLERS, fan_in_out, fill
from runtime.proto import pb

N = 200_000  # draws: the std of a sample std is about std / sqrt(2N) = 0.16 %


def draw(shape, seed=0, **fields):
    return fill(torch.empty(shape), pb.FillerParameter(**fields), torch.Generator().manual_seed(seed))


def test_fans_follow_caffe_legacy_axes():
    assert fan_in_out((96, 3, 5, 5)) == (75, 2400)      # count/num, count/channels
    assert fan_in_out((10, 192)) == (192, 10)           # InnerProduct (num_output, K)
    assert fan_in_out((7,)) == (1, 7)                    # 1-d: channels counts as 1
    assert fan_in_out(()) == (1, 1)                      # a scalar: num and channels 1


@pytest.mark.parametrize("kind", ["xavier", "msra", "positive_unitball"])
def test_fillers_of_the_legacy_accessors_refuse_five_axes(kind):
    """Caffe's xavier, msra and positive_unitball read num() (and channels()), which abort on
    a blob of more than 4 axes (a 3-D convolution's weights; mutation fuzzer): it was filled."""
    with pytest.raises(AllconvError, match=f"the {kind} filler's blob has 5 axes"):
        draw((2, 1, 3, 3, 3), type=kind)
    assert draw((2, 1, 3, 3), type=kind).shape == (2, 1, 3, 3)


def test_constant_default_is_zero_and_value_is_used():
    assert torch.count_nonzero(draw((3, 4))) == 0
    assert torch.all(draw((3, 4), type="constant", value=0.25) == 0.25)


def test_gaussian_std_defaults_to_one():
    x = draw((N,), type="gaussian")
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01


def test_gaussian_mean_and_std():
    x = draw((N,), type="gaussian", mean=2.0, std=0.05)
    assert abs(x.mean() - 2.0) < 0.001 and abs(x.std() - 0.05) < 0.001


def test_gaussian_sparse_keeps_sparse_over_num_outputs():
    x = draw((50, 4000), type="gaussian", sparse=10)
    assert abs((x != 0).float().mean() - 10 / 50) < 0.005


@pytest.mark.parametrize("norm,n", [("FAN_IN", 3 * 5 * 500), ("FAN_OUT", 8 * 5 * 500),
                                    ("AVERAGE", (3 + 8) / 2 * 5 * 500)])
def test_xavier_is_uniform_with_a_sqrt3_over_n(norm, n):
    x = draw((8, 3, 5, 500), type="xavier", variance_norm=getattr(pb.FillerParameter, norm))
    a = math.sqrt(3 / n)
    assert x.abs().max() <= a
    assert abs(x.std() / (a / math.sqrt(3)) - 1) < 0.01  # U(-a, a) has std a/sqrt(3)


@pytest.mark.parametrize("norm", ["FAN_IN", "FAN_OUT", "AVERAGE"])
def test_msra_std_is_sqrt_2_over_n(norm):
    shape = (40, 20, 3, 3 * 50)
    fan_in, fan_out = 20 * 3 * 150, 40 * 3 * 150
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[norm]
    x = draw(shape, type="msra", variance_norm=getattr(pb.FillerParameter, norm))
    assert abs(x.mean()) < 0.01 * math.sqrt(2 / n)
    assert abs(x.std() / math.sqrt(2 / n) - 1) < 0.01


def test_uniform_range_and_mean():
    x = draw((N,), type="uniform", min=-1.0, max=3.0)
    assert x.min() >= -1 and x.max() < 3 and abs(x.mean() - 1) < 0.02


def test_same_seed_same_values():
    assert torch.equal(draw((5, 5), seed=3, type="gaussian"), draw((5, 5), seed=3, type="gaussian"))
    assert not torch.equal(draw((5, 5), seed=3, type="gaussian"),
                           draw((5, 5), seed=4, type="gaussian"))


def test_positive_unitball_rows_are_positive_and_sum_to_one():
    x = draw((6, 3, 4, 4), type="positive_unitball")
    assert torch.all(x > 0)
    torch.testing.assert_close(x.sum((1, 2, 3)), torch.ones(6))
    u = draw((6, 3, 4, 4), type="uniform", min=0.0, max=1.0)   # the same draws, normalized
    torch.testing.assert_close(x, u / u.sum((1, 2, 3), keepdim=True))
    with pytest.raises(AllconvError, match="sparse"):
        draw((2, 2), type="positive_unitball", sparse=1)


def test_unknown_type_lists_supported():
    with pytest.raises(AllconvError, match="unknown filler type 'mystery'.*constant, gaussian"):
        draw((2,), type="mystery")
    assert {"constant", "gaussian", "xavier", "msra", "uniform"} <= set(FILLERS)


def test_sparse_only_for_gaussian():
    with pytest.raises(AllconvError, match="sparse"):
        draw((2, 2), type="xavier", sparse=1)


@pytest.mark.parametrize("fields, message", [
    (dict(type="uniform", min=1e30, max=0.5), "uniform filler needs finite min <= max"),
    (dict(type="uniform", min=-math.inf, max=0.5), "uniform filler needs finite min <= max"),
    (dict(type="gaussian", std=0.0), "gaussian filler needs std > 0"),
    (dict(type="gaussian", std=-1.0), "std -1"),
    (dict(type="gaussian", std=math.nan), "std nan"),
])
def test_caffe_rng_argument_checks(fields, message):
    """caffe_rng_uniform checks min <= max and caffe_rng_gaussian std > 0 (found by fuzzing)."""
    with pytest.raises(AllconvError, match=message):
        draw((2, 2), **fields)


def test_a_gaussian_mean_past_the_finite_fills_as_caffe_fills():
    """caffe_rng_gaussian checks std alone: real Caffe builds a net whose gaussian mean is NaN
    (NaN weights; a mutation fuzzer's case), and so does allconv."""
    assert draw((2, 2), type="gaussian", mean=math.nan, std=0.01).isnan().all()
    assert (draw((2, 2), type="gaussian", mean=math.inf, std=0.01) == math.inf).all()


def test_gaussian_sparse_0_keeps_no_weight():
    """Caffe masks whenever sparse >= 0, keeping each weight with probability sparse / fan-in."""
    param = pb.FillerParameter(type="gaussian", std=1.0, sparse=0)
    assert not fill(torch.empty(4, 5), param, torch.Generator().manual_seed(0)).any()


@pytest.mark.parametrize("sparse", [0, 3])
def test_sparse_is_refused_but_for_gaussian_from_zero_up(sparse):
    """Caffe's CHECK_EQ(sparse, -1) in every other filler: 0 is set, and refused."""
    with pytest.raises(AllconvError, match="filler 'xavier' does not support `sparse`"):
        fill(torch.empty(3, 3), pb.FillerParameter(type="xavier", sparse=sparse),
             torch.Generator())


def test_sparse_below_minus_one_is_refused_as_gaussians_check_refuses_it():
    with pytest.raises(AllconvError, match=r"filler 'gaussian': sparse must be >= -1 \(got -2\)"):
        fill(torch.empty(3, 3), pb.FillerParameter(type="gaussian", sparse=-2), torch.Generator())
