"""harness/feed.py's `TrainFeed` (a mutation round):
- each image comes with its own label, with and without a transform, whole or sliced;
- a restored feed goes on with the same batches *and the same augmentation* (its docstring:
  'state_dict holds the pass order, the position in it and the generator, so a restored feed
  continues with the same batches'): the augmentation draws from the generator the state holds."""
import torch

from harness.feed import TrainFeed
from harness.pipelines import PIPELINES


def _data(n=10):
    # image k is filled with k, its label is k % 7: a batch shows which sample each row is
    images = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 8, 8).clone()
    return images, torch.arange(n) % 7


def test_each_image_comes_with_its_label_whole_or_sliced():
    images, labels = _data()
    for part in (None, slice(1, 3)):
        x, y = TrainFeed(images, labels, seed=5)(4, part)
        assert y.dtype == torch.float32
        assert torch.equal(y, (x[:, 0, 0, 0].long() % 7).float())
        assert len(x) == len(y) == (4 if part is None else 2)


def test_a_slice_is_the_same_samples_as_in_the_whole_batch():
    images, labels = _data()
    whole_x, whole_y = TrainFeed(images, labels, seed=5)(6)
    part_x, part_y = TrainFeed(images, labels, seed=5)(6, slice(2, 5))
    assert torch.equal(part_x, whole_x[2:5]) and torch.equal(part_y, whole_y[2:5])


def test_a_restored_feed_goes_on_with_the_same_batches_and_distortions():
    images, labels = _data(12)
    images = images + torch.arange(8.0)[None, None, None, :]   # so that a flip shows
    train, _ = PIPELINES["flip-translate"].transforms(None)
    first = TrainFeed(images, labels, seed=3, transform=train)
    first(5)
    state = first.state_dict()
    expected = [first(5) for _ in range(3)]
    second = TrainFeed(images, labels, seed=99, transform=train)
    second.load_state_dict(state)
    for (x, y), (ex, ey) in zip((second(5) for _ in range(3)), expected):
        assert torch.equal(y, ey) and torch.equal(x, ex)
