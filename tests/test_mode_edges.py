"""pycaffe's process-wide settings (runtime/mode.py): edges a mutation round found untested.
Caffe's seed is an unsigned int, set_device's an int."""
import pytest
import torch

from runtime import TEST, Net


@pytest.fixture
def settings(monkeypatch):
    from runtime import mode
    monkeypatch.setattr(mode, "_chosen", dict(mode._chosen))
    return mode


NET = ('layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 '
       'dim: 3 dim: 3 } } } layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
       'inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }')


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_the_ends_of_an_unsigned_int_are_seeds(settings, seed):
    settings.set_random_seed(seed)
    first = Net(NET, TEST).params["ip"][0].data.clone()
    settings.set_random_seed(seed)
    assert torch.equal(Net(NET, TEST).params["ip"][0].data, first)


@pytest.mark.parametrize("device_id", [0, 2**31 - 1])
def test_the_ends_of_an_int_are_gpu_numbers(settings, device_id):
    settings.set_device(device_id)
    assert settings._chosen["device_id"] == device_id
