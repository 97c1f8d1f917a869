"""Fixture cases for the neuron layers (issue 17): Sigmoid, TanH, ELU, AbsVal, Power, Exp, Log,
BNLL, Threshold. Collected by make_fixtures.py's ``layer_cases``. (The reference build has no
Clip or Swish: tests/test_layers_issue17.py checks those against master's formulas.)

Inputs keep away from kinks and poles: Log and fractional powers get positive inputs;
Threshold (no backward in Caffe) records its forward only.

``exp_log_constants`` is a case of its own kind: Exp's and Log's float32 setup constants over a
sweep of parameters, read out of Caffe exactly (see make_fixtures.py's ``run_exp_log_constants``).
"""
from __future__ import annotations

import numpy as np

from case_kit import L, ff, net_case, normal, uniform


def neuron(name, type_, data, body="", **kw):
    return net_case(name, type_, {"data": data}, [L("neuron", type_, "data", "out", body)], **kw)


def exp_log_constants():
    """Bases log-uniform in [1e-3, 1e3] (and the integers 2..20), scales and shifts uniform in
    [-6, 6] (and Exp's shifts 2, 3, 10 at base e), all float32; base -1 is e."""
    r = ff.rng("exp_log_constants")
    f32 = lambda a: [float(v) for v in np.asarray(a, dtype=np.float32)]  # noqa: E731
    bases = f32(np.concatenate([np.exp(r.uniform(np.log(1e-3), np.log(1e3), 180)),
                                np.arange(2, 21)]))
    bases = [b for b in bases if b != 1]
    exp_bases = [-1.0] * 20 + bases[:180]
    shifts = [2.0, 3.0, 10.0, -1.0, 0.5] + f32(r.uniform(-6, 6, len(exp_bases) - 5))
    return {"kind": "exp_log_constants", "name": "exp_log_constants", "group": "Exp, Log",
            "log_bases": bases,
            "exp_inner": [[b, s] for b, s in zip(exp_bases, f32(r.uniform(-6, 6, 200)))],
            "exp_outer": [[b, s] for b, s in zip(exp_bases, shifts)],
            "note": "Log's 1/ln(base), Exp's ln(base)*scale and base^shift in Caffe<float>"}


def cases():
    shape = (2, 3, 4, 5)
    return [exp_log_constants(),
        neuron("sigmoid", "Sigmoid", normal(*shape, scale=3.0)),
        neuron("tanh", "TanH", normal(*shape, scale=2.0)),
        neuron("elu_default", "ELU", normal(*shape, scale=2.0)),
        neuron("elu_alpha", "ELU", normal(*shape, scale=2.0), "elu_param { alpha: 0.3 }"),
        neuron("absval", "AbsVal", normal(*shape)),
        neuron("power_default", "Power", normal(*shape)),
        neuron("power_square_shift", "Power", normal(*shape),
               "power_param { power: 2 scale: 0.5 shift: 1 }"),
        neuron("power_cube_no_shift", "Power", normal(*shape),
               "power_param { power: 3 scale: -1.5 }"),
        neuron("power_sqrt_general", "Power", uniform(*shape, low=0.1, high=3.0),
               "power_param { power: 0.5 scale: 2 shift: 0.25 }"),
        neuron("power_negative", "Power", uniform(*shape, low=0.5, high=2.0),
               "power_param { power: -1.5 scale: 1 shift: 0.5 }"),
        neuron("power_linear", "Power", normal(*shape), "power_param { scale: -2 shift: 3 }"),
        neuron("power_constant", "Power", normal(*shape),
               "power_param { power: 2.5 scale: 0 shift: 1.5 }"),
        neuron("exp_default", "Exp", normal(*shape)),
        neuron("exp_base2_shift", "Exp", normal(*shape),
               "exp_param { base: 2 scale: 0.5 shift: 1 }"),
        neuron("exp_base_half", "Exp", normal(*shape), "exp_param { base: 0.5 scale: -1 }"),
        neuron("log_default", "Log", uniform(*shape, low=0.05, high=4.0)),
        neuron("log_base10_scale_shift", "Log", uniform(*shape, low=0.1, high=2.0),
               "log_param { base: 10 scale: 2 shift: 0.5 }"),
        neuron("log_base2_shift", "Log", uniform(*shape, low=-0.5, high=2.0),
               "log_param { base: 2 shift: 0.75 }"),
        neuron("bnll", "BNLL", normal(*shape, scale=2.0)),
        neuron("bnll_wide", "BNLL", normal(*shape, scale=40.0)),
        neuron("threshold", "Threshold", normal(*shape), "threshold_param { threshold: 0.3 }",
               backward="none"),
        neuron("threshold_default", "Threshold", normal(*shape), backward="none"),
        net_case("sigmoid_inplace_after_ip", "Sigmoid", {"data": normal(3, 5)},
                 [L("ip", "InnerProduct", "data", "ip", "inner_product_param { num_output: 4 }"),
                  L("sigmoid", "Sigmoid", "ip", "ip"),
                  L("tanh", "TanH", "ip", "out")]),
    ]
