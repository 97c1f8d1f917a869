"""Edges of the solver, its update rules, lr policies and snapshot files that the mutation
round mutants46 found unpinned. Expected numbers come from real BVLC pycaffe
(tools/caffe_reference/edge_values.py prints them) or from Caffe's source (sgd_solver.cpp,
solver.cpp, caffe.proto), as each test says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.solver import get_solver

# DummyData x = 1 (2x3), y = 0 (2x2); InnerProduct(2) of weights 0.5, bias 0.25; Euclidean loss
# (tools/caffe_reference/edge_values.py steps it in real pycaffe)
NET = (Path(__file__).parent / "fixtures" / "edge_nets" / "solver_step.prototxt").read_text()


def _solver(tmp_path, extra: str, net: str = NET):
    """A solver file of NET; ``extra``'s "field: value" lines replace the defaults here."""
    fields = {"base_lr": "0.1", "lr_policy": '"fixed"', "max_iter": "10", "display": "0",
              "snapshot_after_train": "false"}
    for line in extra.strip().splitlines():
        key, value = line.split(":", 1)
        fields[key.strip()] = value.strip()
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/net.prototxt"\n' + "".join(f"{k}: {v}\n" for k, v in fields.items()))
    return get_solver(str(tmp_path / "solver.prototxt"))


def _ip(solver):
    return [b.data.detach().cpu().numpy().copy() for b in solver.net.params["ip"]]


def test_clip_gradients_0_scales_every_diff_to_0(tmp_path):
    """sgd_solver.cpp ClipGradients returns only for clip_gradients < 0; 0 is a threshold that
    every nonzero norm exceeds, so the diffs become 0 and only weight decay moves the weights.
    Real pycaffe, one step: clip 0 -> weights 0.5 / bias 0.25 unchanged; clip 0 and
    weight_decay 0.5 -> 0.475 / 0.2375; no clip -> 0.325 / 0.075."""
    s = _solver(tmp_path, "clip_gradients: 0\nmomentum: 0\n")
    s.step(1)
    w, b = _ip(s)
    np.testing.assert_array_equal(w, np.full((2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(b, np.full(2, 0.25, np.float32))
    s = _solver(tmp_path, "clip_gradients: 0\nmomentum: 0\nweight_decay: 0.5\n")
    s.step(1)
    w, b = _ip(s)
    np.testing.assert_allclose(w, np.full((2, 3), 0.475, np.float32), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(2, 0.2375, np.float32), rtol=1e-6)


def test_regularization_type_is_not_read_without_weight_decay(tmp_path):
    """Caffe's Regularize reads regularization_type only where the local decay is nonzero, so
    an unknown type with weight_decay 0 trains (real pycaffe: 0.325 / 0.075 after a step)."""
    s = _solver(tmp_path, 'regularization_type: "L3"\nweight_decay: 0\n')
    s.step(1)
    w, b = _ip(s)
    np.testing.assert_allclose(w, np.full((2, 3), 0.325, np.float32), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(2, 0.075, np.float32), rtol=1e-6)


@pytest.mark.parametrize("beta1, beta2, expected", [
    # adam_solver.cpp's
    #   const Dtype correction = std::sqrt(Dtype(1) - pow(beta2, t)) / (Dtype(1.) - pow(beta1, t));
    # with Dtype = float, compiled by g++ -std=c++11 (pow(float, int) is a double power),
    # printed %.9g for t = 2, 3, 10
    (0.9, 0.999, (0.235315159, 0.202009261, 0.153188065)),
    (0.99, 0.9999, (0.710701942, 0.583182216, 0.330673486)),
])
def test_adam_bias_correction_is_caffes_double_power(beta1, beta2, expected):
    """A float32 power (powf) differs from Caffe's at t = 2 already (0.2353143 vs 0.2353152)."""
    from runtime.optim import CaffeAdam
    got = [CaffeAdam.correction(beta1, beta2, t) for t in (2, 3, 10)]
    assert got == [float(np.float32(e)) for e in expected]


@pytest.mark.parametrize("policy, extra, iters, expected", [
    # sgd_solver.cpp's  rate = base_lr() * pow(gamma(), k)  with float
    # fields and an int k (a double power, rounded to the float rate), printed %.9g
    ("exp", {}, (2, 5, 6), (9.99999975e-05, 1.00000008e-07, 1.00000008e-08)),
    ("step", {"stepsize": 1}, (2, 5, 6), (9.99999975e-05, 1.00000008e-07, 1.00000008e-08)),
])
def test_integer_power_policies_raise_gamma_in_double(policy, extra, iters, expected):
    """base_lr 0.01, gamma 0.1: a float32 gamma**k differs from Caffe's at k = 2, 5, 6."""
    from runtime.lr_policy import learning_rate
    from runtime.proto import pb
    p = pb.SolverParameter(base_lr=0.01, gamma=0.1, lr_policy=policy, **extra)
    assert [learning_rate(p, k)[0] for k in iters] == [float(np.float32(e)) for e in expected]
    p = pb.SolverParameter(base_lr=0.1, gamma=0.96, lr_policy=policy, **extra)
    assert [learning_rate(p, k)[0] for k in (2, 13, 15)] == [
        float(np.float32(e)) for e in (0.0921599939, 0.058820121, 0.0542086214)]


def test_average_loss_window_index_counts_from_the_steps_start_iteration(tmp_path):
    """solver.cpp UpdateSmoothedLoss: once the window is full, the loss replaced is
    losses_[(iter_ - start_iter) % average_loss], the oldest of this Step call's window: after
    step(1) then step(3) with average_loss 2 the smoothed loss is the mean of the losses of
    iterations 2 and 3 (indexing by iter_ alone would replace iteration 2's and average 1 and 3)."""
    s = _solver(tmp_path, "momentum: 0\n")
    losses = []
    for _ in range(4):
        s.step(1)
        losses.append(float(s.net.blobs["loss"].data))
    assert len(set(losses)) == 4          # the loss moves at every update
    s = _solver(tmp_path, "momentum: 0\naverage_loss: 2\n")
    s.step(1)
    s.step(3)                             # iterations 1, 2, 3; start_iter 1
    assert s.smoothed_loss == pytest.approx((losses[2] + losses[3]) / 2, rel=1e-6)


def _messages(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_final_display_forward_only_when_display_divides_max_iter(tmp_path, caplog):
    """solver.cpp Solve: after the loop, 'Iteration N, loss = ' (a Forward) only when
    display && iter_ % display == 0."""
    caplog.set_level("INFO")
    for display, expected in ((3, 0), (2, 1)):
        caplog.clear()
        s = _solver(tmp_path, f"display: {display}\nmax_iter: 4\n")
        s.solve()
        assert len(_messages(caplog, "Iteration 4, loss = ")) == expected


def test_the_solver_class_decides_the_rule_not_the_files_type(tmp_path):
    """pycaffe's caffe.AdamSolver(file) builds C++'s AdamSolver whatever the file's type says.
    Real pycaffe, a type "SGD" file (momentum 0.9) stepped once by AdamSolver: weights
    0.40000004, bias 0.15000002 (SGD would give 0.325 / 0.075)."""
    from runtime.solver import AdamSolver
    _solver(tmp_path, 'type: "SGD"\nmomentum: 0.9\n')
    s = AdamSolver(str(tmp_path / "solver.prototxt"))
    s.step(1)
    w, b = _ip(s)
    np.testing.assert_allclose(w, np.full((2, 3), 0.40000004, np.float32), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(2, 0.15000002, np.float32), rtol=1e-6)


def test_a_snapshot_whose_rngstate_write_fails_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """Every snapshot file is written atomically (temp file, then rename): when the rename of
    the .rngstate fails, the file of an earlier snapshot of that name is still whole."""
    import os
    s = _solver(tmp_path, f'snapshot_prefix: "{tmp_path}/x"\n')
    old = tmp_path / "x_iter_0.rngstate"
    old.write_bytes(b"an earlier run's state")
    replace = os.replace

    def failing(src, dst, *args, **kwargs):
        if str(dst).endswith(".rngstate"):
            raise OSError(28, "No space left on device")
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    from runtime.errors import AllconvError
    with pytest.raises(AllconvError, match="No space left"):
        s.snapshot()
    assert old.read_bytes() == b"an earlier run's state"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_relative_learned_net_is_found_relative_to_the_solverstates_folder(tmp_path, monkeypatch):
    """allconv's documented lookup (snapshot._find_learned_net; Caffe opens it only as written):
    as written, else joined to the .solverstate's folder, else its file name there. Here only
    the second exists: s/m/w_iter_1.caffemodel for learned_net "m/w_iter_1.caffemodel" in
    s/state.solverstate."""
    from runtime.caffemodel import read_binary, write_binary
    from runtime.proto import pb
    (tmp_path / "s" / "m").mkdir(parents=True)
    (tmp_path / "cwd").mkdir()
    s = _solver(tmp_path, f'snapshot_prefix: "{tmp_path}/s/m/w"\n')
    s.step(1)
    s.snapshot()
    trained = _ip(s)
    state = read_binary(tmp_path / "s" / "m" / "w_iter_1.solverstate", pb.SolverState)
    state.learned_net = "m/w_iter_1.caffemodel"
    write_binary(tmp_path / "s" / "state.solverstate", state)
    monkeypatch.chdir(tmp_path / "cwd")
    fresh = _solver(tmp_path, "")
    fresh.restore(str(tmp_path / "s" / "state.solverstate"))
    for got, want in zip(_ip(fresh), trained):
        np.testing.assert_array_equal(got, want)


def test_a_solverstate_of_negative_current_step_is_refused(tmp_path):
    """No solver writes a negative current_step; Caffe would index stepvalue(-1) with it.
    allconv's restore refuses it (snapshot.restore) before anything changes."""
    from runtime.caffemodel import read_binary, write_binary
    from runtime.errors import AllconvError
    from runtime.proto import pb
    s = _solver(tmp_path, f'snapshot_prefix: "{tmp_path}/x"\n')
    s.step(1)
    s.snapshot()
    state = read_binary(tmp_path / "x_iter_1.solverstate", pb.SolverState)
    state.current_step = -1
    write_binary(tmp_path / "bad.solverstate", state)
    with pytest.raises(AllconvError, match="must not be negative"):
        _solver(tmp_path, "").restore(str(tmp_path / "bad.solverstate"))


def test_a_caffemodel_blob_with_legacy_fields_and_shape_takes_the_legacy_four():
    """Blob::FromProto and ShapeEquals: when any of num/channels/height/width is set the
    legacy four win over `shape` (pycaffe's blobproto_to_array the same); the array is
    LegacyShaped, so a loader matches it as Caffe's ShapeEquals does."""
    from runtime.caffemodel import LegacyShaped, blob_to_array
    from runtime.proto import pb
    blob = pb.BlobProto(num=1, channels=2, height=1, width=3, shape=pb.BlobShape(dim=[3, 2]),
                        data=range(6))
    a = blob_to_array(blob)
    assert a.shape == (1, 2, 1, 3) and isinstance(a, LegacyShaped)
