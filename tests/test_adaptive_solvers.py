"""AdaGrad, RMSProp, AdaDelta and Adam: .solverstate round trips that resume bit for bit,
Caffe's parameter checks, the deprecated solver_type enum, a tensor rate. Their numbers are
pinned against real Caffe (every step, and Caffe's own .solverstate) in test_caffe_fixtures.py
and against the rules written out in numpy here."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runtime import CaffeLR
from runtime.errors import AllconvError
from runtime.optim import (OPTIMIZERS, CaffeAdaDelta, CaffeAdaGrad, CaffeAdam, CaffeRMSProp,
                           optimizer_from_solver)
from runtime.proto import pb
from runtime.solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, RMSPropSolver,
                            make_solver)
from test_solver import Feed, _batches, _net_text, _solver_param

RULES = {  # type: (solver fields, Solver class, history blobs per param)
    "AdaGrad": ({"base_lr": 0.1, "momentum": 0.0, "delta": 1e-3}, AdaGradSolver, 1),
    "RMSProp": ({"base_lr": 0.02, "momentum": 0.0, "rms_decay": 0.9, "delta": 1e-4},
                RMSPropSolver, 1),
    "AdaDelta": ({"base_lr": 1.0, "momentum": 0.95, "delta": 1e-4}, AdaDeltaSolver, 2),
    "Adam": ({"base_lr": 0.05, "momentum": 0.9, "momentum2": 0.999, "delta": 1e-3},
             AdamSolver, 2),
}


def _param(kind: str, tmp_path=None, net: str = "data", **extra) -> "pb.SolverParameter":
    """The rule's solver on test_solver's tiny net (every lr_mult/decay_mult combination);
    ``net`` "data": a Data layer and dropout, "input": Input buffers and no dropout."""
    fields = {**RULES[kind][0], "type": kind, "lr_policy": "multistep", "gamma": 0.5,
              "stepvalue": [2, 4], "weight_decay": 0.01, **extra}
    if tmp_path is not None:
        fields["snapshot_prefix"] = str(tmp_path / "snap")
    return _solver_param(_net_text(dropout=net == "data", source=net), **fields)


@pytest.mark.parametrize("kind", RULES)
def test_snapshot_restore_continues_bit_identically(kind, tmp_path):
    """Ours written, ours read: a Solver snapshotted after 3 updates and restored into a
    fresh one continues to the weights and history of an uninterrupted run (Adam's bias
    correction takes t from the restored iter)."""
    batches = _batches(5, seed=3)
    full = make_solver(_param(kind, tmp_path), train_feed=Feed(batches))
    assert type(full) is RULES[kind][1]
    full.step(5)
    first = make_solver(_param(kind, tmp_path), train_feed=Feed(batches))
    first.step(3)
    _, state_path = first.snapshot()
    state = pb.SolverState()
    state.ParseFromString(open(state_path, "rb").read())
    n = len(first.net.learnable_params)
    assert len(state.history) == RULES[kind][2] * n and state.iter == 3
    torch.manual_seed(99)
    resumed = make_solver(_param(kind, tmp_path), train_feed=Feed(batches))
    resumed.restore(state_path)
    resumed.step(2)
    assert resumed.iter == full.iter == 5
    for a, b in zip(resumed.net.learnable_params + resumed.history,
                    full.net.learnable_params + full.history):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("kind", RULES)
def test_state_dict_round_trip_and_tensor_rate(kind):
    """A torch state_dict (with the update count) resumes exactly; a 0-dim tensor lr gives the
    float lr's weights."""
    from runtime import TRAIN, Net

    p = _param(kind, net="input")
    batches = _batches(4, seed=8)

    def run(steps, as_tensor=False, resume=None):
        net = Net(p.net_param, TRAIN, seed=5)
        opt = optimizer_from_solver(p, net)
        sched = CaffeLR(opt, p)
        if resume is not None:
            with torch.no_grad():
                for w, v in zip(net.learnable_params, resume[2]):
                    w.copy_(v)
            opt.load_state_dict(resume[0])
            sched.load_state_dict(resume[1])
        for data, label in batches[sched.last_epoch:steps]:
            opt.zero_grad()
            net.loss(data=data, label=label).backward()
            if as_tensor and not torch.is_tensor(opt.param_groups[0]["lr"]):
                for group in opt.param_groups:
                    group["lr"] = torch.tensor(group["lr"], dtype=torch.float32)
            opt.step()
            sched.step()
        return opt, sched, [w.detach().clone() for w in net.learnable_params]

    whole = run(4)[2]
    opt, sched, weights = run(2)
    assert all(g["iter"] == 2 for g in opt.param_groups)
    resumed = run(4, resume=(opt.state_dict(), sched.state_dict(), weights))[2]
    tensor_rate = run(4, as_tensor=True)[2]
    for a, b, c in zip(whole, resumed, tensor_rate):
        assert torch.equal(a, b) and torch.equal(a, c)


def _reference(kind: str, w, grads, rates, **h):
    """The rule in float32 numpy, one parameter, step by step as the .cpp files write it."""
    f = np.float32
    w, hist1, hist2 = w.astype(f), np.zeros_like(w, f), np.zeros_like(w, f)
    for t, (g, rate) in enumerate(zip(grads, rates), start=1):
        g = g.astype(f)
        if kind == "AdaGrad":
            hist1 = hist1 + g * g
            w = w - f(rate) * (g / (np.sqrt(hist1) + f(h["delta"])))
        elif kind == "RMSProp":
            d = f(h["rms_decay"])
            hist1 = d * hist1 + (f(1) - d) * (g * g)
            w = w - f(rate) * (g / (np.sqrt(hist1) + f(h["delta"])))
        elif kind == "AdaDelta":
            m, d = f(h["momentum"]), f(h["delta"])
            hist1 = m * hist1 + (f(1) - m) * (g * g)
            u = g * np.sqrt((hist2 + d) / (hist1 + d))
            hist2 = m * hist2 + (f(1) - m) * (u * u)
            w = w - f(rate) * u
        else:
            b1, b2 = f(h["momentum"]), f(h["momentum2"])
            hist1 = b1 * hist1 + (f(1) - b1) * g
            hist2 = b2 * hist2 + (f(1) - b2) * (g * g)
            corr = f(math.sqrt(1 - float(b2) ** t) / (1 - float(b1) ** t))
            w = w - f(f(rate) * corr) * (hist1 / (np.sqrt(hist2) + f(h["delta"])))
    return w


@pytest.mark.parametrize("kind", RULES)
def test_each_rule_is_its_formula(kind):
    """Gradients given directly (no net): the optimizer's weights after 4 steps are the
    rule's formula with a rate that changes between steps (multistep)."""
    fields = {k: v for k, v in RULES[kind][0].items() if k not in ("base_lr", "momentum")
              or (k == "momentum" and kind in ("AdaDelta", "Adam"))}
    g = np.random.default_rng(4)
    w0 = g.standard_normal((3, 5)).astype(np.float32)
    grads = [g.standard_normal((3, 5)).astype(np.float32) for _ in range(4)]
    rates = [0.1, 0.1, 0.05, 0.05]
    w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = OPTIMIZERS[kind]([w], lr=rates[0], **fields)
    for grad, rate in zip(grads, rates):
        opt.param_groups[0]["lr"] = rate
        w.grad = torch.from_numpy(grad.copy())
        opt.step()
    want = _reference(kind, w0, grads, rates, **fields)
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=0, atol=2e-6)


def test_adam_adds_delta_to_the_uncorrected_root():
    """After one step from m = v = 0: w moves by lr·√(1−β₂)/(1−β₁)·(1−β₁)g/(√(1−β₂)|g| + δ),
    not by Kingma and Ba's lr·ĝ/(√v̂ + δ) = lr·g/(|g| + δ)."""
    w = torch.nn.Parameter(torch.zeros(1))
    opt = CaffeAdam([w], lr=1.0, momentum=0.9, momentum2=0.999, delta=0.01)
    w.grad = torch.ones(1)
    opt.step()
    caffe = math.sqrt(0.001) / 0.1 * 0.1 / (math.sqrt(0.001) + 0.01)
    assert float(-w.detach()) == pytest.approx(caffe, rel=1e-5)
    assert abs(caffe - 1 / 1.01) > 0.2


def test_adam_correction_is_ieee_where_caffe_checks_nothing():
    """Found by tools/fuzz.py: momentum2 > 1 or momentum 1 raised ValueError or
    ZeroDivisionError; Caffe computes NaN and inf (sqrt of a negative, a division by 0)."""
    assert math.isnan(CaffeAdam.correction(0.9, 3.0, 1))
    assert CaffeAdam.correction(1.0, 0.999, 1) == math.inf
    assert math.isnan(CaffeAdam.correction(1.0, 1.0, 1))
    assert math.isnan(CaffeAdam.correction(0.9, 1e30, 20))         # 1 - inf, then its root
    with pytest.raises(AllconvError, match="^momentum2 is 3: Adam's bias correction"):
        CaffeAdam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9, momentum2=3.0)


@pytest.mark.parametrize("kind, fields, message", [
    ("AdaGrad", {"momentum": 0.9}, r"^Momentum cannot be used with AdaGrad \(momentum is 0.9"),
    ("RMSProp", {"momentum": 0.5}, r"^Momentum cannot be used with RMSProp \(momentum is 0.5"),
    ("RMSProp", {"rms_decay": 1.0}, r"^rms_decay should lie between 0 and 1 \(got 1\)$"),
    ("RMSProp", {"rms_decay": -0.1}, r"^rms_decay should lie between 0 and 1 \(got -0.1\)$"),
    ("Adam", {"momentum2": 1.5}, r"^momentum2 is 1.5: .* would be nan at iteration 1"),
    ("Adam", {"momentum2": -1.5}, r"^momentum2 is -1.5: .* would be nan at iteration 2"),
    ("Adam", {"momentum": 1.0}, r"^momentum is 1: .* would be inf at iteration 1"),
    ("Adam", {"momentum": -1.0}, r"^momentum is -1: .* would be inf at iteration 2"),
    ("AdaDelta", {"momentum": 2.0}, r"^momentum is 2: AdaDelta's squared-gradient history"),
    ("AdaGrad", {"base_lr": math.inf}, r"^lr \(a solver's base_lr\) is inf: every update"),
    ("RMSProp", {"weight_decay": math.nan}, r"^weight_decay is nan: every update"),
    ("Adam", {"delta": math.nan}, r"^delta is nan: every update would be NaN"),
    ("AdaDelta", {"delta": math.nan}, r"^delta is nan: every update would be NaN"),
    ("AdaDelta", {"base_lr": math.inf}, r"^lr \(a solver's base_lr\) is inf: every update"),
])
def test_caffe_checks_are_one_line_errors(kind, fields, message):
    p = _param(kind, **{k: v for k, v in fields.items()})
    with pytest.raises(AllconvError, match=message) as err:
        make_solver(p, train_feed=Feed(_batches(1)))
    assert "\n" not in str(err.value)
    with pytest.raises(AllconvError, match=message):
        optimizer_from_solver(p, [torch.nn.Parameter(torch.zeros(2))])


@pytest.mark.parametrize("kind, fields", [
    ("Adam", {"momentum": -0.5}), ("Adam", {"momentum": 1.5}), ("Adam", {"momentum2": -0.5}),
    ("Adam", {"base_lr": -0.05}), ("AdaDelta", {"momentum": -2.0}), ("AdaDelta", {"momentum": 1}),
])
def test_unusual_but_finite_values_are_accepted_as_in_caffe(kind, fields):
    """Caffe's first update with these is finite: accepted, as in Caffe (a negative
    momentum2 or AdaDelta momentum lets some later gradients drive the history negative)."""
    solver = make_solver(_param(kind, **fields), train_feed=Feed(_batches(1)))
    solver.step(1)
    assert all(torch.isfinite(p).all() for p in solver.net.learnable_params)


@pytest.mark.parametrize("fields, field", [
    ('type: "Adam" momentum: 0.9 momentum2: 1.5', "momentum2 is 1.5"),
    ('type: "Adam" momentum: 1.0', "momentum is 1"),
    ('type: "AdaDelta" momentum: 2', "momentum is 2"),
    ("base_lr: nan", "base_lr) is nan"),
    ('type: "AdaGrad" momentum: 0.9', "Momentum cannot be used with AdaGrad"),
])
def test_allconv_caffe_refuses_what_caffe_would_update_to_nan(fields, field, tmp_path,
                                                              monkeypatch, capsys, caplog):
    """Before: exit 0 and NaN snapshots ("Optimization Done."). Now one line naming the field,
    before any net is built, and snapshot_prefix is never logged for a refused solver."""
    from runtime.cli import main
    from runtime.cli_support import run_cli
    from tools.tiny_caffe import write_tiny_net

    write_tiny_net(tmp_path)
    rate = "" if "base_lr" in fields else "base_lr: 0.1"
    (tmp_path / "s.prototxt").write_text(f'net: "net.prototxt" {rate} {fields} '
                                         'lr_policy: "fixed" max_iter: 2 display: 0')
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO"):
        assert run_cli(main, "allconv-caffe", ["train", "-solver", "s.prototxt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("allconv-caffe train: error: ") and err.count("\n") == 1, err
    assert field in err
    assert not any("snapshot_prefix" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.glob("s_iter_*"))


def test_snapshot_prefix_upgrade_is_logged_once(tmp_path, monkeypatch, caplog):
    """It was logged twice (make_solver, then the Solver) for every solver type."""
    from runtime.cli import main
    from tools.tiny_caffe import write_tiny_net

    write_tiny_net(tmp_path)
    (tmp_path / "s.prototxt").write_text('net: "net.prototxt" type: "AdaGrad" base_lr: 0.1 '
                                         'lr_policy: "fixed" max_iter: 1 display: 0')
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO"):
        assert main(["train", "-solver", "s.prototxt"]) == 0
    logged = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("snapshot_prefix")]
    assert logged == ["snapshot_prefix was not specified and is set to s"]
    assert (tmp_path / "s_iter_1.caffemodel").exists()


def test_rms_decay_is_checked_by_the_optimizer_too():
    with pytest.raises(AllconvError, match="rms_decay should lie between 0 and 1"):
        CaffeRMSProp([torch.nn.Parameter(torch.zeros(2))], lr=0.1, rms_decay=1.5)


@pytest.mark.parametrize("enum, kind", [(2, "AdaGrad"), (3, "RMSProp"), (4, "AdaDelta"),
                                        (5, "Adam")])
def test_deprecated_solver_type_enum_picks_the_rule(enum, kind):
    p = _param(kind)
    p.ClearField("type")
    p.solver_type = enum
    solver = make_solver(p, train_feed=Feed(_batches(1)))
    assert type(solver) is RULES[kind][1]
    assert type(solver.optimizer) is OPTIMIZERS[kind]


def test_history_layout_is_caffes():
    """Adam and AdaDelta: all N first blobs, then all N second ones (history[N + i])."""
    params = [torch.nn.Parameter(torch.zeros(s)) for s in ((2, 3), (2,), (4,))]
    for cls, keys in ((CaffeAdam, ("exp_avg", "exp_avg_sq")),
                      (CaffeAdaDelta, ("grad_sq", "update_sq"))):
        opt = cls(params, lr=0.1, momentum=0.9)
        want = [opt.state[p][k] for k in keys for p in params]
        assert all(a is b for a, b in zip(opt.history(), want))
        assert len(opt.solver_state(0, 0, "").history) == 6
    assert len(CaffeAdaGrad(params, lr=0.1).history()) == 3


@pytest.mark.parametrize("kind", ["Adam", "AdaDelta"])
def test_allconv_caffe_trains_and_resumes_the_rule(kind, tmp_path, monkeypatch, capsys):
    """`allconv-caffe train -solver` with the rule's `type:`, and `-snapshot` resuming it."""
    from runtime.cli import main
    from runtime.cli_support import run_cli
    from same_weights import assert_same_weights
    from tools.tiny_caffe import write_tiny_net

    write_tiny_net(tmp_path)
    fields = " ".join(f"{k}: {v}" for k, v in RULES[kind][0].items())
    (tmp_path / "s.prototxt").write_text(
        f'net: "net.prototxt" type: "{kind}" {fields} lr_policy: "fixed" max_iter: 6 '
        'snapshot: 3 snapshot_prefix: "snap" solver_mode: CPU random_seed: 1 display: 0')
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-solver", "s.prototxt"]) == 0
    (tmp_path / "snap_iter_6.caffemodel").rename(tmp_path / "straight.caffemodel")
    assert main(["train", "-solver", "s.prototxt", "-snapshot", "snap_iter_3.solverstate"]) == 0
    assert_same_weights("straight.caffemodel", "snap_iter_6.caffemodel")
    (tmp_path / "bad.prototxt").write_text('net: "net.prototxt" type: "AdaGrad" momentum: 0.9')
    capsys.readouterr()
    assert run_cli(main, "allconv-caffe", ["train", "-solver", "bad.prototxt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Momentum cannot be used with AdaGrad" in err and len(err.splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rule", ["adam", "adagrad", "rmsprop", "adadelta"])
def test_each_rule_on_cuda_matches_caffe(rule, no_tf32):
    """The Caffe fixtures of each rule (every step, 1e-5) with the solver on CUDA."""
    from test_caffe_fixtures import METAS, check_solver_case

    names = [n for n in METAS if n.startswith(f"solver_{rule}_")]
    assert names, f"no {rule} fixtures"
    for name in names:
        check_solver_case(name, device="cuda", label="CUDA ")


@pytest.mark.parametrize("solver_type", ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta",
                                         "Adam"])
def test_a_net_without_learnable_blobs_trains_and_resumes_as_in_caffe(tmp_path, monkeypatch,
                                                                       solver_type):
    """Caffe's solvers step a net that has no learnable blobs (nothing to update)."""
    from runtime.solver import make_solver
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "x" type: "DummyData" top: "x" top: "t" dummy_data_param { '
        'shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } data_filler { type: "gaussian" } } }\n'
        'layer { name: "e" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l" }\n')
    momentum = "" if solver_type in ("AdaGrad", "RMSProp") else "momentum: 0.9"
    solver = make_solver(f'net: "net.prototxt" type: "{solver_type}" base_lr: 0.1 '
                         f'lr_policy: "fixed" max_iter: 2 snapshot_prefix: "s" {momentum}')
    solver.solve()
    assert solver.iter == 2 and (tmp_path / "s_iter_2.solverstate").exists()
    resumed = make_solver(f'net: "net.prototxt" type: "{solver_type}" base_lr: 0.1 '
                          f'lr_policy: "fixed" max_iter: 3 snapshot_prefix: "s" {momentum}')
    resumed.restore("s_iter_2.solverstate")
    assert resumed.iter == 2
    resumed.solve()
    assert resumed.iter == 3 and (tmp_path / "s_iter_3.caffemodel").exists()


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp", "AdaDelta"])
def test_the_solvers_rule_values_reach_the_optimizer(kind):
    # optim-07: RMSProp's delta from the solver file (the formula tests give it directly)
    solver = make_solver(_param(kind), train_feed=Feed(_batches(1)))
    group = solver.optimizer.param_groups[0]
    given = {k: v for k, v in RULES[kind][0].items() if k in group}
    assert "delta" in given
    assert all(group[k] == pytest.approx(v) for k, v in given.items())
