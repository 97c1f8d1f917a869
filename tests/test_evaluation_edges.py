"""Dead class units over the whole test set (a mutation round: the maxima of the last batch
only passed every other test, whose dead unit was dead in every batch)."""
import torch

from harness.evaluation import Evaluator
from runtime import TEST
from runtime.net import Net

NET = """layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 5 } shape { dim: 2 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "score" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
"""


def test_a_unit_alive_in_an_earlier_batch_only_is_not_dead():
    """A class unit is dead when its score is 0 on every test image: class 3 is, class 4 (2 in
    the first batch) and class 1 (1 in the first batch) are not."""
    batches = [(torch.tensor([[1.0, 0, 0, 0, 2], [0, 1, 0, 0, 0]]), torch.tensor([4, 1])),
               (torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 1, 0, -1]]), torch.tensor([0, 2]))]
    [metrics] = Evaluator(Net(NET, TEST), (1,))(batches)
    assert metrics["dead_units"] == [3]
    assert metrics["test_error"] == 0.0
