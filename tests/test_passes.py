"""runtime.data.passes: the pass order the feeds share, its wrap-around and its saved state."""
import torch

from runtime.data.passes import Passes


def test_a_draw_straddles_two_passes_each_a_randperm_of_the_generator():
    passes = Passes(5, torch.Generator().manual_seed(4))
    drawn = torch.cat([passes.take(3), passes.take(4)])
    g = torch.Generator().manual_seed(4)
    want = torch.cat([torch.randperm(5, generator=g), torch.randperm(5, generator=g)])[:7]
    assert torch.equal(drawn, want) and passes.cursor == 2


def test_unshuffled_passes_read_in_order_and_rewind_to_the_start():
    passes = Passes(4, torch.Generator().manual_seed(0), shuffle=False)
    assert passes.take(3).tolist() == [0, 1, 2] and passes.take(3).tolist() == [3, 0, 1]
    passes.rewind()
    assert passes.take(2).tolist() == [0, 1]


def test_state_holds_order_cursor_and_generator_and_restores_the_stream():
    passes = Passes(6, torch.Generator().manual_seed(1))
    passes.take(4)
    state = passes.state_dict()
    assert set(state) == {"order", "cursor", "generator", "device"} and state["cursor"] == 4
    assert state["order"].device.type == "cpu" and state["device"] == "cpu"
    ahead = passes.take(9)
    again = Passes(6, torch.Generator().manual_seed(2))
    again.load_state_dict(state)
    assert torch.equal(again.take(9), ahead)
