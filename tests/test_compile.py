"""The runtime's Net under torch.compile, which the harness's --compile and --cuda-graphs use.

CUDA graphs pay off only when the whole training loss is one graph, so the TRAIN net must trace
without graph breaks; and the compiled forward and backward must compute what eager does.
"""
from __future__ import annotations

import pytest
import torch

from generator.render import NetOptions, render_net
from generator.variants import get_variant
from runtime.data.source import Source
from runtime.labels import defer_label_checks
from runtime.net import Net
from runtime.proto import pb

BATCH = 4


def all_cnn_c(tmp_path, phase: int, device: str = "cpu") -> Net:
    path = tmp_path / "all_cnn_c.prototxt"
    path.write_text(render_net(get_variant("all-cnn-c"),
                               NetOptions(batch_size=BATCH, test_batch_size=BATCH)))
    g = torch.Generator().manual_seed(1)
    feed = Source(torch.randn(2 * BATCH, 3, 32, 32, generator=g),
                  torch.randint(0, 10, (2 * BATCH,), generator=g).float())
    return Net(str(path), phase, seed=0, feeds=feed).to(device)


def batch(device: str = "cpu"):
    g = torch.Generator().manual_seed(2)
    return (torch.randn(BATCH, 3, 32, 32, generator=g).to(device),
            torch.arange(BATCH).float().to(device))


def test_train_loss_traces_as_one_graph_without_breaks(tmp_path):
    """With the label checks deferred to a device record, as the training loop does (an
    immediate check reads the device, which breaks the graph)."""
    net = all_cnn_c(tmp_path, pb.TRAIN)
    defer_label_checks(net)
    data, label = batch()
    explained = torch._dynamo.explain(net.loss)(data=data, label=label)
    assert explained.break_reasons == []
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
# Compiled against eager in float64, where rounding (about 1e-16) flips no ReLU: in fp32, a
# pre-activation within rounding of zero takes the other side in one of two summation orders,
# and that unit's whole share of a gradient changes (an H200 measured 2.2e-3 of a weight
# gradient's size between compiled and eager fp32 on this batch, 1.3e-5 absolute). A wrong
# layer, mask or fusion is off by far more than TOLERANCE.
TOLERANCE = 1e-9


def names(net: Net) -> list[str]:
    """``layer:index`` of each of the net's learnable blobs."""
    named = {id(blob): f"{layer.name}:{i}" for layer in net.layers
             for i, blob in enumerate(layer.blobs)}
    return [named[id(p)] for p in net.learnable_params]


def gradients(net: Net, loss_fn, data, label):
    net.clear_param_diffs()
    torch.compiler.cudagraph_mark_step_begin()                # as harness.train.Run.step
    loss = loss_fn(data=data, label=label)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in net.learnable_params]


@pytest.mark.parametrize("device, mode", [
    ("cpu", None),
    pytest.param("cuda", None, marks=[pytest.mark.gpu, CUDA]),
    pytest.param("cuda", "reduce-overhead", marks=[pytest.mark.gpu, CUDA], id="cuda-graphs"),
])
def test_compiled_loss_and_gradients_equal_eager(tmp_path, device, mode):
    """The loss as the harness compiles it (label checks deferred: one graph, no break, so no
    layer is left to eager code), replayed, against eager, both in float64."""
    torch._dynamo.reset()            # no graphs of another test's net
    net = all_cnn_c(tmp_path, pb.TEST).to(device, torch.float64)   # no dropout: one function
    defer_label_checks(net)
    data, label = (t.double() for t in batch(device))
    eager_loss, eager = gradients(net, net.loss, data, label)
    explained = torch._dynamo.explain(net.loss)(data=data, label=label)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    compiled = torch.compile(net.loss, mode=mode)
    assert len(eager) == 18
    for _ in range(3):                                        # replays after the capture
        loss, grads = gradients(net, compiled, data, label)
        assert loss == pytest.approx(eager_loss, rel=TOLERANCE)
        for name, want, got in zip(names(net), eager, grads):
            error = ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()
            assert error <= TOLERANCE, f"{name}: compiled {error:.2e} from eager"
