"""harness/step.py, checked on the CPU with the CUDA calls stubbed: 'The graph is captured
after WARMUP eager steps on a side stream (cuDNN's autotuning, lazy allocations, the gradients'
first allocation)', as test_pack_runs's CUDA test runs them (3 eager warm-up steps, the capture,
replays). The first step is never the capture, every step before it ran eagerly on the side
stream, and the captured graph is replayed from then on."""
import types

import torch

from harness import step as step_module
from harness.step import TrainStep


def test_a_graphed_step_warms_up_eagerly_before_its_capture(monkeypatch):
    calls = []
    monkeypatch.setattr(TrainStep, "_on_side_stream", lambda self, inputs: calls.append("eager"))

    def capture(self, inputs):
        calls.append("capture")
        self.static = {name: value.clone() for name, value in inputs.items()}
        self.graph = types.SimpleNamespace(replay=lambda: calls.append("replay"))
    monkeypatch.setattr(TrainStep, "_capture", capture)
    run = types.SimpleNamespace(optimizer=types.SimpleNamespace(host_iteration=False,
                                                                param_groups=[{"iter": 0}]))
    train_step = TrainStep(run, graphed=True)
    for _ in range(step_module.WARMUP + 3):
        train_step({"data": torch.zeros(2)})
    warm = calls.index("capture")
    assert warm >= 1 and calls[:warm] == ["eager"] * warm
    assert calls[warm + 1:] == ["replay"] * (len(calls) - warm - 1) and calls.count("replay") >= 3
