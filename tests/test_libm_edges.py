"""runtime/libm.py (a mutation round): where no C math library loads,
the fallback rounds its arguments to float32 first, as C's logf/expf/powf take floats, so the
double result rounded to float32 stands in for them (a double argument's extra bits would move
expf(80.000001) by 9 ulps)."""
import numpy as np

from runtime import libm


def test_the_fallback_takes_float32_arguments_as_c_does(monkeypatch):
    xs = (80.000001, 50.0000003, 3.0000001)
    c = [libm.expf(x) for x in xs] + [libm.powf(2.0000001, 30.000001), libm.logf(0.1)]
    monkeypatch.setattr(libm, "_library", lambda: None)
    fallback = [libm.expf(x) for x in xs] + [libm.powf(2.0000001, 30.000001), libm.logf(0.1)]
    assert all(isinstance(v, np.float32) for v in fallback)
    assert [float(v) for v in fallback] == [float(v) for v in c]


def test_the_fallbacks_powf_keeps_c_pows_special_values(monkeypatch):
    """C's pow(-inf, 0.5) is +inf and pow(-0, 0.5) +0, where a square root gives NaN and -0."""
    monkeypatch.setattr(libm, "_library", lambda: None)
    assert libm.powf(-np.inf, 0.5) == np.inf
    zero = libm.powf(-0.0, 0.5)
    assert zero == 0 and not np.signbit(zero)
    assert libm.powf(0.0, -0.5) == np.inf and libm.powf(-np.inf, -0.5) == 0
