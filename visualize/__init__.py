"""`visualize`: the paper's Section 3.4 figures (backprop, deconvnet, guided backpropagation)."""
