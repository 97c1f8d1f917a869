"""Passes (runtime/data/passes.py): edges a mutation round found untested."""
import pytest
import torch

from runtime.data.passes import Passes


def test_a_state_drawn_on_cuda_is_refused_on_the_cpu():
    passes = Passes(5, torch.Generator().manual_seed(1))
    state = dict(passes.state_dict(), device="cuda:0")
    with pytest.raises(ValueError, match="drawn on CUDA and this run draws it on the CPU"):
        Passes(5, torch.Generator().manual_seed(2)).load_state_dict(state)
