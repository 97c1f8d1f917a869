"""runtime.CaffeSGD and runtime.CaffeLR as torch optimizer and scheduler: parameter groups,
state_dict and .solverstate round trips, refusals. Caffe's numbers are pinned against real
Caffe in test_caffe_fixtures.py (test_caffe_sgd_in_a_plain_loop) and against sgd_solver.cpp's
rule in test_solver.py."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from runtime import CaffeLR, CaffeSGD
from runtime.optim import CaffeAdam
from runtime.errors import AllconvError
from runtime.lr_policy import learning_rate
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
    assert [(g["lr_mult"], g["momentum"]) for g in opt.param_groups] == [(3.0, 0.5), (1.0, 0.0)]
    # the keyword defaults are caffe.proto's (momentum has none: 0; it was 0.9 here, 0 through
    # from_solver), in float32 as Caffe reads them
    from runtime.optim import CaffeAdam, CaffeRMSProp
    adam = CaffeAdam([plain], lr=0.1, momentum=0.9).param_groups[0]
    assert (adam["momentum2"], adam["delta"]) == (np.float32(0.999), np.float32(1e-8))
    assert CaffeRMSProp([plain], lr=0.1).param_groups[0]["rms_decay"] == np.float32(0.99)
    assert (opt.clip_gradients, opt.iter_size) == (-1.0, 1)


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


def test_solverstate_history_in_legacy_4d_blobs_loads_as_caffes_shape_equals():
    """An old .solverstate keeps a (3, 4) history as num/channels/height/width 1×1×3×4 and a
    (3,) one as 1×1×1×3 (Caffe's ShapeEquals pads in front); the same shape given by the
    ``shape`` field is a mismatch."""
    values = [torch.arange(12.0).reshape(3, 4), torch.arange(3.0), torch.zeros(2, 3)]
    state = pb.SolverState(iter=1)
    for h in values:
        dims = (1,) * (4 - h.dim()) + tuple(h.shape)
        state.history.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3],
                          data=h.reshape(-1).tolist())
    opt = CaffeSGD(_params(), lr=0.1)
    opt.load_solver_state(state)
    assert all(torch.equal(a, b) for a, b in zip(opt.history(), values))
    state.history[0].Clear()
    state.history[0].shape.dim.extend([1, 1, 3, 4])
    state.history[0].data.extend(range(12))
    with pytest.raises(AllconvError, match=r"history blob 0 has shape \(1, 1, 3, 4\) but it is "
                                           r"for a learnable param of shape \(3, 4\)"):
        opt.load_solver_state(state, "s.solverstate")


def test_caffe_lr_starts_at_a_given_iteration_like_a_restored_solver():
    p = _solver()                     # multistep at 1, 2, 4: past all three after 5 steps
    opt = CaffeSGD(_params(), lr=0.1)
    sched = CaffeLR(opt, p)
    for _ in range(5):
        opt.step()
        sched.step()
    restarted = CaffeLR(CaffeSGD(_params(), lr=0.1), p, iter=5, current_step=sched.current_step)
    assert restarted.last_epoch == 5
    assert restarted.get_last_lr() == sched.get_last_lr()
    assert restarted.optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    # "step" reads the iteration alone: iteration 5 of stepsize 2 is two steps down, and on
    step = pb.SolverParameter(base_lr=0.1, lr_policy="step", gamma=0.5, stepsize=2)
    sched = CaffeLR(CaffeSGD(_params(), lr=0.1), step, iter=5)
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    sched.optimizer.step()
    sched.step()
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_a_step_policy_of_gamma_0_is_caffes_drop_to_zero():
    """Caffe refuses a negative gamma only: 0 drops the rate to 0 at the first step."""
    p = pb.SolverParameter(base_lr=0.1, lr_policy="step", gamma=0.0, stepsize=2)
    assert learning_rate(p, 1)[0] == pytest.approx(0.1)
    assert learning_rate(p, 3)[0] == 0.0


def test_learning_rate_of_multistep_starts_before_the_first_stepvalue():
    assert learning_rate(_solver(), 0) == (pytest.approx(0.1), 0)
    assert learning_rate(_solver(), 1) == (pytest.approx(0.05), 1)


def test_caffe_sgd_defaults_are_momentum_sgd_without_decay_or_clipping():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = CaffeSGD([w], lr=0.1, momentum=0.9)
    for _ in range(2):
        w.grad = torch.tensor([3.0, 4.0])             # norm 5: a clip at 1 or 2 would scale it
        opt.step()
    # v1 = 0.1 g = (.3, .4), w1 = (.7, -2.4); v2 = .9 v1 + .1 g = (.57, .76), w2 = (.13, -3.16)
    torch.testing.assert_close(w.detach(), torch.tensor([0.13, -3.16]))


def test_an_lr_mult_0_blob_with_a_history_moves_by_its_momentum_alone():
    """Caffe: local rate 0, so v = m v and w -= v, as after loading a .solverstate."""
    w = torch.nn.Parameter(torch.zeros(2))
    w.lr_mult = 0.0
    opt = CaffeSGD([w], lr=0.1, momentum=0.5)
    opt.state[w]["momentum_buffer"].fill_(1.0)
    opt.step()                                        # no backward: w.grad is None
    assert opt.state[w]["momentum_buffer"].tolist() == [0.5, 0.5]
    assert w.tolist() == [-0.5, -0.5]


def test_a_blob_without_a_diff_still_decays():
    """Caffe's diff is a zero blob: Regularize adds decay * w, and the update applies it."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = CaffeSGD([w], lr=0.1, momentum=0.0, weight_decay=0.5)
    opt.step()                                        # w.grad is None
    torch.testing.assert_close(w.detach(), torch.tensor([0.95, 1.9]))


def test_clip_gradients_leaves_a_smaller_norm_alone():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = CaffeSGD([w], lr=0.1, momentum=0.0, clip_gradients=10.0)
    w.grad = torch.tensor([3.0, 4.0])                 # norm 5 <= 10
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.7, -2.4]))
    w.grad = torch.tensor([30.0, 40.0])               # norm 50: scaled by 10/50
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.1, -3.2]))


def test_clip_gradients_with_no_diff_yet_still_decays():
    """Caffe's ClipGradients over zero diffs is a no-op (norm 0): a step before any backward
    pass, or of a net whose blobs got no diff, only decays."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = CaffeSGD([w], lr=0.1, momentum=0.0, weight_decay=0.5, clip_gradients=1.0)
    opt.step()                                        # w.grad is None
    torch.testing.assert_close(w.detach(), torch.tensor([0.95, 1.9]))


def test_refusals_name_the_valid_choices():
    with pytest.raises(AllconvError, match="CaffeSGD runs solver type.s. SGD, Nesterov, not 'Adam'"):
        CaffeSGD.from_solver(pb.SolverParameter(type="Adam"), _params())
    with pytest.raises(AllconvError, match="valid: L1, L2"):
        CaffeSGD(_params(), lr=0.1, regularization="L3")
    with pytest.raises(AllconvError, match="iter_size"):
        CaffeSGD(_params(), lr=0.1, iter_size=0)
    with pytest.raises(AllconvError, match="valid policies: fixed, step"):
        CaffeLR(CaffeSGD(_params(), lr=0.1), pb.SolverParameter(lr_policy="cosine"))


# ----------------------------------------------------------------------------- packed runs

MEMBERS, RATES = 2, (0.1, 0.02)


def _member_params(seed: int = 0):
    """Parameters of a pack of two: each holds its members along axis 0 (rows [3k, 3k+3))."""
    g = torch.Generator().manual_seed(seed)
    w, b = (torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((6, 4, 3), (6,)))
    b.lr_mult, b.decay_mult = 2.0, 0.0
    return [w, b]


def _blocks(params, k):
    """Member k's params as a solo run's own."""
    out = []
    for p in params:
        block = torch.nn.Parameter(p.detach()[3 * k:3 * k + 3].clone())
        block.lr_mult, block.decay_mult = getattr(p, "lr_mult", 1.0), getattr(p, "decay_mult", 1.0)
        out.append(block)
    return out


def _grads(params, step: int, nan_member: int | None = None):
    g = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=g) * 10 for p in params]
    if nan_member is not None:
        for grad in grads:
            grad[3 * nan_member:3 * nan_member + 3] = float("nan")
    return grads


@pytest.mark.parametrize("cls, options, exact", [
    (CaffeSGD, {"momentum": 0.9, "weight_decay": 0.01}, True),
    (CaffeSGD, {"momentum": 0.9, "weight_decay": 0.01, "nesterov": True}, True),
    (CaffeSGD, {"momentum": 0.9, "weight_decay": 0.01, "regularization": "L1"}, True),
    (CaffeSGD, {"momentum": 0.9, "clip_gradients": 5.0}, False),
    (CaffeAdam, {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8}, True),
], ids=["sgd", "nesterov", "l1", "clip-per-member", "adam"])
def test_one_rate_per_member_steps_each_block_as_its_solo_optimizer(cls, options, exact):
    pack = _member_params()
    opt = cls(pack, lr=torch.tensor(RATES), **options)
    solos = [_blocks(pack, k) for k in range(MEMBERS)]
    solo_opts = [cls(params, lr=rate, **options) for params, rate in zip(solos, RATES)]
    for step in range(3):
        for p, g in zip(pack, _grads(pack, step)):
            p.grad = g.clone()
        opt.step()
        for k, (params, solo_opt) in enumerate(zip(solos, solo_opts)):
            for p, g in zip(params, _grads(pack, step)):
                p.grad = g[3 * k:3 * k + 3].clone()
            solo_opt.step()
    for k, params in enumerate(solos):
        for packed, solo in zip(pack, params):
            got = packed.detach()[3 * k:3 * k + 3]
            if exact:
                assert torch.equal(got, solo.detach())
            else:   # each member's own norm, summed in another order: rounding only
                torch.testing.assert_close(got, solo.detach(), rtol=1e-6, atol=1e-6)
        for packed, solo in zip(opt.history(member=k), solo_opts[k].history()):
            torch.testing.assert_close(packed, solo, rtol=0 if exact else 1e-6,
                                       atol=0 if exact else 1e-6)


def test_a_stopped_member_keeps_its_weights_and_the_others_step_alone():
    pack = _member_params()
    before = [p.detach().clone() for p in pack]
    opt = CaffeSGD(pack, lr=torch.tensor(RATES), momentum=0.9, weight_decay=0.01,
                   clip_gradients=5.0)
    opt.active = torch.tensor([False, True])
    solo = _blocks(pack, 1)
    solo_opt = CaffeSGD(solo, lr=RATES[1], momentum=0.9, weight_decay=0.01, clip_gradients=5.0)
    for step in range(2):   # member 0's gradients are NaN: they reach nobody
        for p, g in zip(pack, _grads(pack, step, nan_member=0)):
            p.grad = g
        opt.step()
        for p, g in zip(solo, _grads(pack, step)):
            p.grad = g[3:6].clone()
        solo_opt.step()
    for packed, start, other in zip(pack, before, solo):
        assert torch.equal(packed.detach()[:3], start[:3])
        torch.testing.assert_close(packed.detach()[3:], other.detach(), rtol=1e-6, atol=1e-6)


def test_a_stopped_members_nan_gradient_does_not_reach_its_history():
    pack = _member_params()
    opt = CaffeSGD(pack, lr=torch.tensor(RATES), momentum=0.9, weight_decay=0.01,
                   clip_gradients=5.0)
    opt.active = torch.tensor([False, True])
    for step in range(2):
        for p, g in zip(pack, _grads(pack, step, nan_member=0)):
            p.grad = g
        opt.step()
    assert all(torch.isfinite(h).all() for h in opt.history(member=0))


def test_per_member_clipping_leaves_a_member_below_the_threshold_alone():
    w = torch.nn.Parameter(torch.zeros(2, 2))           # members 0 and 1: one row each
    opt = CaffeSGD([w], lr=torch.tensor([0.1, 0.1]), momentum=0.0, clip_gradients=10.0)
    w.grad = torch.tensor([[3.0, 4.0], [30.0, 40.0]])   # member norms 5 and 50
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[-0.3, -0.4], [-0.6, -0.8]]))


def test_a_members_solverstate_is_its_solo_runs():
    pack = _member_params()
    opt = CaffeSGD(pack, lr=torch.tensor(RATES), momentum=0.9)
    for step in range(2):
        for p, g in zip(pack, _grads(pack, step)):
            p.grad = g
        opt.step()
    state = opt.solver_state(2, 0, "m1.caffemodel", member=1)
    solo_opt = CaffeSGD(_blocks(pack, 1), lr=RATES[1], momentum=0.9)
    solo_opt.load_solver_state(state)
    assert all(torch.equal(a, b) for a, b in zip(solo_opt.history(), opt.history(member=1)))
    fresh = CaffeSGD(_member_params(), lr=torch.tensor(RATES), momentum=0.9)
    fresh.load_solver_state(state, member=0)          # into the other member's blocks
    assert all(torch.equal(h[:3], s) and not h[3:].any()
               for h, s in zip(fresh.history(), solo_opt.history()))
    with pytest.raises(AllconvError, match=r"\(5, 4\) does not split into 2 members"):
        CaffeSGD([torch.nn.Parameter(torch.zeros(5, 4))], lr=torch.tensor(RATES))


def test_caffe_lr_gives_each_member_its_solo_rate_and_writes_it_when_it_changes():
    p = _solver()                     # multistep at 1, 2, 4: gamma 0.5
    base = (0.1, 0.03)
    opt = CaffeSGD(_member_params(), lr=torch.tensor(base))
    sched = CaffeLR(opt, p, base_lrs=base)
    solos = []
    for rate in base:
        solo_param = pb.SolverParameter()
        solo_param.CopyFrom(p)
        solo_param.base_lr = rate
        solo_opt = CaffeSGD(_params(), lr=rate)
        solos.append((solo_opt, CaffeLR(solo_opt, solo_param)))
    lr = opt.param_groups[0]["lr"]
    writes, seen = [], []
    for _ in range(6):
        before = lr.clone()
        opt.step()
        sched.step()
        for solo_opt, solo_sched in solos:
            solo_opt.step()
            solo_sched.step()
        writes.append(not torch.equal(before, lr))
        assert lr.tolist() == [s.param_groups[0]["lr"] for s, _ in solos] == list(sched.rates)
        seen.append((sched.state_dict(), sched.rates))
    assert writes == [True, True, False, True, False, False]
    state, rates = seen[2]             # 3 updates done, 2 steps of the multistep taken
    restarted = CaffeLR(CaffeSGD(_member_params(), lr=torch.tensor(base)), p, base_lrs=base,
                        iter=state["last_epoch"], current_step=state["current_step"])
    assert restarted.rates == rates and restarted.optimizer.param_groups[0]["lr"].tolist() == \
        list(rates)


def test_caffe_lr_writes_member_rates_of_a_pack_in_one_group():
    base = (0.1, 0.03)
    w = torch.nn.Parameter(torch.zeros(2, 3))          # 2 members, 1 row each, one group
    opt = CaffeSGD([w], lr=torch.tensor(base))
    sched = CaffeLR(opt, _solver(), base_lrs=base)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"].tolist() == pytest.approx([0.05, 0.015])


def test_only_adam_reads_the_iteration_on_the_host_and_a_cuda_graph_refuses_it():
    """A captured graph would freeze Adam's bias correction at its capture's step."""
    import types

    from harness.step import TrainStep
    from runtime.optim import OPTIMIZERS
    assert [name for name, cls in OPTIMIZERS.items() if cls.host_iteration] == ["Adam"]
    run = types.SimpleNamespace(optimizer=CaffeAdam([torch.nn.Parameter(torch.zeros(2))],
                                                    lr=0.1, momentum=0.9))
    with pytest.raises(AllconvError, match="CaffeAdam reads the iteration on the host"):
        TrainStep(run, graphed=True)


@pytest.mark.parametrize("policy, rates", [("step", [0.5, 0.0]), ("exp", [0.5, 0.0]),
                                           ("inv", [0.5, 0.5]), ("multistep", [0.5, 0.0])])
def test_a_gamma_of_zero_is_taken_as_caffe_takes_it(policy, rates):
    """Caffe checks gamma >= 0 (master's GetLearningRate): 0 is a rate that drops to 0."""
    p = pb.SolverParameter(base_lr=0.5, lr_policy=policy, gamma=0.0, stepsize=2, power=1.0,
                           stepvalue=[1])
    assert [learning_rate(p, it, step)[0] for it, step in ((0, 0), (3, 0))] == rates


def test_step_calls_its_closure_once_and_returns_its_loss():
    """torch.optim's contract, which torch's own loops (LBFGS-style callers) rely on."""
    param = torch.nn.Parameter(torch.ones(2))
    opt, calls = CaffeSGD([param], lr=0.1), []

    def closure():
        calls.append(1)
        param.grad = torch.ones(2)
        return torch.tensor(3.0)
    assert float(opt.step(closure)) == 3.0 and calls == [1]
    torch.testing.assert_close(param.detach(), torch.full((2,), 0.9))


def test_a_member_rate_that_is_not_finite_is_one_line_naming_them_all():
    with pytest.raises(AllconvError, match=r"lr \(a solver's base_lr\) is \[0\.1, nan\]: every "
                                           "update would be NaN"):
        CaffeSGD([torch.nn.Parameter(torch.ones(2, 1))], lr=torch.tensor([0.1, float("nan")]))
