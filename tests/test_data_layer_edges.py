"""Data layer (runtime/layers/data.py): edges a mutation round found untested."""
import numpy as np
import pytest
import torch

from runtime import TRAIN, AllconvError, Net

DATA = """layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "/nonexistent/source" batch_size: 2 } }"""


def test_a_fed_batch_of_another_batch_size_is_refused():
    net = Net(DATA, TRAIN, feeds=lambda b: (torch.zeros(b + 1, 3, 4, 4), torch.zeros(b + 1)),
              input_shapes={"data": (3, 4, 4)})
    with pytest.raises(AllconvError, match=r"a fed batch has shape \(3, 3, 4, 4\), expected "
                                            r"\(2, 3, 4, 4\)"):
        net.forward()


def test_a_feed_with_one_sample_shape_for_two_tops_is_refused():
    class Feed:
        sample_shapes = [(3, 4, 4)]

        def __call__(self, b):
            return torch.zeros(b, 3, 4, 4), torch.zeros(b)

    with pytest.raises(AllconvError, match=r"the feed gives 1 sample shape\(s\) for 2 top\(s\)"):
        Net(DATA, TRAIN, feeds=Feed())


def _random_crops(tmp_path, seed):
    data = np.random.default_rng(0).uniform(0, 255, (8, 1, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", data=data, labels=np.arange(8, dtype=np.float32))
    text = f"""layer {{ name: "d" type: "Data" top: "data" top: "label"
      transform_param {{ crop_size: 3 mirror: true }}
      data_param {{ source: "{tmp_path / 'd.npz'}" batch_size: 8 }} }}"""
    net = Net(text, TRAIN, seed=seed)
    return torch.cat([net.forward()["data"].clone() for _ in range(3)])


def test_random_crops_follow_the_nets_seed(tmp_path):
    """The transform draws from a generator seeded from the net's: the same seed gives the
    same crops and mirrors, another seed others (as Caffe's random_seed does)."""
    assert torch.equal(_random_crops(tmp_path, 5), _random_crops(tmp_path, 5))
    assert not torch.equal(_random_crops(tmp_path, 5), _random_crops(tmp_path, 6))
