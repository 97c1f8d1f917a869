"""Fixture cases for the neuron layers (issue 17): Sigmoid, TanH, ELU, AbsVal, Power, Exp, Log,
BNLL, Threshold. Collected by make_fixtures.py's ``layer_cases``. (The reference build has no
Clip or Swish: tests/test_layers_issue17.py checks those against master's formulas.)

Inputs keep away from kinks and poles: Log and fractional powers get positive inputs;
Threshold (no backward in Caffe) records its forward only."""
from __future__ import annotations

from case_kit import L, net_case, normal, uniform


def neuron(name, type_, data, body="", **kw):
    return net_case(name, type_, {"data": data}, [L("neuron", type_, "data", "out", body)], **kw)


def cases():
    shape = (2, 3, 4, 5)
    return [
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
