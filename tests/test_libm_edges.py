"""runtime/libm.py (a mutation round): where no C math library loads,
the fallback rounds its arguments to float32 first, as C's logf/expf/powf take floats, so the
double result rounded to float32 stands in for them (a double argument's extra bits would move
expf(80.000001) by 9 ulps)."""
import numpy as np
import pytest

from runtime import libm


def test_the_fallback_takes_float32_arguments_as_c_does(monkeypatch):
    xs = (80.000001, 50.0000003, 3.0000001)
    c = [libm.expf(x) for x in xs] + [libm.powf(2.0000001, 30.000001), libm.logf(0.1)]
    monkeypatch.setattr(libm, "_library", lambda: None)
    fallback = [libm.expf(x) for x in xs] + [libm.powf(2.0000001, 30.000001), libm.logf(0.1)]
    assert all(isinstance(v, np.float32) for v in fallback)
    assert [float(v) for v in fallback] == [float(v) for v in c]
