"""Caffe solver semantics: lr policies, the SGD/Nesterov update, iter_size, clipping,
snapshot/restore, test scheduling. Tiny nets, CPU fp32."""
from __future__ import annotations

import logging
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.errors import AllconvError
from runtime.lr_policy import POLICIES, learning_rate
from runtime.proto import pb
from runtime.prototxt import parse_solver
from runtime.solver import NesterovSolver, SGDSolver, make_solver


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def _net_text(batch: int = 4, dropout: bool = False, source: str = "data",
              force_backward: bool = False) -> str:
    """data(batch,3) -> ip1(3) [-> dropout] -> ip2(3) -> SoftmaxWithLoss against label(batch,).

    ip1: weight lr_mult 1 decay_mult 1, bias lr_mult 2 decay_mult 0;
    ip2: weight lr_mult 0 decay_mult 1 (frozen), bias lr_mult 1 decay_mult 1.
    `source`: "data" (a Data layer reading the solver's feed) or "input" (Input buffers).
    """
    if source == "data":
        head = (f'layer {{ name: "data" type: "Data" top: "data" top: "label" '
                f'data_param {{ batch_size: {batch} }} }}')
    else:
        head = (f'layer {{ name: "data" type: "Input" top: "data" top: "label" input_param '
                f'{{ shape {{ dim: {batch} dim: 3 }} shape {{ dim: {batch} }} }} }}')
    drop = ('layer { name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" '
            'dropout_param { dropout_ratio: 0.5 } }') if dropout else ""
    return f"""
name: "tiny"
force_backward: {str(force_backward).lower()}
{head}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  inner_product_param {{ num_output: 3
    weight_filler {{ type: "gaussian" std: 0.5 }}
    bias_filler {{ type: "constant" value: 0.1 }} }} }}
{drop}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param {{ lr_mult: 0 decay_mult: 1 }} param {{ lr_mult: 1 decay_mult: 1 }}
  inner_product_param {{ num_output: 3
    weight_filler {{ type: "gaussian" std: 0.5 }}
    bias_filler {{ type: "constant" value: -0.2 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""


LR_MULT = [1.0, 2.0, 0.0, 1.0]
DECAY_MULT = [1.0, 0.0, 1.0, 1.0]


def _solver_param(net_text: str, **fields) -> "pb.SolverParameter":
    p = pb.SolverParameter()
    p.net_param.CopyFrom(_parse_net(net_text))
    p.base_lr = 0.1
    p.lr_policy = "fixed"
    p.momentum = 0.9
    p.weight_decay = 0.01
    p.max_iter = 100
    p.random_seed = 1701
    p.solver_mode = pb.SolverParameter.CPU
    p.snapshot_after_train = False
    for k, v in fields.items():
        field = getattr(p, k)
        if hasattr(field, "extend"):
            del field[:]
            field.extend(v)
        else:
            setattr(p, k, v)
    return p


def _parse_net(text: str):
    from runtime.prototxt import read_net
    return read_net(text)


def _batches(n: int, batch: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = np.random.default_rng(seed)
    return [(torch.from_numpy(g.standard_normal((batch, 3)).astype(np.float32)),
             torch.from_numpy(g.integers(0, 3, batch).astype(np.float32)))
            for _ in range(n)]


class Feed:
    """A Data-layer feed, ``feed(batch_size) -> (data, label)``, cycling through fixed
    batches; resumable through state_dict/load_state_dict (saved in the .rngstate)."""

    sample_shape = (3,)

    def __init__(self, batches):
        self.batches = batches
        self.pos = 0

    def __call__(self, batch_size):
        data, label = self.batches[self.pos % len(self.batches)]
        assert data.shape[0] == batch_size
        self.pos += 1
        return data, label

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


def _params_np(solver) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().astype(np.float64).copy() for p in solver.net.learnable_params]


def _grads_np(w, batch):
    """Analytic gradients and loss of the tiny net (no dropout) in float64."""
    W1, b1, W2, b2 = w
    x = batch[0].numpy().astype(np.float64)
    y = batch[1].numpy().astype(np.int64)
    n = x.shape[0]
    h = x @ W1.T + b1
    o = h @ W2.T + b2
    o = o - o.max(1, keepdims=True)
    prob = np.exp(o) / np.exp(o).sum(1, keepdims=True)
    loss = -np.log(prob[np.arange(n), y]).mean()
    d = prob.copy()
    d[np.arange(n), y] -= 1
    d /= n                               # normalization VALID: mean over the batch
    dh = d @ W2
    return [dh.T @ x, dh.sum(0), d.T @ h, d.sum(0)], float(loss)


def _caffe_reference(w0, batches, steps, p, nesterov=False, iter_size=1, clip=-1.0,
                     force_backward=False):
    """Caffe's ApplyUpdate in float64 numpy (sgd_solver.cpp as written): ClipGradients sums
    the diffs of every learnable param; lr_mult 0 ones have a diff only under
    force_backward (net.cpp), and their local rate is 0."""
    w = [a.copy() for a in w0]
    v = [np.zeros_like(a) for a in w0]
    current_step = 0
    feed = 0
    for it in range(steps):
        g = [np.zeros_like(a) for a in w]
        for _ in range(iter_size):
            gi, _ = _grads_np(w, batches[feed % len(batches)])
            feed += 1
            g = [a + b for a, b in zip(g, gi)]
        if not force_backward:
            g = [a if lr else np.zeros_like(a) for a, lr in zip(g, LR_MULT)]
        rate, current_step = learning_rate(p, it, current_step)
        if clip >= 0:
            norm = math.sqrt(sum(float((a ** 2).sum()) for a in g))
            if norm > clip:
                g = [a * (clip / norm) for a in g]
        for i in range(len(w)):
            gi = g[i] / iter_size
            decay = p.weight_decay * DECAY_MULT[i]
            if decay:
                gi = gi + decay * (np.sign(w[i]) if p.regularization_type == "L1" else w[i])
            v_old = v[i]
            v[i] = p.momentum * v[i] + rate * LR_MULT[i] * gi
            step = (1 + p.momentum) * v[i] - p.momentum * v_old if nesterov else v[i]
            w[i] = w[i] - step
    return w, v


def _close(a, b, rtol=1e-5, atol=1e-7):
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------
# lr policies
# ------------------------------------------------------------------------------------------

def _policy(**fields):
    p = pb.SolverParameter()
    p.base_lr = 0.1
    for k, v in fields.items():
        if k == "stepvalue":
            p.stepvalue.extend(v)
        else:
            setattr(p, k, v)
    return p


@pytest.mark.parametrize("policy,fields,formula", [
    ("fixed", {}, lambda it: 0.1),
    ("step", {"gamma": 0.1, "stepsize": 10}, lambda it: 0.1 * 0.1 ** (it // 10)),
    ("exp", {"gamma": 0.9}, lambda it: 0.1 * 0.9 ** it),
    ("inv", {"gamma": 1e-2, "power": 0.75}, lambda it: 0.1 * (1 + 1e-2 * it) ** -0.75),
    ("poly", {"power": 2.0, "max_iter": 30}, lambda it: 0.1 * (1 - it / 30) ** 2),
    ("sigmoid", {"gamma": -0.5, "stepsize": 10},   # gamma < 0: decaying, as Caffe allows
     lambda it: 0.1 / (1 + math.exp(0.5 * (it - 10)))),
])
def test_lr_policy_values_across_a_step_boundary(policy, fields, formula):
    p = _policy(lr_policy=policy, **fields)
    for it in (0, 1, 9, 10, 11, 19, 20, 25):
        rate, step = learning_rate(p, it, 0)
        assert rate == pytest.approx(formula(it), rel=2e-6), (policy, it)
        assert float(np.float32(rate)) == rate  # fp32, like Caffe's Dtype rate
        assert step == (it // 10 if policy == "step" else 0)


def test_lr_policy_parameter_checks():
    # Caffe CHECKs: step needs stepsize > 0; step/exp/inv/multistep need gamma >= 0.
    with pytest.raises(AllconvError, match="stepsize"):
        learning_rate(_policy(lr_policy="step", gamma=0.1), 0, 0)
    for policy in ("step", "exp", "inv", "multistep"):
        with pytest.raises(AllconvError, match="gamma"):
            learning_rate(_policy(lr_policy=policy, gamma=-0.5, stepsize=10), 0, 0)


def test_lr_policy_power_overflows_to_inf_as_in_cpp():
    """Found by tools/fuzz.py: pow(gamma, k) past the double range raised OverflowError."""
    rate, _ = learning_rate(_policy(lr_policy="exp", gamma=1e30), 11, 0)
    assert rate == math.inf


def test_multistep_advances_at_most_one_step_per_call():
    p = _policy(lr_policy="multistep", gamma=0.5, stepvalue=[3, 5, 6])
    step, rates = 0, []
    for it in range(9):
        rate, step = learning_rate(p, it, step)
        rates.append((rate, step))
    assert [s for _, s in rates] == [0, 0, 0, 1, 1, 2, 3, 3, 3]
    assert rates[4][0] == pytest.approx(0.05) and rates[6][0] == pytest.approx(0.0125)
    # Entering late (e.g. a stale current_step) catches up one step per call, like Caffe.
    r1, s1 = learning_rate(p, 100, 0)
    r2, s2 = learning_rate(p, 101, s1)
    assert (s1, s2) == (1, 2) and r1 == pytest.approx(0.05) and r2 == pytest.approx(0.025)


def test_unknown_lr_policy_lists_the_valid_ones():
    with pytest.raises(AllconvError) as e:
        learning_rate(_policy(lr_policy="cosine"), 0, 0)
    for name in POLICIES:
        assert name in str(e.value)
    assert set(POLICIES) == {"fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"}


# ------------------------------------------------------------------------------------------
# the update
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reg", ["L2", "L1"])
@pytest.mark.parametrize("cls", [SGDSolver, NesterovSolver])
def test_update_matches_caffe_reference(cls, reg):
    batches = _batches(3)
    p = _solver_param(_net_text(), lr_policy="step", gamma=0.5, stepsize=2,
                      regularization_type=reg, weight_decay=0.05,
                      type="Nesterov" if cls is NesterovSolver else "SGD")
    solver = cls(p, train_feed=Feed(batches))
    w0 = _params_np(solver)
    assert [prm.lr_mult for prm in solver.net.learnable_params] == LR_MULT
    assert [prm.decay_mult for prm in solver.net.learnable_params] == DECAY_MULT
    solver.step(3)
    assert solver.iter == 3
    w_ref, v_ref = _caffe_reference(w0, batches, 3, p, nesterov=cls is NesterovSolver)
    _close(_params_np(solver), w_ref)
    _close([h.numpy() for h in solver.history], v_ref)
    np.testing.assert_array_equal(_params_np(solver)[2], w0[2])  # lr_mult 0: frozen


def test_make_solver_picks_the_type_and_refuses_others():
    p = _solver_param(_net_text(source="input"), type="Nesterov")
    assert type(make_solver(p)) is NesterovSolver
    assert type(make_solver(_solver_param(_net_text(source="input")))) is SGDSolver
    for bad in ("Adamax", "LBFGS"):
        with pytest.raises(AllconvError, match="supported types: SGD, Nesterov, AdaGrad, "
                                               "RMSProp, AdaDelta, Adam"):
            make_solver(_solver_param(_net_text(source="input"), type=bad))


def test_hdf5_snapshots_without_h5py_are_refused_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)          # import h5py raises ImportError
    with pytest.raises(AllconvError, match=r"^snapshot_format: HDF5 needs h5py, which is not "):
        SGDSolver(_solver_param(_net_text(source="input"), snapshot_format=pb.SolverParameter.HDF5))


def test_one_solver_class_per_solver_type_with_pycaffes_name():
    """SGDSolver and one subclass per other `runtime.optim` type, importable under pycaffe's
    names; make_solver builds each; a second class for a type is refused."""
    import runtime
    from runtime import solver
    from runtime.optim import OPTIMIZERS

    assert list(solver._SOLVER_CLASSES) == list(OPTIMIZERS)
    for type_name, cls in solver._SOLVER_CLASSES.items():
        assert cls.__name__ == f"{type_name}Solver" and cls.type_name == type_name
        assert getattr(runtime, cls.__name__) is getattr(solver, cls.__name__) is cls
        assert issubclass(cls, SGDSolver) and cls.__name__ in solver.__all__
        built = make_solver(_solver_param(_net_text(source="input"), type=type_name,
                                          momentum=0.0 if type_name in ("AdaGrad", "RMSProp") else 0.9))
        assert type(built) is cls and type(built.optimizer) is OPTIMIZERS[type_name]
    with pytest.raises(AllconvError, match="^solver class for type 'Adam' is already "
                                           r"registered \(by runtime.solver.AdamSolver\)$"):
        solver._solver_class("Adam")


@pytest.mark.parametrize("type_name", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta",
                                       "Adam"])
def test_after_a_step_each_diff_holds_the_update_as_pycaffe_shows(type_name):
    """Caffe's ComputeUpdateValue leaves the update in each diff and Net::Update subtracts it
    (real Caffe, SGD: ip2's diff after step(2) equals its momentum history). Before: the
    last gradient. The frozen ip2 weight's diff is its update too (zero here)."""
    from runtime.solver import make_solver
    momentum = 0.0 if type_name in ("AdaGrad", "RMSProp") else 0.9
    s = make_solver(_solver_param(_net_text(), type=type_name, momentum=momentum),
                    train_feed=Feed(_batches(3, seed=4)))
    s.step(1)
    before = [w.detach().clone() for w in s.net.learnable_params]
    s.step(1)
    for w, old in zip(s.net.learnable_params, before):
        torch.testing.assert_close(w.grad, old - w.detach(), rtol=1e-5, atol=1e-7)
    if type_name == "SGD":
        assert all(torch.equal(w.grad, h) for w, h in zip(s.net.learnable_params, s.history))


def test_solve_ends_with_caffes_forward_whose_blobs_and_backward_pycaffe_reads():
    """Caffe's Solve ends, on a display iteration, with one more Forward (the final train
    loss it logs) on the next batch: real Caffe's net.blobs hold that pass after solve(), and
    a backward adds its gradients to the update left in the diffs. Before: a forward that
    stored no blobs (the last step's stayed) and a backward that was refused."""
    from runtime.solver import make_solver
    solvers = [make_solver(_solver_param(_net_text(), display=1, max_iter=3),
                           train_feed=Feed(_batches(5, seed=6))) for _ in range(2)]
    solved, stepped = solvers
    solved.solve()
    stepped.step(3)
    stepped.net.forward()
    assert solved.net.blobs["loss"].data.item() == stepped.net.blobs["loss"].data.item()
    for name in ("data", "ip1", "ip2", "label"):
        assert torch.equal(solved.net.blobs[name].data, stepped.net.blobs[name].data), name
    update = solved.net.params["ip1"][0].diff.clone()
    solved.net.backward()
    stepped.net.backward()
    assert not torch.allclose(solved.net.params["ip1"][0].diff, update)
    for name in ("ip1", "ip2"):
        for i in range(2):
            assert torch.equal(solved.net.params[name][i].diff,
                               stepped.net.params[name][i].diff), (name, i)


def test_callbacks_run_as_pycaffes_around_each_iterations_passes():
    """add_callback: on_start after the iteration's test and before its forward, then
    on_gradients_ready with the diffs computed and the weights not yet updated (Caffe's
    Solver::Step); get_solver is pycaffe's name of make_solver."""
    import runtime
    from runtime.solver import get_solver
    assert runtime.get_solver is get_solver is make_solver
    s = get_solver(_solver_param(_net_text(), test_interval=2, test_iter=[1], max_iter=3),
                   train_feed=Feed(_batches(3, seed=4)), test_feeds=[Feed(_batches(3, seed=5))])
    events, tests = [], s.test_all
    s.test_all = lambda: events.append(("test", s.iter)) or tests()
    w = s.net.learnable_params[0]
    s.add_callback(lambda: events.append(("start", s.iter, w.grad is None or not w.grad.any())),
                   lambda: events.append(("ready", s.iter, bool(w.grad.any()),
                                          torch.equal(w.detach(), before[-1]))))
    before = [w.detach().clone()]
    s.step(3)
    assert events[:4] == [("test", 0), ("start", 0, True), ("ready", 0, True, True),
                          ("start", 1, True)]
    assert [e[:2] for e in events] == [("test", 0), ("start", 0), ("ready", 0), ("start", 1),
                                       ("ready", 1), ("test", 2), ("start", 2), ("ready", 2)]


_NAN_BELOW_A_FROZEN_LAYER = """force_backward: true
layer { name: "d" type: "DummyData" top: "data" top: "label" dummy_data_param {
  shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 }
  data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip0" type: "InnerProduct" bottom: "data" top: "ip0" param { lr_mult: 0 }
  param { lr_mult: 0 } inner_product_param { num_output: 3 weight_filler { type: "gaussian" }
  bias_filler { type: "constant" value: -5 } } }
layer { name: "log" type: "Log" bottom: "ip0" top: "lg" }
layer { name: "ip1" type: "InnerProduct" bottom: "lg" top: "ip1"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip1" bottom: "label" top: "loss" }"""


@pytest.mark.parametrize("type_name", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta",
                                       "Adam"])
def test_a_frozen_layer_keeps_its_weights_through_nan_diffs(type_name):
    """The log of a negative score: every diff is NaN, the frozen ip0's too (force_backward).
    Real Caffe (its OpenBLAS scales by the local rate 0 to 0s) leaves ip0 as it was, its diff
    0, in all six rules, while ip1 turns NaN; before, 0 x NaN made ip0 NaN here. A NaN rate
    (poly past max_iter, power 0.5) is no 0: SGD's frozen layer turns NaN too, as in Caffe."""
    momentum = 0.0 if type_name in ("AdaGrad", "RMSProp") else 0.9
    s = make_solver(_solver_param(_NAN_BELOW_A_FROZEN_LAYER, type=type_name,
                                  momentum=momentum, weight_decay=0.0))
    before = s.net.params["ip0"][0].data.clone()
    s.step(3)
    assert torch.equal(s.net.params["ip0"][0].data, before)
    assert not s.net.params["ip0"][0].diff.any()
    assert s.net.params["ip1"][0].data.isnan().all()
    if type_name == "SGD":
        text = _NAN_BELOW_A_FROZEN_LAYER.replace("force_backward: true", "").replace(
            "value: -5", "value: 5")
        s = make_solver(_solver_param(text, lr_policy="poly", power=0.5, max_iter=2))
        s.step(4)
        assert s.net.params["ip0"][0].data.isnan().all()


def test_a_loop_of_ones_own_with_caffe_sgd_and_a_tensor_rate():
    """Net + CaffeSGD + CaffeLR, no Solver; a 0-dim tensor lr (as a CUDA graph keeps it)
    gives the same weights as the float one."""
    from runtime import TRAIN, CaffeLR, CaffeSGD, Net

    batches = _batches(3, seed=9)
    p = _solver_param(_net_text(source="input"), lr_policy="step", gamma=0.5, stepsize=2)
    results = []
    for as_tensor in (False, True):
        net = Net(p.net_param, TRAIN, seed=p.random_seed)
        w0 = [w.detach().numpy().astype(np.float64) for w in net.learnable_params]
        optimizer = CaffeSGD.from_solver(p, net)
        schedule = CaffeLR(optimizer, p)
        for data, label in batches:
            optimizer.zero_grad()
            net.loss(data=data, label=label).backward()
            if as_tensor and not torch.is_tensor(optimizer.param_groups[0]["lr"]):
                for group in optimizer.param_groups:   # CaffeLR then fills it in place
                    group["lr"] = torch.tensor(group["lr"], dtype=torch.float32)
            optimizer.step()
            schedule.step()
        results.append([w.detach().numpy().astype(np.float64) for w in net.learnable_params])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    _close(results[0], _caffe_reference(w0, batches, 3, p)[0])


@pytest.mark.parametrize("cls", [SGDSolver, NesterovSolver])
def test_force_backward_clip_norm_counts_the_lr_mult_0_weight(cls):
    """Under force_backward the lr_mult 0 weight of ip2 has a diff, and Caffe's ClipGradients
    counts it in the norm; leaving it out gave a 0.63 relative error in a bias after 10 steps
    of this case. Its own weight still does not move (local rate 0)."""
    batches = _batches(4, seed=21)
    p = _solver_param(_net_text(force_backward=True), lr_policy="poly", power=1.0, max_iter=20,
                      clip_gradients=0.5, base_lr=0.5,
                      type="Nesterov" if cls is NesterovSolver else "SGD")
    solver = cls(p, train_feed=Feed(batches))
    w0 = _params_np(solver)
    frozen_grad, _ = _grads_np(w0, batches[0])
    assert math.sqrt(sum((a ** 2).sum() for a in frozen_grad)) > 0.5   # the clip acts
    solver.step(10)
    nesterov = cls is NesterovSolver
    want = _caffe_reference(w0, batches, 10, p, nesterov=nesterov, clip=0.5,
                            force_backward=True)[0]
    without = _caffe_reference(w0, batches, 10, p, nesterov=nesterov, clip=0.5)[0]
    assert max(np.abs(a - b).max() / np.abs(a).max() for a, b in zip(want, without)) > 1e-2
    _close(_params_np(solver), want)
    np.testing.assert_array_equal(_params_np(solver)[2], w0[2])


def test_step_down_keeps_the_old_rate_in_the_velocity_unlike_torch_sgd():
    batches = _batches(1)
    p = _solver_param(_net_text(), lr_policy="step", gamma=0.1, stepsize=2, weight_decay=0.0)
    solver = SGDSolver(p, train_feed=Feed(batches))
    w0 = [prm.detach().clone() for prm in solver.net.learnable_params]

    # torch.optim.SGD's update (its functional form, which SGD.step runs; the class itself
    # costs seconds of torch._dynamo import) on the same function, lr from the same policy.
    from torch.optim.sgd import sgd as torch_sgd

    w = [t.clone().requires_grad_() for t in w0]
    buffers = [[None] for _ in w]
    x, y = batches[0]

    def torch_step(it):
        for t in w:
            t.grad = None
        o = (x @ w[0].T + w[1]) @ w[2].T + w[3]
        torch.nn.functional.cross_entropy(o, y.long()).backward()
        rate, _ = learning_rate(p, it, 0)
        with torch.no_grad():
            for t, buf, m in zip(w, buffers, LR_MULT):
                if m:  # b = 0.9 b + g; w -= lr * b
                    torch_sgd([t], [t.grad], buf, weight_decay=0.0, momentum=0.9, lr=rate * m,
                              dampening=0.0, nesterov=False, maximize=False, foreach=False)

    def rel(a, b):
        return max(float((ai - bi).abs().max() / bi.abs().max())
                   for ai, bi in zip((t.detach() for t in a), (t.detach() for t in b)))

    for it in range(2):       # constant rate: both formulations agree
        solver.step(1)
        torch_step(it)
    assert rel(w, solver.net.learnable_params) < 1e-5
    for it in range(2, 4):    # after the step-down Caffe's v still carries 0.1 * g
        solver.step(1)
        torch_step(it)
    assert rel(w, solver.net.learnable_params) > 1e-3
    w_ref, _ = _caffe_reference([t.double().numpy() for t in w0], batches, 4, p)
    _close(_params_np(solver), w_ref)


def test_iter_size_2_equals_a_batch_twice_as_large():
    halves = _batches(6, batch=4, seed=3)
    doubled = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
               for a, b in zip(halves[::2], halves[1::2])]
    s2 = SGDSolver(_solver_param(_net_text(4), iter_size=2), train_feed=Feed(halves))
    s1 = SGDSolver(_solver_param(_net_text(8)), train_feed=Feed(doubled))
    _close(_params_np(s1), _params_np(s2), rtol=0, atol=0)  # same seed, same fill
    s2.step(3)
    s1.step(3)
    _close(_params_np(s2), _params_np(s1), rtol=1e-5, atol=1e-7)


def test_clip_gradients_scales_the_summed_gradient_to_the_global_norm():
    batches = _batches(2, seed=5)
    clip = 0.05
    p = _solver_param(_net_text(), clip_gradients=clip, momentum=0.0, weight_decay=0.0,
                      base_lr=1.0)
    s = SGDSolver(p, train_feed=Feed(batches))
    w0 = _params_np(s)
    g, _ = _grads_np(w0, batches[0])
    g[2] = np.zeros_like(g[2])  # lr_mult 0 blobs carry no diff in Caffe
    assert math.sqrt(sum((a ** 2).sum() for a in g)) > clip
    s.step(1)
    delta = [(a - b) for a, b in zip(w0, _params_np(s))]
    scaled = [d / m if m else np.zeros_like(d) for d, m in zip(delta, LR_MULT)]
    assert math.sqrt(sum((a ** 2).sum() for a in scaled)) == pytest.approx(clip, rel=1e-5)
    _close(_params_np(s), _caffe_reference(w0, batches, 1, p, clip=clip)[0])

    # iter_size 2: Caffe clips the *sum* of the two passes, then divides by iter_size,
    # so the applied gradient has norm clip / 2.
    p2 = _solver_param(_net_text(), clip_gradients=clip, momentum=0.0, weight_decay=0.0,
                       base_lr=1.0, iter_size=2)
    s2 = SGDSolver(p2, train_feed=Feed(batches))
    s2.step(1)
    delta = [(a - b) / m if m else np.zeros_like(a)
             for a, b, m in zip(w0, _params_np(s2), LR_MULT)]
    assert math.sqrt(sum((a ** 2).sum() for a in delta)) == pytest.approx(clip / 2, rel=1e-5)
    _close(_params_np(s2), _caffe_reference(w0, batches, 1, p2, iter_size=2, clip=clip)[0])


# ------------------------------------------------------------------------------------------
# snapshots
# ------------------------------------------------------------------------------------------

def _dropout_solver(tmp_path, feed, **fields):
    p = _solver_param(_net_text(dropout=True), lr_policy="multistep", gamma=0.5,
                      stepvalue=[2, 4, 5], snapshot_prefix=str(tmp_path / "snap"), **fields)
    return SGDSolver(p, train_feed=feed)


def test_snapshot_restore_continue_is_bit_identical(tmp_path):
    batches = _batches(5, seed=11)
    n, m = 4, 3
    full = _dropout_solver(tmp_path, Feed(batches))
    full.step(n + m)
    want = [prm.detach().clone() for prm in full.net.learnable_params]
    want_hist = [h.clone() for h in full.history]

    first = _dropout_solver(tmp_path, Feed(batches))
    first.step(n)
    model_path, state_path = first.snapshot()
    assert model_path == str(tmp_path / f"snap_iter_{n}.caffemodel")
    assert state_path == str(tmp_path / f"snap_iter_{n}.solverstate")
    assert os.path.isfile(str(tmp_path / f"snap_iter_{n}.rngstate"))
    state = pb.SolverState()
    state.ParseFromString(open(state_path, "rb").read())
    assert state.iter == n and state.current_step == 1 and state.learned_net == model_path
    assert len(state.history) == len(first.net.learnable_params)

    torch.manual_seed(123)  # disturb global RNG; restore must not depend on it
    resumed = _dropout_solver(tmp_path, Feed(batches))
    resumed.restore(state_path)
    assert resumed.iter == n and resumed.current_step == 1
    resumed.step(m)
    assert resumed.iter == n + m
    for a, b in zip(resumed.net.learnable_params, want):
        assert torch.equal(a.detach(), b)
    for a, b in zip(resumed.history, want_hist):
        assert torch.equal(a, b)

    # Without the .rngstate the dropout masks differ: the file is what makes resume exact.
    os.remove(str(tmp_path / f"snap_iter_{n}.rngstate"))
    feed = Feed(batches)
    plain = _dropout_solver(tmp_path, feed)
    plain.restore(state_path)
    feed.pos = n  # same data as the exact resume; only the random streams differ
    plain.step(m)
    assert not all(torch.equal(a.detach(), b) for a, b in zip(plain.net.learnable_params, want))


@pytest.mark.parametrize("stop", ["SIGTERM", "a full disk"])
def test_a_snapshot_stopped_while_written_leaves_the_set_before(tmp_path, monkeypatch, stop):
    """A SIGTERM (allconv-caffe's handler raises) or a failed write between the .caffemodel
    and the .solverstate left the files of two snapshots under one name, which a resume took
    without a word; the three files now appear together, or the old set stays whole."""
    import signal
    from runtime import snapshot
    from runtime.cli_support import Signalled, _signalled
    solver = _dropout_solver(tmp_path, Feed(_batches(2, seed=3)))
    solver.step(1)
    solver.snapshot()
    names = [tmp_path / f"snap_iter_1{e}" for e in (".caffemodel", ".rngstate", ".solverstate")]
    before = [path.read_bytes() for path in names]
    with torch.no_grad():
        solver.net.learnable_params[0].add_(1.0)
    real_write = snapshot.atomic_write_bytes

    def write_then_stop(path, data):       # the .rngstate, between the other two files
        real_write(path, data)
        if stop == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise AllconvError(f"{path}: cannot write: No space left on device")
    monkeypatch.setattr(snapshot, "atomic_write_bytes", write_then_stop)
    previous = signal.signal(signal.SIGTERM, _signalled)
    try:
        with pytest.raises(Signalled if stop == "SIGTERM" else AllconvError):
            solver.snapshot()
        assert signal.getsignal(signal.SIGTERM) is _signalled
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [path.read_bytes() for path in names] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in names)


def test_signals_that_come_while_a_set_is_renamed_wait_for_its_last_file(tmp_path):
    """The renames of `written_together` run with Ctrl-C, SIGTERM and SIGHUP held: each
    reaches its handler, in order, after the last."""
    import signal
    from runtime import files
    seen = []
    previous = {s: signal.signal(s, lambda signum, frame: seen.append(signum))
                for s in (signal.SIGTERM, signal.SIGHUP)}
    real_replace = os.replace

    def replace_then_signal(source, target):
        real_replace(source, target)
        os.kill(os.getpid(), signal.SIGHUP if "a" in Path(target).name else signal.SIGTERM)
        seen.append(Path(target).name)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(files.os, "replace", replace_then_signal)
            with files.written_together():
                files.atomic_write_bytes(tmp_path / "a", b"1")
                files.atomic_write_bytes(tmp_path / "b", b"2")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert seen == ["a", "b", signal.SIGHUP, signal.SIGTERM]


@pytest.mark.parametrize("snapshot_format", ["BINARYPROTO", "HDF5"])
def test_a_scalar_parameters_history_restores(tmp_path, snapshot_format):
    """A PReLU with channel_shared has a 0-axis slope; its history was read as shape (1,) and
    every restore failed with a RuntimeError (real Caffe restores it; helper caffe26)."""
    if snapshot_format == "HDF5":
        pytest.importorskip("h5py")
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "in" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 '
        'dim: 3 } data_filler { type: "constant" value: -1 } } }\n'
        'layer { name: "pr" type: "PReLU" bottom: "x" top: "pr" '
        'prelu_param { channel_shared: true } }\n'
        'layer { name: "loss" type: "Reduction" bottom: "pr" top: "loss" loss_weight: 1 }\n')
    solver = (f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" '
              f'snapshot_prefix: "{tmp_path}/s" snapshot_format: {snapshot_format}')
    first = make_solver(parse_solver(solver))
    first.step(2)
    _, state_path = first.snapshot()
    resumed = make_solver(parse_solver(solver))
    resumed.restore(state_path)
    assert resumed.history[0].shape == () and torch.equal(resumed.history[0], first.history[0])
    assert first.history[0] != 0


def test_an_hdf5_snapshot_resumes_bit_identically_and_a_bad_one_is_named(tmp_path):
    """snapshot_format HDF5 writes Caffe's .caffemodel.h5 / .solverstate.h5 (real Caffe reads
    them both ways: the solver_hdf5_snapshot fixture)."""
    batches = _batches(5, seed=11)
    full = _dropout_solver(tmp_path, Feed(batches), snapshot_format=pb.SolverParameter.HDF5)
    full.step(5)
    first = _dropout_solver(tmp_path, Feed(batches), snapshot_format=pb.SolverParameter.HDF5)
    first.step(3)
    model_path, state_path = first.snapshot()
    assert (model_path, state_path) == (str(tmp_path / "snap_iter_3.caffemodel.h5"),
                                        str(tmp_path / "snap_iter_3.solverstate.h5"))
    resumed = _dropout_solver(tmp_path, Feed(batches))
    resumed.restore(state_path)
    resumed.step(2)
    for a, b in zip(resumed.net.learnable_params, full.net.learnable_params):
        assert torch.equal(a.detach(), b.detach())
    (tmp_path / "bad.solverstate.h5").write_bytes(b"not hdf5")
    with pytest.raises(AllconvError, match=r"bad.solverstate.h5: not an HDF5 file \(a binary "
                                           r"snapshot\?"):
        resumed.restore(tmp_path / "bad.solverstate.h5")
    import h5py

    def broken(*args, **kwargs):     # what h5py raises for some flipped bits in a file
        raise RuntimeError("Link iteration failed (addr overflow)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h5py, "File", broken)
        with pytest.raises(AllconvError, match=r"iter_3.solverstate.h5: cannot read it as a "
                                               r"Caffe HDF5 snapshot: Link iteration failed"):
            resumed.restore(state_path)
    with h5py.File(state_path) as f:      # Caffe's H5LTmake_dataset_string: a C string
        string_type = f["learned_net"].id.get_type()
        assert string_type.get_size() == len(model_path) + 1
        assert string_type.get_strpad() == h5py.h5t.STR_NULLTERM


def test_hdf5_snapshots_of_another_layout_are_named_in_one_line_and_scalar_ints_read(tmp_path):
    """A member of the wrong kind (a dataset where Caffe writes a group) was an AttributeError
    traceback; a scalar ``iter``, which Caffe's H5LTread_dataset_int reads, was refused."""
    import h5py
    from runtime import hdf5_snapshot
    solver = _dropout_solver(tmp_path, Feed(_batches(3, seed=5)),
                             snapshot_format=pb.SolverParameter.HDF5)
    solver.step(2)
    model, state = solver.snapshot()
    weights, states = "Caffe HDF5 weights hold a", "Caffe HDF5 solver states hold a"
    cases = [(model, "data", f"'data' is a dataset, not a group ({weights} group there)"),
             (model, "data/ip1", f"'data/ip1' is a dataset, not a group ({weights} group there)"),
             (model, "data/ip1/0", f"'data/ip1/0' is a group, not a dataset ({weights} dataset "
                                   "there)"),
             (state, "history", f"'history' is a dataset, not a group ({states} group there)"),
             (state, "iter", f"'iter' is a group, not a dataset ({states} dataset there)")]
    for k, (source, member, said) in enumerate(cases):
        weights = source.endswith(".caffemodel.h5")
        path = tmp_path / f"case{k}{'.caffemodel.h5' if weights else '.solverstate.h5'}"
        path.write_bytes(open(source, "rb").read())
        with h5py.File(path, "a") as f:
            del f[member]
            if member.endswith("/0") or member == "iter":
                f.create_group(member)
            else:
                f.create_dataset(member, data=np.zeros(2, np.float32))
        read = hdf5_snapshot.read_weights if weights else hdf5_snapshot.read_state
        with pytest.raises(AllconvError) as caught:
            read(path)
        assert str(caught.value) == f"{path}: {said}"
    with h5py.File(state, "a") as f:
        del f["iter"]
        f.create_dataset("iter", data=np.int32(2))       # a scalar, as Caffe reads it too
    assert hdf5_snapshot.read_state(state).iter == 2
    # an entry named like no layer of the net is ignored whatever it is, as Caffe does; one
    # named like a layer is read, and refused where it is no group
    before = [p.detach().clone() for p in solver.net.learnable_params]
    with h5py.File(model, "a") as f:
        f.create_dataset("data/stray", data=np.zeros(3, np.float32))
    solver.net.copy_from(model)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, solver.net.learnable_params))
    with h5py.File(model, "a") as f:
        del f["data/ip1"]
        f.create_dataset("data/ip1", data=np.zeros(3, np.float32))
    with pytest.raises(AllconvError, match="'data/ip1' is a dataset, not a group"):
        solver.net.copy_from(model)


@pytest.mark.parametrize("fmt", [pb.SolverParameter.BINARYPROTO, pb.SolverParameter.HDF5])
def test_snapshot_diff_writes_each_blobs_last_update_as_caffe(tmp_path, fmt):
    """snapshot_diff: Caffe's ToProto/ToHDF5 with write_diff put each blob's diff, the last
    update, beside its data (real Caffe, a 75-input InnerProduct after 2 SGD steps with
    momentum and decay: the runtime's diffs within 1.5e-8). Before: no diff was written."""
    from runtime.caffemodel import read_binary
    solver = _dropout_solver(tmp_path, Feed(_batches(3, seed=5)), snapshot_diff=True,
                             snapshot_format=fmt)
    solver.step(2)
    model, _ = solver.snapshot()
    updates = [w.grad.numpy() for w in solver.net.learnable_params]
    assert sum(np.abs(u).max() > 0 for u in updates) >= 3     # ip2 is frozen (lr_mult 0)
    if fmt == pb.SolverParameter.HDF5:
        import h5py
        with h5py.File(model) as f:
            written = [f["diff"][layer.name][str(i)][()] for layer in solver.net.layers
                       for i in range(len(layer.blobs))]
    else:
        param = read_binary(model, pb.NetParameter)
        written = [np.array(blob.diff).reshape(blob.shape.dim) for layer in param.layer
                   for blob in layer.blobs]
    assert len(written) == len(updates)
    for got, want in zip(written, updates):
        np.testing.assert_array_equal(got, want)


def test_debug_info_logs_the_params_norms_after_each_backward_of_a_display_step(caplog):
    """Caffe's Net::Backward with debug_info: one ERROR line of the learnable blobs' L1 and L2
    norms (data, diff) per backward, on display iterations only (real Caffe, an InnerProduct
    of constant 0.01 weights: "L1 norm = (2.25, 43.2854); L2 norm = (0.15, 3.54554)", which
    the runtime prints to the digit). Before: nothing was logged."""
    import logging
    solver = make_solver(_solver_param(_net_text(), debug_info=True, display=2, iter_size=2),
                         train_feed=Feed(_batches(4, seed=3)))
    seen, backward = [], solver.net._backward     # forward_backward's pass

    def norms_after_backward():
        backward()
        blobs = [(w.detach(), torch.zeros_like(w) if w.grad is None else w.grad)
                 for w in solver.net.learnable_params]
        seen.append([sum(float(t[i].abs().sum()) for t in blobs) for i in (0, 1)]
                    + [math.sqrt(sum(float((t[i] ** 2).sum()) for t in blobs)) for i in (0, 1)])
    solver.net._backward = norms_after_backward
    with caplog.at_level(logging.ERROR, logger="allconv.net"):
        solver.step(2)
    lines = [r.getMessage() for r in caplog.records if "All net params" in r.getMessage()]
    assert len(seen) == 4 and len(lines) == 2     # iteration 0's two backwards (iter_size 2)
    for line, (l1_data, l1_diff, l2_data, l2_diff) in zip(lines, seen):
        numbers = [float(x) for x in re.findall(r"[-\d.e+]+(?=[,)])", line)]
        assert numbers == pytest.approx([l1_data, l1_diff, l2_data, l2_diff], rel=1e-5)
    assert seen[1][1] != seen[0][1]                 # the second: two batches' summed diffs


def test_restore_finds_learned_net_beside_the_solverstate(tmp_path, monkeypatch, caplog):
    """... and says so, where Caffe, opening it as written, fails (it was silent)."""
    batches = _batches(2)
    monkeypatch.chdir(tmp_path)
    os.mkdir("run")
    s = SGDSolver(_solver_param(_net_text(), snapshot_prefix="run/x"), train_feed=Feed(batches))
    s.step(2)
    _, state_path = s.snapshot()
    assert state_path == "run/x_iter_2.solverstate"
    monkeypatch.chdir(tmp_path / "run")  # learned_net "run/x_iter_2.caffemodel" is now relative
    r = SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches))
    with caplog.at_level("WARNING", logger="allconv.snapshot"):
        r.restore("x_iter_2.solverstate")
    assert [m.getMessage() for m in caplog.records if m.levelname == "WARNING"] == [
        "learned_net run/x_iter_2.caffemodel not found as written (Caffe stops here); restoring "
        "the weights from x_iter_2.caffemodel, beside the solver state"]
    for a, b in zip(r.net.learnable_params, s.net.learnable_params):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("learned_net, message", [
    ("", "learned_net is set but empty"), ("/dev/null", "learned_net '/dev/null' is not a file"),
    # a byte that is not UTF-8 (protobuf gives the field's bytes): a TypeError, a traceback
    ("Xgone.caffemodel", "learned_net '\\udcffgone.caffemodel' not found")])
def test_a_learned_net_that_is_no_file_is_named_as_such(tmp_path, learned_net, message):
    """Caffe fails to open an empty learned_net ("File not found"); it was skipped here, the
    initial weights kept. /dev/null was "not found"."""
    s = SGDSolver(_solver_param(_net_text(), snapshot_prefix=str(tmp_path / "s")),
                  train_feed=Feed(_batches(2)))
    s.step(1)
    _, state_path = s.snapshot()
    state = pb.SolverState.FromString(open(state_path, "rb").read())
    state.learned_net = learned_net
    open(state_path, "wb").write(state.SerializeToString().replace(b"Xgone", b"\xffgone"))
    with pytest.raises(AllconvError, match=re.escape(f"{state_path}: {message}")):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(_batches(2))).restore(state_path)


def test_restoring_a_caffemodel_says_what_it_is(tmp_path):
    """A .caffemodel parses as an empty SolverState: "solverstate has 0 history blobs but the
    net has 4" before."""
    s = SGDSolver(_solver_param(_net_text(), snapshot_prefix=str(tmp_path / "s")),
                  train_feed=Feed(_batches(2)))
    s.step(1)
    model, _ = s.snapshot()
    with pytest.raises(AllconvError, match=re.escape(f"{model} is a .caffemodel (trained "
                                                     "weights: give it as -weights")):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(_batches(2))).restore(model)


def test_corrupt_or_mismatched_solverstate_names_the_path(tmp_path):
    batches = _batches(2)
    s = SGDSolver(_solver_param(_net_text(), snapshot_prefix=str(tmp_path / "s")),
                  train_feed=Feed(batches))
    s.step(1)
    _, state_path = s.snapshot()

    truncated = tmp_path / "truncated.solverstate"
    data = open(state_path, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(AllconvError, match="truncated.solverstate"):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches)).restore(truncated)

    garbage = tmp_path / "garbage.solverstate"
    garbage.write_bytes(b"\xff\xfe this is not a protobuf")
    with pytest.raises(AllconvError, match="garbage.solverstate"):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches)).restore(garbage)

    state = pb.SolverState()        # a negative iteration (C++ and Python round -1/2 apart)
    state.ParseFromString(data)
    state.iter = -1
    negative = tmp_path / "negative.solverstate"
    negative.write_bytes(state.SerializeToString())
    with pytest.raises(AllconvError, match=r"negative\.solverstate: iter -1 and current_step 0 "
                                           r"must not be negative"):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches)).restore(negative)

    # Wrong number of history blobs.
    state = pb.SolverState()
    state.ParseFromString(data)
    del state.history[-1]
    short = tmp_path / "short.solverstate"
    short.write_bytes(state.SerializeToString())
    with pytest.raises(AllconvError, match=r"short\.solverstate.*3 history blobs.*4"):
        SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches)).restore(short)

    # Right count, wrong shape (a net with a wider ip1).
    state = pb.SolverState()
    state.ParseFromString(data)
    state.history[0].shape.dim[0] = 5
    state.history[0].data.extend([0.0] * 3 * 2)
    wrong = tmp_path / "wrong.solverstate"
    wrong.write_bytes(state.SerializeToString())
    fresh = SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches))
    w_before = _params_np(fresh)
    with pytest.raises(AllconvError, match=r"wrong\.solverstate.*history blob 0.*\(5, 3\)"):
        fresh.restore(wrong)
    assert fresh.iter == 0  # nothing half-restored
    _close(_params_np(fresh), w_before, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------
# the loop: testing and snapshot schedule
# ------------------------------------------------------------------------------------------

def _counting_solver(tmp_path, **fields):
    batches = _batches(3, seed=2)
    p = _solver_param(_net_text(), test_iter=[2], test_interval=3,
                      snapshot_prefix=str(tmp_path / "t"), **fields)
    s = SGDSolver(p, train_feed=Feed(batches), test_feeds=[Feed(batches[:2])])
    calls = []
    original = s.test

    def counting(i=0):
        calls.append(s.iter)
        return original(i)

    s.test = counting
    return s, calls


@pytest.mark.parametrize("max_iter,init,expected", [
    (7, True, [0, 3, 6]),         # 7 % 3 != 0: no final test
    (6, True, [0, 3, 6]),         # loop tests at 0, 3; the final test at 6
    (6, False, [3, 6]),
    (3, False, [3]),
])
def test_test_interval_and_test_initialization_timing(tmp_path, max_iter, init, expected):
    s, calls = _counting_solver(tmp_path, max_iter=max_iter, test_initialization=init)
    s.solve()
    assert calls == expected and s.iter == max_iter


def test_test_all_averages_outputs_over_test_iter(tmp_path):
    s, _ = _counting_solver(tmp_path, max_iter=0)
    batches = _batches(3, seed=2)[:2]
    scores = s.test_all()
    w = _params_np(s)
    want = np.mean([_grads_np(w, b)[1] for b in batches])
    assert list(scores[0]) == ["loss"]
    assert scores[0]["loss"] == pytest.approx(want, rel=1e-5)


def test_test_loss_counts_a_weighted_top_that_is_not_an_output(caplog):
    """Caffe's Test adds the loss Net::Forward returns: every weighted top's, not only the
    outputs'. Before: "Test loss: 0" where a Silence read the loss (real Caffe: 2.14199)."""
    text = _net_text() + 'layer { name: "quiet" type: "Silence" bottom: "loss" }\n'
    batches = _batches(3, seed=2)[:2]
    s = SGDSolver(_solver_param(text, test_iter=[2], test_interval=3, test_compute_loss=True),
                  train_feed=Feed(batches), test_feeds=[Feed(batches)])
    caplog.set_level("INFO", logger="allconv.solver")
    assert s.test() == {}                        # no outputs left to average
    w = _params_np(s)
    want = np.mean([_grads_np(w, b)[1] for b in batches])
    line = next(l for l in caplog.text.splitlines() if "Test loss: " in l)
    assert float(line.split("Test loss: ")[1]) == pytest.approx(want, rel=1e-5)
    caplog.clear()
    s.param.test_compute_loss = False                # Caffe's default: no such line
    s.test()
    assert "Test loss" not in caplog.text


def test_test_nets_use_the_train_nets_blobs_also_after_restore(tmp_path):
    s, _ = _counting_solver(tmp_path, max_iter=0)
    s.step(2)
    want = s.test()
    _, state_path = s.snapshot()
    r, _ = _counting_solver(tmp_path, max_iter=0)
    r.restore(state_path)                  # copy_from writes in place: still the same blobs
    assert r.test() == want
    assert all(a is b for a, b in zip(r.test_nets[0].learnable_params, r.net.learnable_params))


@pytest.mark.parametrize("max_iter,after_train,files", [
    (6, True, [4, 6]),    # snapshot at 4, snapshot_after_train at 6
    (8, True, [4, 8]),    # 8 was just snapshotted: no second one
    (6, False, [4]),
])
def test_snapshot_schedule(tmp_path, max_iter, after_train, files):
    batches = _batches(2)
    p = _solver_param(_net_text(), max_iter=max_iter, snapshot=4,
                      snapshot_after_train=after_train, snapshot_prefix=str(tmp_path / "z"))
    s = SGDSolver(p, train_feed=Feed(batches))
    calls = []
    original = s.snapshot
    s.snapshot = lambda: calls.append(s.iter) or original()
    s.solve()
    assert calls == files
    found = sorted(int(f[len("z_iter_"):-len(".solverstate")])
                   for f in os.listdir(tmp_path) if f.endswith(".solverstate"))
    assert found == files
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_an_empty_snapshot_prefix_writes_iter_files_here_as_caffe(tmp_path, monkeypatch):
    """Caffe checks that snapshot_prefix is given, not that it is non-empty: an empty one
    writes _iter_N.* into the current folder. Before: refused, as if none was given."""
    monkeypatch.chdir(tmp_path)
    p = _solver_param(_net_text(), max_iter=2, snapshot=2, snapshot_prefix="")
    SGDSolver(p, train_feed=Feed(_batches(2))).solve()
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("_iter_2.")) == [
        "_iter_2.caffemodel", "_iter_2.rngstate", "_iter_2.solverstate"]


def test_solve_resumes_from_a_solverstate(tmp_path):
    batches = _batches(3, seed=4)
    p = _solver_param(_net_text(), max_iter=5, snapshot=2, snapshot_prefix=str(tmp_path / "r"))
    a = SGDSolver(p, train_feed=Feed(batches))
    a.solve()
    b = SGDSolver(p, train_feed=Feed(batches))
    b.solve(resume_file=str(tmp_path / "r_iter_2.solverstate"))
    assert b.iter == 5
    for x, y in zip(a.net.learnable_params, b.net.learnable_params):
        assert torch.equal(x.detach(), y.detach())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(net="junk"), "has no attribute 'items'"),
    (lambda d: d.update(test_nets=-1), "not iterable"),
    (lambda d: d.update(torch_cpu=d["torch_cpu"].double()), "ByteTensor"),
    (lambda d: torch.zeros(3), "holds a Tensor, not an rng state"),
    (None, "an empty rng state file (its write was cut short?)"),
])
def test_an_edited_or_empty_rngstate_is_one_line_naming_it(tmp_path, edit, message):
    p = _solver_param(_net_text(), max_iter=2, snapshot=2, snapshot_prefix=str(tmp_path / "r"))
    SGDSolver(p, train_feed=Feed(_batches(2))).solve()
    rng = tmp_path / "r_iter_2.rngstate"
    if edit is None:
        rng.write_bytes(b"")
    else:
        state = torch.load(rng, weights_only=True)
        edited = edit(state)
        torch.save(state if edited is None else edited, rng)
    with pytest.raises(AllconvError, match=re.escape(str(rng)) + ": .*" + re.escape(message)):
        SGDSolver(p, train_feed=Feed(_batches(2))).restore(str(tmp_path / "r_iter_2.solverstate"))


def test_a_replicate_checkpoint_restores_without_its_loop_state(tmp_path, caplog):
    """A replicate run's checkpoint is Caffe's .caffemodel and .solverstate beside the loop's
    own .rngstate: Solver.restore takes the first two and says why it leaves the third."""
    from runtime import snapshot
    p = _solver_param(_net_text(), max_iter=2, snapshot=2, snapshot_prefix=str(tmp_path / "r"))
    SGDSolver(p, train_feed=Feed(_batches(2))).solve()
    torch.save({"format": snapshot.LOOP_STATE, "iter": 2, "feed": {}, "dropout": {}},
               tmp_path / "r_iter_2.rngstate")
    s = SGDSolver(p, train_feed=Feed(_batches(2)))
    with caplog.at_level(logging.INFO, logger="allconv.solver"):
        s.restore(str(tmp_path / "r_iter_2.solverstate"))
    assert s.iter == 2
    assert "holds a replicate run's loop state, not a solver's" in caplog.text


def test_solver_file_paths_defaults_and_log_lines(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.prototxt").write_text(_net_text())
    (tmp_path / "solver.prototxt").write_text(
        'net: "nets/tiny.prototxt"\n'          # relative to the current directory, like Caffe
        'type: "Nesterov"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'
        'max_iter: 2\ndisplay: 1\ntest_iter: 1\ntest_interval: 2\n'
        'test_initialization: false\nsolver_mode: CPU\nrandom_seed: 3\n')
    batches = _batches(2)
    caplog.set_level("INFO", logger="allconv.solver")
    s = make_solver("solver.prototxt", train_feed=Feed(batches), test_feeds=Feed(batches))
    assert isinstance(s, NesterovSolver) and s.device.type == "cpu"
    assert s.param.snapshot_prefix == "solver"  # Caffe: the solver file name sans extension
    assert len(s.test_nets) == 1 and s.test_nets[0].phase == pb.TEST and s.net.phase == pb.TRAIN
    s.solve()
    assert os.path.isfile("solver_iter_2.caffemodel") and os.path.isfile("solver_iter_2.solverstate")
    text = caplog.text
    assert "Iteration 0, lr = 0.1" in text and "Iteration 1, lr = 0.1" in text
    assert "Iteration 0 (" in text and "), loss = " in text
    assert "Iteration 2, Testing net (#0)" in text
    assert "Test net output #0: loss = " in text and "(* 1 = " in text
    assert "Optimization Done." in text


# solver.py:179 `seed if seed >= 0 else None` -> `>= 1` survived: Caffe seeds whenever
# random_seed >= 0 (solver.cpp), so random_seed: 0 is a fixed seed: two runs start alike.
def test_multistep_and_clipping_log_caffes_lines_in_caffes_order(caplog):
    """Real Caffe's log (sgd_solver.cpp): "MultiStep Status" when GetLearningRate passes a
    step, before the iteration's lr line; "Gradient clipping" after it, with the norm."""
    s = SGDSolver(_solver_param(_net_text(), lr_policy="multistep", stepvalue=[1], gamma=0.5,
                                clip_gradients=0.01, display=1, max_iter=2),
                  train_feed=Feed(_batches(2)))
    caplog.set_level("INFO", logger="allconv.solver")
    s.step(2)
    lines = [r.getMessage() for r in caplog.records
             if re.match("(MultiStep|Gradient|Iteration [01], lr)", r.getMessage())]
    assert [line.split(" (L2")[0] for line in lines] == [
        "Iteration 0, lr = 0.1", "Gradient clipping: scaling down gradients",
        "MultiStep Status: Iteration 1, step = 1", "Iteration 1, lr = 0.05",
        "Gradient clipping: scaling down gradients"]
    norm, factor = re.match(r".*L2 norm (\S+) > 0.01\) by scale factor (\S+)$", lines[1]).groups()
    assert float(factor) == pytest.approx(0.01 / float(norm), rel=1e-5)


def test_a_loss_share_is_multiplied_in_float_as_caffe_prints_it():
    from runtime.solver import loss_share
    assert loss_share(0.1, 1.3232449293136597) == " (* 0.1 = 0.132325 loss)"   # double: 0.132324
    assert loss_share(0.0, 5.0) == ""


def test_a_norm_equal_to_the_clip_is_not_clipped_nor_logged(caplog):
    """ClipGradients scales only when the norm exceeds clip_gradients (here both are 5)."""
    text = """
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 1 dim: 2 } } }
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "x" top: "loss" }"""
    s = SGDSolver(_solver_param(text, clip_gradients=5.0, weight_decay=0.0, momentum=0.0,
                                base_lr=1.0))
    caplog.set_level("INFO", logger="allconv.solver")
    s.net.forward_backward(x=torch.tensor([[-3.0, -4.0]]))      # diff p − x = (3, 4): norm 5
    s.update()
    assert "Gradient clipping" not in caplog.text
    torch.testing.assert_close(s.net.params["p"][0].data, torch.tensor([[-3.0, -4.0]]))


def test_random_seed_0_is_a_seed():
    from runtime.solver import SGDSolver
    a, b = (SGDSolver(_solver_param(_net_text(source="input"), random_seed=0)) for _ in "ab")
    assert a.seed == 0
    assert all(torch.equal(p, q) for p, q in zip(a.net.learnable_params,
                                                  b.net.learnable_params))


# solver.py:277 `p.test_interval <= 0` -> `< 0` survived: Caffe's InitTestNets does
# CHECK_GT(test_interval, 0) when there are test nets; with the mutant, a solver that forgot
# test_interval (default 0) is accepted and its test nets never run.
def test_test_nets_without_a_test_interval_are_refused():
    from runtime.errors import AllconvError
    from runtime.solver import SGDSolver
    p = _solver_param(_net_text(source="input"), test_iter=[2])
    with pytest.raises(AllconvError, match="test_interval must be > 0"):
        SGDSolver(p)


# solver.py:333 `(smoothed * (size - 1) + loss) / size` -> `size + 1` survived: nothing
# tests average_loss > 1. Caffe's UpdateSmoothedLoss averages the last average_loss losses
# (the displayed "Iteration N ..., loss = X" that logs and curves are read from).
def test_smoothed_loss_is_the_mean_of_the_last_average_loss_losses():
    from runtime.solver import SGDSolver
    batches = _batches(4, seed=5)
    one = SGDSolver(_solver_param(_net_text()), train_feed=Feed(batches))
    losses = []
    for _ in range(4):
        one.step(1)
        losses.append(one.smoothed_loss)
    three = SGDSolver(_solver_param(_net_text(), average_loss=3), train_feed=Feed(batches))
    three.step(2)
    assert three.smoothed_loss == pytest.approx(sum(losses[:2]) / 2, rel=1e-6)
    three = SGDSolver(_solver_param(_net_text(), average_loss=3), train_feed=Feed(batches))
    three.step(4)
    assert three.smoothed_loss == pytest.approx(sum(losses[1:]) / 3, rel=1e-6)


# solver.py:376 dropping `self._log_outputs(..., "Train")` survived: only the "Test net
# output" lines are checked. Caffe prints "Train net output #i: name = v (* w = l loss)" at
# each display iteration; Caffe's log parsers (tools/extra/parse_log.py) read the train loss
# from it. (Could be one more assert in test_solver_file_paths_defaults_and_log_lines.)
def test_display_logs_the_train_net_outputs(caplog):
    from runtime.solver import SGDSolver
    caplog.set_level("INFO", logger="allconv.solver")
    s = SGDSolver(_solver_param(_net_text(), display=1), train_feed=Feed(_batches(1)))
    s.step(1)
    assert "    Train net output #0: loss = " in caplog.text and "(* 1 = " in caplog.text


# solver.py:551 `state.get("format") != "allconv-rngstate-1"` -> `==` survived: no test
# reads a format-1 .rngstate (layers named by module path), so resuming from a snapshot written
# by an earlier version would fail ("unknown rng state format") unnoticed.
def test_a_format_1_rngstate_is_upgraded_to_layer_names():
    from runtime.errors import AllconvError
    from runtime.solver import SGDSolver, _upgrade_rng_state
    s = SGDSolver(_solver_param(_net_text(source="input", dropout=True)))
    old = {"format": "allconv-rngstate-1", "iter": 0, "test_nets": [],
           "net": [{"where": ("layers.2", "generator", "cpu"), "state": "S"}]}
    new = _upgrade_rng_state(old, s, "x.rngstate")
    assert new["format"] == "allconv-rngstate-2"
    assert new["net"] == {s.net.layer_names[2]: {"cpu": "S"}}
    with pytest.raises(AllconvError, match="unknown rng state format 'allconv-rngstate-9'"):
        _upgrade_rng_state({**old, "format": "allconv-rngstate-9"}, s, "x.rngstate")


def test_test_nets_from_files_are_read_from_the_current_folder(tmp_path, monkeypatch):
    """``test_net: FILE`` adds a test net read as Caffe reads it; one missing is named with
    its field; a generic net fills the test_iter left after the specific ones."""
    monkeypatch.chdir(tmp_path)
    net = _net_text(source="input")
    (tmp_path / "train.prototxt").write_text(net)
    (tmp_path / "test.prototxt").write_text(net)
    common = 'test_interval: 1 base_lr: 0.1 max_iter: 1 lr_policy: "fixed" '
    solver = make_solver(parse_solver('train_net: "train.prototxt" test_net: "test.prototxt" '
                                      'test_iter: 1 ' + common))
    assert len(solver.test_nets) == 1
    with pytest.raises(AllconvError, match=r"^the solver's test_net: missing.prototxt: no such "
                                           r"file \(relative to the current folder "):
        make_solver(parse_solver('train_net: "train.prototxt" test_net: "missing.prototxt" '
                                 'test_iter: 1 ' + common))
    solver = make_solver(parse_solver('net: "train.prototxt" test_net: "test.prototxt" '
                                      'test_iter: 1 test_iter: 1 test_iter: 1 ' + common))
    assert len(solver.test_nets) == 3


@pytest.mark.parametrize("request_", ["stop", "snapshot"])
def test_a_snapshot_during_a_test_resumes_every_later_test_exactly(tmp_path, monkeypatch,
                                                                    request_):
    """Before: a snapshot written during a test (SIGHUP, or the final one of a stop) kept the
    test feed's position part way through, and the resumed run, which tests at that
    iteration again, read other batches in that test and every later one."""
    from tools.tiny_caffe import write_tiny_net

    write_tiny_net(tmp_path)
    (tmp_path / "s.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 max_iter: 6 '
        'test_iter: 3 test_interval: 2 test_initialization: false display: 0 '
        'snapshot_prefix: "straight" random_seed: 3')
    monkeypatch.chdir(tmp_path)

    def tests(solver):
        seen, real = [], solver.test

        def test(i=0):
            scores = real(i)
            if scores:
                seen.append((solver.iter, scores["accuracy"], scores["loss"]))
            return scores
        solver.test = test
        return seen

    straight = make_solver("s.prototxt")
    straight_tests = tests(straight)
    straight.solve()
    assert straight._before_test is None        # later snapshots keep the streams' own states
    broken = make_solver("s.prototxt")
    broken.param.snapshot_prefix = "broken"
    calls = []

    def action():          # after the test at iteration 2 has read one batch
        testing = broken._before_test is not None and broken.iter == 2
        calls.append(testing)
        return request_ if testing and calls.count(True) == 2 else None
    broken.action_function = action
    broken.solve()
    resumed = make_solver("s.prototxt")
    resumed.param.snapshot_prefix = "resumed"
    resumed_tests = tests(resumed)
    resumed.solve("broken_iter_2.solverstate")
    assert [t[0] for t in straight_tests] == [2, 4, 6]
    assert resumed_tests == straight_tests


@pytest.mark.filterwarnings("ignore::runtime.layers.NoFillerWarning")   # the net's own choice
@pytest.mark.parametrize("name", ["inc/ip", ".", ""])
def test_an_hdf5_snapshot_refuses_layer_names_caffe_cannot_save(tmp_path, name):
    """Caffe's ToHDF5 fails on these ("Error saving weights"); a name with '/' made nested
    groups here, which the restore did not find (the layer kept its fillers, with a warning).
    The solver refuses them before it trains; Net.save_hdf5 before it writes."""
    pytest.importorskip("h5py")
    from runtime import TEST, Net
    from runtime.solver import make_solver
    net = ('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
           f'layer {{ name: "{name}" type: "InnerProduct" bottom: "x" top: "y" '
           'inner_product_param { num_output: 2 } }')
    (tmp_path / "out").mkdir()
    (tmp_path / "s.prototxt").write_text(
        f'net_param {{ {net} }} base_lr: 0.1 max_iter: 1 snapshot_format: HDF5 '
        f'snapshot_prefix: "{tmp_path}/out/s"')
    with pytest.raises(AllconvError, match=f"layer '{name}': no HDF5 snapshot holds it"):
        make_solver(str(tmp_path / "s.prototxt"))
    with pytest.raises(AllconvError, match="no HDF5 snapshot holds it as a layer's group"):
        Net(net, TEST).save_hdf5(tmp_path / "out" / "w.caffemodel.h5")
    assert not list((tmp_path / "out").iterdir())
    (tmp_path / "never.prototxt").write_text(          # a solver that never snapshots trains
        f'net_param {{ {net} }} base_lr: 0.1 lr_policy: "fixed" max_iter: 2 snapshot: 10 '
        f'snapshot_after_train: false snapshot_format: HDF5 snapshot_prefix: "{tmp_path}/out/s"')
    make_solver(str(tmp_path / "never.prototxt")).solve()


def test_a_snapshot_prefix_is_probed_with_a_file_as_caffe_does(tmp_path):
    """Caffe's CheckSnapshotWritePermissions opens <prefix>_iter_0.tempfile: a prefix whose
    names are too long for the file system is refused before training (mutation fuzzer; it
    passed the folder check and failed at the first snapshot). The probe is removed."""
    from runtime.solver import make_solver
    net = ('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
           'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
           'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }')
    for prefix, ok in ((tmp_path / ("x" * 300), False), (tmp_path / "s", True)):
        text = (f'net_param {{ {net} }} base_lr: 0.1 lr_policy: "fixed" max_iter: 1 snapshot: 1 '
                f'snapshot_prefix: "{prefix}"')
        if ok:
            make_solver(text)
        else:
            with pytest.raises(AllconvError, match="^Cannot write to snapshot prefix"):
                make_solver(text)
    assert not list(tmp_path.iterdir())


def test_iteration_of_hdf5_snapshot_names():
    from runtime import snapshot
    assert snapshot.iteration("a/b_iter_5.caffemodel.h5") == 5
    assert snapshot.iteration("b_iter_12.solverstate.h5") == 12
    assert snapshot.iteration("b_iter_12.solverstate") == 12
    assert snapshot.iteration("b_iter_x.solverstate") is None


def _two_snapshots(tmp_path):
    """Two solvers' snapshots of one net: A after 1 step, B after 2 (other weights)."""
    out = []
    for name, steps in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        s = SGDSolver(_solver_param(_net_text(), snapshot_prefix=str(tmp_path / name / "s")),
                      train_feed=Feed(_batches(3)))
        s.step(steps)
        model, state = s.snapshot()
        out.append((s, model, state))
    return out


def test_restore_takes_the_given_weights_over_learned_net(tmp_path):
    from runtime import snapshot
    (a, model_a, state_a), (b, model_b, _) = _two_snapshots(tmp_path)
    snapshot.restore(state_a, a.net, a.optimizer, a.schedule, weights=model_b)
    for mine, theirs in zip(a.net.learnable_params, b.net.learnable_params):
        assert torch.equal(mine.detach(), theirs.detach())


def test_restore_with_require_all_refuses_weights_missing_a_layer(tmp_path):
    from runtime import snapshot
    from runtime.caffemodel import read_layers, write_weights
    (a, model_a, state_a), _ = _two_snapshots(tmp_path)
    layers = [(name, "InnerProduct", list(blobs)) for name, blobs in read_layers(model_a)
              if name == "ip1"]
    write_weights(tmp_path / "ip1_only.caffemodel", layers)
    with pytest.raises(AllconvError, match="ip2"):
        snapshot.restore(state_a, a.net, a.optimizer, a.schedule,
                         weights=str(tmp_path / "ip1_only.caffemodel"), require_all=True)


def test_learned_net_is_opened_as_written_before_the_state_folder(tmp_path):
    import shutil
    from runtime import snapshot
    (a, model_a, state_a), (b, model_b, state_b) = _two_snapshots(tmp_path)
    # B's state names B's weights (as written, absolute); A's folder holds a file of that name
    shutil.copy(state_b, tmp_path / "a" / "moved.solverstate")
    shutil.copy(model_a, tmp_path / "a" / __import__("os").path.basename(model_b))
    snapshot.restore(str(tmp_path / "a" / "moved.solverstate"), a.net, a.optimizer, a.schedule)
    for mine, theirs in zip(a.net.learnable_params, b.net.learnable_params):
        assert torch.equal(mine.detach(), theirs.detach())


def test_restoring_state_reports_an_index_error_in_one_line():
    from runtime import snapshot
    with pytest.raises(AllconvError, match=r"^x\.rngstate: not a state this run can restore"):
        with snapshot.restoring_state("x.rngstate"):
            [][0]


def test_set_torch_rng_state_gives_cuda_the_states_of_the_devices_it_has(monkeypatch):
    from runtime import snapshot
    given = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", given.append)
    snapshot.set_torch_rng_state({"torch_cpu": None, "torch_cuda": ["gpu0", "gpu1"]})
    assert given == [["gpu0"]]


def test_write_weights_refuses_diffs_of_another_count(tmp_path):
    from runtime.caffemodel import write_weights
    with pytest.raises(ValueError):
        write_weights(tmp_path / "w.caffemodel",
                      [("ip", "InnerProduct", [np.ones(2, np.float32)] * 2)],
                      diffs=[[np.ones(2, np.float32)]])


@pytest.mark.parametrize("field", ["average_loss", "iter_size"])
def test_average_loss_and_iter_size_below_1_are_refused(field):
    # solver-01: Caffe's Solver::Init CHECK_GE(average_loss, 1). solver-02: Caffe has no
    # check on iter_size, and 0 makes its loss and update 0/0 (NaN); the runtime refuses it
    with pytest.raises(AllconvError, match=field):
        SGDSolver(_solver_param(_net_text(), **{field: 0}), train_feed=Feed(_batches(1)))


def test_more_test_iter_than_specific_test_nets_is_refused():
    # solver-05: Caffe's CHECK_EQ(test_iter_size, num_test_nets) without a generic net
    p = _solver_param(_net_text(), test_iter=[1, 1], test_interval=10)
    p.train_net_param.CopyFrom(p.net_param)
    p.test_net_param.add().CopyFrom(p.net_param)
    p.ClearField("net_param")
    with pytest.raises(AllconvError, match="test_iter"):
        SGDSolver(p, train_feed=Feed(_batches(1)), test_feeds=Feed(_batches(1)))
    del p.test_iter[1:]
    SGDSolver(p, train_feed=Feed(_batches(1)), test_feeds=Feed(_batches(1)))


def test_iter_size_averages_the_passes_losses():
    # solver-15: Caffe's Step: loss /= iter_size (the same batch twice: the loss of one)
    losses = []
    for iter_size in (1, 2):
        solver = SGDSolver(_solver_param(_net_text(), iter_size=iter_size),
                           train_feed=Feed(_batches(1)))
        solver.step(1)
        losses.append(solver.smoothed_loss)
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_each_step_call_starts_a_fresh_smoothed_loss():
    # solver-19: Caffe's Step clears losses_ and smoothed_loss_ at each call
    def solver():
        return SGDSolver(_solver_param(_net_text(), average_loss=10),
                         train_feed=Feed(_batches(3)))
    ref = solver()
    ref.step(2)
    third = ref.net.forward_backward()      # the loss of iteration 2, before its update
    s = solver()
    s.step(2)
    s.step(1)
    assert s.smoothed_loss == pytest.approx(third, rel=1e-6)


def test_solve_ends_by_averaging_in_the_loss_at_the_final_weights():
    # solver-24: Caffe's Solve: a forward after the last update joins the smoothed loss
    solver = SGDSolver(_solver_param(_net_text(), max_iter=2, display=1, average_loss=1),
                       train_feed=Feed(_batches(1)))
    solver.solve()
    with torch.no_grad():
        final = float(solver.net.loss())
    assert solver.smoothed_loss == pytest.approx(final, rel=1e-6)


def test_the_rate_is_logged_at_display_iterations_only(caplog):
    # solver-29: Caffe's ApplyUpdate logs "Iteration N, lr = R" where iter % display == 0
    solver = SGDSolver(_solver_param(_net_text(), display=2), train_feed=Feed(_batches(1)))
    with caplog.at_level(logging.INFO, logger="allconv.solver"):
        solver.step(4)
    lines = [r.getMessage() for r in caplog.records if ", lr = " in r.getMessage()]
    assert [line.split(",")[0] for line in lines] == ["Iteration 0", "Iteration 2"]


def test_test_scores_of_a_constant_output_are_its_value():
    # solver-31: the sums must not alias an output the net hands back each forward
    # (DummyData's constant top)
    text = _net_text() + ('layer { name: "one" type: "DummyData" top: "one" dummy_data_param '
                          '{ shape { dim: 1 } data_filler { type: "constant" value: 1 } } '
                          'include { phase: TEST } }')
    solver = SGDSolver(_solver_param(text, test_iter=[3], test_interval=10),
                       train_feed=Feed(_batches(1)), test_feeds=Feed(_batches(1)))
    assert solver.test(0)["one"] == 1.0
    assert solver.test(0)["one"] == 1.0


def test_snapshot_without_a_prefix_is_refused(tmp_path, monkeypatch):
    # solver-32. Caffe's CheckSnapshotWritePermissions: "In solver params, snapshot is
    # specified but snapshot_prefix is not"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AllconvError, match="snapshot_prefix is not"):
        SGDSolver(_solver_param(_net_text(), snapshot=10), train_feed=Feed(_batches(1)))
    assert not list(tmp_path.iterdir())


def test_weights_names_are_trimmed_of_blanks(tmp_path):
    # solver-33. Caffe's LoadNetWeights: split at commas, boost::trim each name
    first = SGDSolver(_solver_param(_net_text()), train_feed=Feed(_batches(1)))
    first.net.save(str(tmp_path / "w.caffemodel"))
    p = _solver_param(_net_text(), weights=[f" {tmp_path / 'w.caffemodel'} "])
    solver = SGDSolver(p, train_feed=Feed(_batches(1)))
    assert torch.equal(solver.net.params["ip1"][0].data, first.net.params["ip1"][0].data)


def _staged(**solver_fields):
    """test_solver's net with a ReLU at level 2, one for stage "a" and one for stage "own"
    (the net's own state); the solver's train net layers."""
    text = _net_text() + "".join(
        f'layer {{ name: "{n}" type: "ReLU" bottom: "ip2" top: "{n}" include {{ {r} }} }}\n'
        for n, r in (("lvl2", "min_level: 2"), ("a", 'stage: "a"'), ("own", 'stage: "own"')))
    p = _solver_param("state { stage: \"own\" }\n" + text)
    p.train_state.level = 2
    p.train_state.stage.append("a")
    solver = SGDSolver(p, train_feed=Feed(_batches(1)), **solver_fields)
    return [n for n in ("lvl2", "a", "own") if n in solver.net.layer_dict]


def test_the_train_net_state_merges_the_nets_the_train_state_and_level():
    # solver-34/35/36: Caffe's InitTrainNet merges the net's state and train_state; caffe
    # train's -level (default 0) always replaces train_state's level
    assert _staged() == ["lvl2", "a", "own"]
    assert _staged(level=0) == ["a", "own"]


def test_two_train_nets_are_refused():
    # solver-08: Caffe's CHECK_LE(num_train_nets, 1) ("must not contain more than one")
    p = _solver_param(_net_text())
    p.train_net_param.CopyFrom(p.net_param)
    with pytest.raises(AllconvError, match="exactly one train net"):
        SGDSolver(p, train_feed=Feed(_batches(1)))


def test_a_test_state_per_test_net_or_none():
    # solver-07: Caffe's CHECK_EQ(test_state_size, num_test_net_instances)
    p = _solver_param(_net_text(), test_iter=[1], test_interval=10)
    p.test_state.add(stage=["a"])
    p.test_state.add(stage=["b"])
    with pytest.raises(AllconvError, match="test_state"):
        SGDSolver(p, train_feed=Feed(_batches(1)), test_feeds=Feed(_batches(1)))
