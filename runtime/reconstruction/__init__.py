"""Section 3.4 of the paper: reconstructions from one unit of a blob back to the input, by
backprop, 'deconvnet' or guided backpropagation (ReLU backward rules set on the net itself),
with an optional net whose stride-2 convs are replaced by stride 1 plus max-pooling."""
from runtime.reconstruction.receptive import receptive_windows
from runtime.reconstruction.rules import (GATED_BY_INPUT, METHODS, backward_ignores_input,
                                          relu_rule)
from runtime.reconstruction.switches import switched_net
from runtime.reconstruction.top_units import TopUnits, top_units
from runtime.reconstruction.units import (activations, check_blob, choose_unit, input_blob,
                                          parse_unit, reconstruct, unit_text)

__all__ = ["GATED_BY_INPUT", "METHODS", "backward_ignores_input", "relu_rule", "switched_net",
           "receptive_windows", "TopUnits", "top_units",
           "activations", "check_blob", "choose_unit", "input_blob", "parse_unit", "reconstruct",
           "unit_text"]
