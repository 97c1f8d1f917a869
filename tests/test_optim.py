"""runtime.CaffeSGD and runtime.CaffeLR as torch optimizer and scheduler: parameter groups,
state_dict and .solverstate round trips, refusals. Caffe's numbers are pinned against real
Caffe in test_caffe_fixtures.py (test_caffe_sgd_in_a_plain_loop) and against sgd_solver.cpp's
rule in test_solver.py."""
from __future__ import annotations

import copy

import pytest
import torch

from runtime import CaffeLR, CaffeSGD
from runtime.errors import AllconvError
from runtime.proto import pb


def _params():
    torch.manual_seed(0)
    w, b, frozen = (torch.nn.Parameter(torch.randn(shape)) for shape in ((3, 4), (3,), (2, 3)))
    b.lr_mult, b.decay_mult = 2.0, 0.0
    frozen.lr_mult = 0.0
    return [w, b, frozen]


def _solver(**fields):
    p = pb.SolverParameter(base_lr=0.1, momentum=0.9, weight_decay=0.01, lr_policy="multistep",
                           gamma=0.5, **fields)
    p.stepvalue.extend([1, 2, 4])
    return p


def _train(params, optimizer, schedule, steps, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 4, generator=g)
    for _ in range(steps):
        optimizer.zero_grad()
        w, b, frozen = params
        (((x @ w.T + b) @ frozen.T) ** 2).mean().backward()
        optimizer.step()
        schedule.step()


def test_groups_follow_lr_mult_and_decay_mult_and_default_to_one():
    w, b, frozen = _params()
    plain = torch.nn.Parameter(torch.zeros(2))
    opt = CaffeSGD([w, b, frozen, plain], lr=0.1)
    keys = [(g["lr_mult"], g["decay_mult"], len(g["params"])) for g in opt.param_groups]
    assert keys == [(1.0, 1.0, 2), (2.0, 0.0, 1), (0.0, 1.0, 1)]
    # group dicts keep their options; a group key is the default for params without attributes
    opt = CaffeSGD([{"params": [plain], "lr_mult": 3.0, "momentum": 0.5}, {"params": [w]}],
                   lr=0.1)
    assert [(g["lr_mult"], g["momentum"]) for g in opt.param_groups] == [(3.0, 0.5), (1.0, 0.9)]


def test_state_dict_round_trip_continues_bit_exactly():
    p = _solver()
    full = _params()
    opt = CaffeSGD.from_solver(p, full)
    _train(full, opt, CaffeLR(opt, p), 5, seed=1)

    first = _params()
    opt1 = CaffeSGD.from_solver(p, first)
    sched1 = CaffeLR(opt1, p)
    _train(first, opt1, sched1, 3, seed=1)
    saved = copy.deepcopy((opt1.state_dict(), sched1.state_dict(),
                           [t.detach().clone() for t in first]))
    assert saved[1] == {"last_epoch": 3, "current_step": 2}

    resumed = _params()
    with torch.no_grad():
        for t, v in zip(resumed, saved[2]):
            t.copy_(v)
    opt2 = CaffeSGD.from_solver(p, resumed)
    sched2 = CaffeLR(opt2, p)
    opt2.load_state_dict(saved[0])
    sched2.load_state_dict(saved[1])
    assert opt2.param_groups[0]["lr"] == opt1.param_groups[0]["lr"]
    _train(resumed, opt2, sched2, 2, seed=1)
    for a, b in zip(full, resumed):
        assert torch.equal(a, b)


def test_solverstate_history_round_trip_is_exact():
    params = _params()
    opt = CaffeSGD(params, lr=0.1, nesterov=True)
    p = _solver()
    _train(params, opt, CaffeLR(opt, p), 3, seed=2)
    state = opt.solver_state(3, 2, "x.caffemodel")
    back = pb.SolverState()
    back.ParseFromString(state.SerializeToString())
    assert (back.iter, back.current_step, back.learned_net) == (3, 2, "x.caffemodel")
    other = CaffeSGD(_params(), lr=0.1)
    other.load_solver_state(back)
    assert all(h.abs().sum() > 0 for h in opt.history()[:2])   # the lr_mult 0 one stays 0
    for a, b in zip(opt.history(), other.history()):
        assert torch.equal(a, b)
    del back.history[-1]
    with pytest.raises(AllconvError, match="2 history blobs but the net has 3"):
        other.load_solver_state(back, "s.solverstate")


def test_caffe_lr_starts_at_a_given_iteration_like_a_restored_solver():
    p = _solver()
    opt = CaffeSGD(_params(), lr=0.1)
    sched = CaffeLR(opt, p)
    for _ in range(3):
        opt.step()
        sched.step()
    restarted = CaffeLR(CaffeSGD(_params(), lr=0.1), p, iter=3, current_step=sched.current_step)
    assert restarted.get_last_lr() == sched.get_last_lr()
    assert restarted.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_refusals_name_the_valid_choices():
    with pytest.raises(AllconvError, match="CaffeSGD runs solver type.s. SGD, Nesterov, not 'Adam'"):
        CaffeSGD.from_solver(pb.SolverParameter(type="Adam"), _params())
    with pytest.raises(AllconvError, match="valid: L1, L2"):
        CaffeSGD(_params(), lr=0.1, regularization="L3")
    with pytest.raises(AllconvError, match="iter_size"):
        CaffeSGD(_params(), lr=0.1, iter_size=0)
    with pytest.raises(AllconvError, match="valid policies: fixed, step"):
        CaffeLR(CaffeSGD(_params(), lr=0.1), pb.SolverParameter(lr_policy="cosine"))
