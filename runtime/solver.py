"""Caffe's Solver over `runtime.net.Net`, with the update rules of `runtime.optim`.

As in BVLC Caffe, the generic `Solver` (src/caffe/solver.cpp) builds the train and test nets
from the solver file, runs the loop, tests, snapshots and restores; the update rule and its
history belong to the optimizer (src/caffe/solvers/*.cpp), here the `runtime.optim` class of
the solver's ``type`` (`CaffeSGD`, `CaffeAdam`, ...), stepped by the `CaffeLR` schedule. Per
iteration of `step`: clear the param diffs; test when ``test_interval`` divides ``iter`` (at
iteration 0 only with ``test_initialization``); ``iter_size`` forward/backward passes whose
gradients add up; the update; ``iter += 1``; snapshot when ``snapshot`` divides ``iter``.

A loop of one's own needs no Solver: see `runtime.optim.CaffeSGD` and the README.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch

from .data.hdf5 import h5py
from .distributed import SINGLE, RankFeed, Ranks
from .errors import AllconvError
from .lr_policy import CaffeLR
from .optim import OPTIMIZERS, check_solver_type
from .proto import pb
from .prototxt import to_text
from .registry import add_once
from .rng import net_rng_state, set_net_rng_state
from . import hdf5_snapshot, mode, snapshot

__all__ = ["Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
           "AdaDeltaSolver", "AdamSolver", "make_solver", "get_solver"]

log = logging.getLogger("allconv.solver")


# --------------------------------------------------------------------------------------------
# solver parameter loading
# --------------------------------------------------------------------------------------------

def _load_solver_param(solver) -> tuple[Any, str | None]:
    """Returns (SolverParameter copy, upgraded as read_solver does (its type included), path
    of the solver file or None); the Solver upgrades snapshot_prefix (and logs it) once its
    checks have passed."""
    from .prototxt import read_solver

    path = None
    if isinstance(solver, os.PathLike) or (
            isinstance(solver, str) and "\n" not in solver and os.path.isfile(solver)):
        path = os.fspath(solver)
    param = read_solver(solver)  # copies a message argument
    return param, path


def _upgrade_snapshot_prefix(param, path: str) -> None:
    # upgrade_proto.cpp UpgradeSnapshotPrefixProperty: unset prefix -> solver file without its
    # extension; a prefix naming a directory -> that directory / solver file stem.
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = os.path.splitext(path)[0]
        log.info("snapshot_prefix was not specified and is set to %s", param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        stem = os.path.splitext(os.path.basename(path))[0]
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, stem)
        log.info("snapshot_prefix was a directory and is replaced to %s", param.snapshot_prefix)


def make_solver(solver, **kwargs) -> "SGDSolver":
    """Build the solver named by `type` (or the deprecated `solver_type`) in the parameters."""
    param, _ = _load_solver_param(solver)
    check_solver_type(param.type)
    return _SOLVER_CLASSES[param.type](solver, **kwargs)


get_solver = make_solver        # pycaffe's caffe.get_solver


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    data = getattr(x, "data", None)
    if isinstance(data, torch.Tensor):
        return data
    return torch.as_tensor(np.asarray(data if data is not None else x))


def _net_source(field: str, value, test: bool) -> str:
    """Where a net comes from, as solver.cpp's InitTrainNet ("from net file: X", "specified
    in net_param.") and InitTestNets ("specified by test_net file: X", "specified by
    net_param") say it."""
    if field.endswith("_param"):
        return f"specified by {field}" if test else f"specified in {field}."
    return f"{'specified by' if test else 'from'} {field} file: {value}"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _feeds(net) -> list[tuple[str, Any]]:
    """(layer name, feed) of every Data layer of ``net``: their read positions go in snapshots."""
    return [(name, layer.feed) for name, layer in zip(net.layer_names, net.layers)
            if getattr(layer, "feed", None) is not None]


def _feed_states(net) -> dict[str, dict]:
    """{Data layer: its read position}: a resumed run reads on from where its snapshot was."""
    return {name: feed.state_dict() for name, feed in _feeds(net) if hasattr(feed, "state_dict")}


def _load_feed_states(net, states: dict[str, dict]) -> None:
    feeds = dict(_feeds(net))
    for name, feed_state in states.items():
        if name in feeds and hasattr(feeds[name], "load_state_dict"):
            feeds[name].load_state_dict(feed_state)


def _output_items(net, outputs=None) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for the net's output blobs, from a forward result or net.outputs."""
    if outputs is None:
        outputs = net.outputs
    if isinstance(outputs, dict):
        return [(k, _as_tensor(v)) for k, v in outputs.items()]
    return [(name, _as_tensor(net.blobs[name])) for name in outputs]


def loss_share(weight: float, value: float) -> str:
    """What Caffe adds after a weighted output's value: " (* w = w·v loss)", the product in
    float as Caffe's Dtype; "" at weight 0."""
    if not weight:
        return ""
    with np.errstate(over="ignore"):       # inf, as C++'s float product, without a warning
        share = np.float32(weight) * np.float32(value)
    return f" (* {_fmt(weight)} = {_fmt(share)} loss)"


# --------------------------------------------------------------------------------------------
# the generic Solver
# --------------------------------------------------------------------------------------------

class Solver:
    """Caffe's Solver: the nets of a solver file, the training loop, tests, snapshots and
    restore; ``optimizer`` (set by a subclass) owns the update rule and its history."""

    type_name = ""

    def __init__(self, solver, *, device=None, train_feed=None, test_feeds=None,
                 ranks: Ranks = SINGLE, level: int | None = None, stages=(), weights=None):
        """``weights``: a list that replaces the solver's ``weights`` (caffe train's -weights,
        or [] for -snapshot); None keeps them."""
        param, path = _load_solver_param(solver)
        if level is not None:        # caffe train's -level replaces train_state's level
            param.train_state.level = level
        param.train_state.stage.extend(stages)
        if weights is not None:
            param.ClearField("weights")
            param.weights.extend(weights)
        self.param = param
        self.solver_path = path
        self._check_param()
        log.info("Initializing solver from parameters: \n%s",
                 to_text(param).rstrip("\n"))
        self._before_test = None     # the test nets' random states while test_all runs

        device = mode.chosen_device() if device is None else device
        if device is None:
            if param.solver_mode == pb.SolverParameter.GPU and torch.cuda.is_available():
                device = (f"cuda:{param.device_id}"
                          if param.device_id < torch.cuda.device_count() else "cuda")
            else:
                device = "cpu"
        self.device = torch.device(device)

        seed = int(param.random_seed)
        self.seed = seed if seed >= 0 else None
        if self.seed is not None:
            torch.manual_seed(self.seed)

        self.ranks = ranks
        self.net = self._init_train_net(train_feed)
        if param.snapshot_format == pb.SolverParameter.HDF5 and (     # before any training
                0 < param.snapshot <= param.max_iter or param.snapshot_after_train):
            hdf5_snapshot.check_names(self.net.layer_names)
        if ranks.world > 1:      # Caffe's multi-GPU: the ranks take turns on the data stream
            for layer in self.net.layers:
                if getattr(layer, "feed", None) is not None:
                    layer.feed = RankFeed(layer.feed, ranks)
        self.test_nets = self._init_test_nets(test_feeds)

        self.mean_scores: list[dict[str, Any]] = [{} for _ in self.test_nets]
        self._losses: list[float] = []
        self.smoothed_loss = 0.0
        # Caffe's SetActionFunction: called after each iteration, returns "snapshot", "stop"
        # or None (allconv-caffe train maps SIGINT/SIGHUP to these).
        self.action_function = None
        self.requested_early_exit = False
        self.last_state: str | None = None     # the .solverstate `snapshot` wrote last
        self._callbacks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self.optimizer = self._make_optimizer()
        self.schedule = CaffeLR(self.optimizer, self.param)
        log.info("Solver scaffolding done.")

    # ---------------------------------------------------------------- construction
    def _check_param(self) -> None:
        p = self.param
        check_solver_type(p.type)
        if p.type != self.type_name:
            log.warning("solver type is %s but %s was constructed", p.type, type(self).__name__)
        if p.average_loss < 1:
            raise AllconvError(f"average_loss must be >= 1 (got {p.average_loss})")
        if p.iter_size < 1:
            raise AllconvError(f"iter_size must be >= 1 (got {p.iter_size})")
        if p.snapshot_format == pb.SolverParameter.HDF5:
            h5py("snapshot_format: HDF5")       # before any training, if it is not installed
        OPTIMIZERS[self.type_name].check_solver(p)     # the rule's values, before any net
        if self.solver_path is not None:
            _upgrade_snapshot_prefix(p, self.solver_path)
        for name in self._weight_files():      # said before the nets are built
            if not os.path.exists(name):
                raise AllconvError(f"{name}: no such file")
        if "\0" in p.snapshot_prefix and (p.snapshot > 0 or p.snapshot_after_train):
            raise AllconvError(f"snapshot_prefix {p.snapshot_prefix!r} holds a NUL byte, which "
                               "no file name can: its first snapshot would fail")
        if p.snapshot > 0:
            if not p.HasField("snapshot_prefix"):       # an empty one Caffe takes: "_iter_N.*"
                raise AllconvError(
                    "In solver params, snapshot is specified but snapshot_prefix is not")
            # Caffe's probe (its iteration is not set yet there: a number, 0 here)
            probe = snapshot.filename(p.snapshot_prefix, 0, ".tempfile")
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o666))
            except OSError:     # no folder, not writable, a name too long
                raise AllconvError(
                    f"Cannot write to snapshot prefix {p.snapshot_prefix!r}. Make sure that "
                    f"the directory exists and is writeable.") from None
            try:
                os.remove(probe)
            except OSError:
                pass

    def _weight_files(self) -> list[str]:
        """The .caffemodel files of ``weights``, each entry split at commas and trimmed, as
        Caffe's LoadNetWeights; an empty name (Caffe then fails to open "") is refused."""
        names = [name.strip() for entry in self.param.weights for name in entry.split(",")]
        if not all(names):
            raise AllconvError(f"weights {','.join(self.param.weights)}: an empty file name in "
                               "the comma list; give files separated by commas, like "
                               "a.caffemodel,b.caffemodel")
        return names

    def _make_net(self, net_param, default_phase: int, state_override, seed, feeds):
        """A net of the solver, with the ``weights`` files copied in (Caffe's LoadNetWeights
        into the train net and every test net)."""
        from .layers import NoFillerWarning
        from .net import Net

        state = pb.NetState()
        state.phase = default_phase
        state.MergeFrom(net_param.state)
        if state_override is not None:
            state.MergeFrom(state_override)
        net_param.state.CopyFrom(state)
        files = self._weight_files()
        with warnings.catch_warnings():
            if files:                # they replace the fillers (copy_from names any)
                warnings.simplefilter("ignore", NoFillerWarning)
            net = Net(net_param, state.phase, level=state.level, stages=tuple(state.stage),
                      seed=seed, feeds=feeds)
        for name in files:
            log.info("Finetuning from %s", name)
            net.copy_from(name)
        net.to(self.device)         # (also from where set_mode_* made it)
        return net

    def _init_train_net(self, feed):
        p = self.param
        fields = ("net", "net_param", "train_net", "train_net_param")
        given = [f for f in fields if p.HasField(f)]
        if len(given) != 1:
            raise AllconvError(
                "SolverParameter must specify exactly one train net using one of these "
                f"fields: {', '.join(fields)} (found {len(given) or 'none'}"
                f"{': ' + ', '.join(given) if given else ''})")
        field = given[0]
        log.info("Creating training net %s", _net_source(field, getattr(p, field), test=False))
        if field in ("net_param", "train_net_param"):
            net_param = pb.NetParameter()
            net_param.CopyFrom(getattr(p, field))
        else:
            net_param = _named_net(field, getattr(p, field))
        train_state = p.train_state if p.HasField("train_state") else None
        return self._make_net(net_param, pb.TRAIN, train_state, self.seed, feed)

    def _init_test_nets(self, test_feeds) -> list:
        p = self.param
        generic = [f for f in ("net_param", "net") if p.HasField(f)]
        if len(generic) > 1:
            raise AllconvError("Both net_param and net may not be specified.")
        n_specific = len(p.test_net_param) + len(p.test_net)
        n_iter = len(p.test_iter)
        if (n_iter < n_specific) if generic else (n_iter != n_specific):
            raise AllconvError("test_iter must be specified for each test network "
                               f"({n_iter} test_iter for {n_specific} test nets)")
        n_instances = n_iter if generic else n_specific
        if len(p.test_state) and len(p.test_state) != n_instances:
            raise AllconvError("test_state must be unspecified or specified once per test net "
                               f"({len(p.test_state)} for {n_instances} test nets)")
        if n_instances and p.test_interval <= 0:
            raise AllconvError("test_interval must be > 0 when test nets are given")
        sources = [_copy_net(n) for n in p.test_net_param]
        sources += [_named_net("test_net", f) for f in p.test_net]
        said = ([_net_source("test_net_param", None, test=True)] * len(p.test_net_param)
                + [_net_source("test_net", f, test=True) for f in p.test_net])
        for _ in range(n_instances - len(sources)):
            sources.append(_copy_net(p.net_param) if p.HasField("net_param")
                           else _named_net("net", p.net))
            said.append(_net_source(generic[0], p.net, test=True))
        if test_feeds is None or not isinstance(test_feeds, (list, tuple)):
            feeds = [test_feeds] * len(sources)
        else:
            feeds = list(test_feeds)
            if len(feeds) != len(sources):
                raise AllconvError(
                    f"{len(feeds)} test feeds given for {len(sources)} test nets")
        nets = []
        for i, (net_param, feed) in enumerate(zip(sources, feeds)):
            log.info("Creating test net (#%d) %s", i, said[i])
            state = p.test_state[i] if len(p.test_state) else None
            seed = None if self.seed is None else self.seed + 1 + i
            nets.append(self._make_net(net_param, pb.TEST, state, seed, feed))
        return nets

    def _make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    # ---------------------------------------------------------------- the update
    @property
    def iter(self) -> int:
        """Updates done (Caffe's iter_)."""
        return self.schedule.last_epoch

    @property
    def current_step(self) -> int:
        """Caffe's multistep position after `iter` updates."""
        return self.schedule.current_step

    @property
    def history(self) -> list[torch.Tensor]:
        """Caffe's history_ (momentum; Adam and AdaDelta: two blocks of N) in the train net's
        learnable_params order."""
        return self.optimizer.history()

    def update(self) -> float:
        """Caffe's ApplyUpdate plus ++iter on the accumulated gradients; returns the rate."""
        rate = self.optimizer.param_groups[0]["lr"]
        if self.schedule.passed_a_step:
            log.info("MultiStep Status: Iteration %d, step = %d", self.iter,
                     self.schedule.current_step + 1)
        if self.param.display and self.iter % self.param.display == 0:
            log.info("Iteration %d, lr = %s", self.iter, _fmt(rate))
        self.optimizer.step()
        norm, clip = self.optimizer.clip_norm, np.float32(self.optimizer.clip_gradients)
        if norm is not None and (norm := np.float32(norm.item())) > clip:
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale "
                     "factor %s", _fmt(norm), _fmt(clip), _fmt(clip / norm))
        self.schedule.step()
        return rate

    # ---------------------------------------------------------------- loop
    def _update_smoothed_loss(self, loss: float, start_iter: int) -> None:
        average_loss = int(self.param.average_loss)
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            size = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self._losses[idx]) / average_loss
            self._losses[idx] = loss

    def _test_due(self) -> bool:
        p = self.param
        return bool(p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization))

    def step(self, iters: int) -> None:
        """Run `iters` iterations of Caffe's Solver::Step."""
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + int(iters)
        self._losses = []
        self.smoothed_loss = 0.0
        iter_size = int(p.iter_size)
        timer = time.perf_counter()
        iterations_last = self.iter
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if self._test_due():
                if self.ranks.is_main:          # the root solver tests, as in Caffe
                    self.test_all()
                if self.ranks.any(self.requested_early_exit):   # stopped while testing
                    self.requested_early_exit = True
                    break
            for on_start, _ in self._callbacks:
                on_start()
            display = bool(p.display and self.iter % p.display == 0) and self.ranks.is_main
            self.net.debug_info = display and p.debug_info      # Caffe's Solver::Step
            loss = 0.0
            for _ in range(iter_size):
                loss += float(self.net.forward_backward())
            loss /= iter_size
            self.ranks.average_gradients(self.net.learnable_params)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - iterations_last) / (lapse if lapse else 1.0)
                log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self.iter,
                         _fmt(per_s), _fmt(lapse), p.display, _fmt(self.smoothed_loss))
                timer = time.perf_counter()
                iterations_last = self.iter
                self._log_outputs(self.net, _output_items(self.net), "Train")
            for _, on_gradients_ready in self._callbacks:
                on_gradients_ready()
            self.update()
            request = self._agreed_request()
            if ((p.snapshot and self.iter % p.snapshot == 0) or request == "snapshot") \
                    and self.ranks.is_main:
                self.snapshot()
            if request == "stop":
                self.requested_early_exit = True
                break

    def add_callback(self, on_start: Callable[[], None],
                     on_gradients_ready: Callable[[], None]) -> None:
        """pycaffe's Solver.add_callback: ``on_start()`` at each iteration's start (after its
        test), ``on_gradients_ready()`` after its forward-backward passes, before the update
        (Caffe's Solver::Callback, in the order added)."""
        self._callbacks.append((on_start, on_gradients_ready))

    def _agreed_request(self) -> str | None:
        """What Ctrl-C or SIGHUP asked for since the last check, the same on every rank: one
        rank leaving the loop alone would leave the others waiting in their all-reduce."""
        request = self.action_function() if self.action_function else None
        if self.ranks.world == 1:
            return request
        order = (None, "snapshot", "stop")     # the strongest of any rank: one all-reduce
        strongest = self.ranks.min(torch.tensor(-order.index(request), device=self.ranks.device))
        return order[-int(strongest)]

    def solve(self, resume_file=None) -> None:
        """Caffe's Solver::Solve: optional restore, step to max_iter, final snapshot/test."""
        p = self.param
        self.requested_early_exit = False
        log.info("Solving %s", getattr(self.net, "name", "") or "net")
        log.info("Learning Rate Policy: %s", p.lr_policy)
        if resume_file is not None:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if not self.ranks.is_main:
            return
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            if p.HasField("snapshot_prefix"):
                self.snapshot()
            else:  # Caffe would write "_iter_N.caffemodel" into the current directory
                log.warning("snapshot_after_train: no snapshot_prefix; final snapshot skipped")
        if self.requested_early_exit:
            log.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            # Caffe's last Forward, to display the train loss after the last update: the
            # net's blobs hold it, and a backward may follow (pycaffe's, after solve)
            self.net.forward()
            loss = self.net.last_loss
            self._update_smoothed_loss(loss, start_iter)
            log.info("Iteration %d, loss = %s", self.iter, _fmt(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    # ---------------------------------------------------------------- testing
    def test_all(self) -> list[dict[str, Any]]:
        """Test every test net. A snapshot written before they are all done (SIGHUP, or the
        final one after a stop) keeps their random streams and read positions as they were
        before this test: the resumed run, which tests at this iteration again, reads the
        batches this one read, and every later test as an unbroken run's."""
        self._before_test = self._test_rng_states()
        try:
            scores = [self.test(i) for i in range(len(self.test_nets))
                      if not self.requested_early_exit]
        finally:
            if not self.requested_early_exit:
                self._before_test = None
        return scores

    def _test_rng_states(self) -> dict:
        return {"test_nets": [net_rng_state(n) for n in self.test_nets],
                "test_feeds": [_feed_states(net) for net in self.test_nets]}

    def _stopped_while_testing(self) -> bool:
        """Caffe's Test, before each batch: act on every pending request (snapshot now, or
        stop), so that Ctrl-C during a long test stops it rather than after one more update."""
        while request := (self.action_function() if self.action_function else None):
            if request == "snapshot":
                self.snapshot()
            else:
                self.requested_early_exit = True
        return self.requested_early_exit

    @torch.no_grad()
    def test(self, test_net_id: int = 0) -> dict[str, Any]:
        """Average each output of test net `test_net_id` over its test_iter batches.

        Values are Caffe's mean_scores: scalars for 1-element outputs, else lists.
        """
        p = self.param
        log.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        net = self.test_nets[test_net_id]
        net.share_trained_layers_with(self.net)
        n = int(p.test_iter[test_net_id])
        sums: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        loss = np.float32(0.0)        # Caffe's Dtype sum
        for i in range(n):
            if self._stopped_while_testing():
                break
            outputs = net.forward()
            if p.test_compute_loss:      # every weighted top's: Net::Forward's (a host read)
                with np.errstate(over="ignore"):
                    loss += np.float32(net.last_loss)
            for name, value in _output_items(net, outputs):
                v = value.detach().reshape(-1)
                if i == 0:
                    sums[name] = v.clone()
                else:
                    sums[name] += v
        if self.requested_early_exit:
            log.info("Test interrupted.")
            return {}
        if p.test_compute_loss and n:
            log.info("Test loss: %s", _fmt(loss / np.float32(n)))
        means = OrderedDict((name, (total / n).cpu().tolist() if n else [])
                            for name, total in sums.items())
        self._log_outputs(net, means.items(), "Test")
        scores = OrderedDict((name, mean[0] if len(mean) == 1 else mean)
                             for name, mean in means.items())
        self.mean_scores[test_net_id] = scores
        return scores

    @staticmethod
    def _log_outputs(net, items, kind: str) -> None:
        """Caffe's "<kind> net output #i: name = v" lines, numbered across the (name, values)
        ``items`` (values: a tensor or a list)."""
        index = 0
        for name, values in items:
            if isinstance(values, torch.Tensor):
                values = values.detach().reshape(-1).float().cpu().tolist()
            for v in values:
                log.info("    %s net output #%d: %s = %s%s", kind, index, name, _fmt(v),
                         loss_share(net.loss_weight(name), v))
                index += 1

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> tuple[str, str]:
        """Write <prefix>_iter_<N>.caffemodel, .rngstate and .solverstate (each atomically;
        snapshot_format HDF5: .caffemodel.h5 and .solverstate.h5)."""
        if not self.param.HasField("snapshot_prefix"):
            raise AllconvError("cannot snapshot: snapshot_prefix is not set")
        model, self.last_state = snapshot.write(
            self.param.snapshot_prefix, self.net, self.optimizer, self.schedule,
            self._rng_state(), hdf5=self.param.snapshot_format == pb.SolverParameter.HDF5,
            diff=self.param.snapshot_diff)
        return model, self.last_state

    def _rng_state(self) -> dict:
        return {
            "format": snapshot.SOLVER_STATE,
            "iter": self.iter,
            "net": net_rng_state(self.net),
            **snapshot.torch_rng_state(),
            "feeds": _feed_states(self.net),
            **(self._before_test or self._test_rng_states()),
        }

    def _set_rng_state(self, state: dict, path: str) -> None:
        set_net_rng_state(self.net, state.get("net", {}), f"{path}, the train net")
        for i, (net, states) in enumerate(zip(self.test_nets, state.get("test_nets", []))):
            set_net_rng_state(net, states, f"{path}, test net #{i}")
        snapshot.set_torch_rng_state(state)
        _load_feed_states(self.net, state.get("feeds", {}))
        for net, states in zip(self.test_nets, state.get("test_feeds", [])):
            _load_feed_states(net, states)

    def restore(self, state_path) -> None:
        """Load a .solverstate: weights from learned_net, momentum history, iter, current_step.

        Also restores `<prefix>_iter_<N>.rngstate` beside it when present.
        """
        snapshot.restore(state_path, self.net, self.optimizer, self.schedule)
        if not str(state_path).endswith(".h5"):     # sgd_solver.cpp's, for every rule
            log.info("SGDSolver: restoring history")
        rng_path = snapshot.sibling(state_path, ".rngstate")
        if not os.path.exists(rng_path):
            log.info("%s not found; random streams are not restored", rng_path)
        else:
            with snapshot.restoring_state(rng_path):
                rng = snapshot.read_rng_state(rng_path)
                if rng.get("format") == snapshot.LOOP_STATE:
                    log.info("%s holds a replicate run's loop state, not a solver's; random "
                             "streams are not restored (replicate --resume continues the run)",
                             rng_path)
                else:
                    rng = _upgrade_rng_state(rng, self, rng_path)
                    if rng.get("iter") != self.iter:
                        log.warning("%s is for iteration %s, the solverstate for %d",
                                    rng_path, rng.get("iter"), self.iter)
                    self._set_rng_state(rng, rng_path)


def _upgrade_rng_state(state: dict, solver: Solver, path: str) -> dict:
    """Format 1 named generators by module path ("layers.<i>", attribute, device); format 2
    by layer name ({layer: {device: state}})."""
    if state.get("format") == snapshot.SOLVER_STATE:
        return state
    if state.get("format") != snapshot.OLD_SOLVER_STATE:
        raise AllconvError(f"{path}: unknown rng state format {state.get('format')!r}")

    def by_name(net, entries):
        out: dict = {}
        for entry in entries:
            module, _, device = entry["where"]
            index = int(module.rsplit(".", 1)[-1])
            out.setdefault(net.layer_names[index], {})[str(device)] = entry["state"]
        return out

    return {**state, "format": snapshot.SOLVER_STATE, "net": by_name(solver.net, state["net"]),
            "test_nets": [by_name(n, e) for n, e in zip(solver.test_nets, state["test_nets"])]}


def _copy_net(net_param):
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    return out


def _named_net(field: str, path: str):
    """The net file a solver field names, read as Caffe reads it: from the current folder."""
    from .files import missing
    from .prototxt import read_net
    if "\0" not in path and not os.path.exists(path):     # a NUL: read_net's own message
        raise AllconvError(f"the solver's {field}: {path}: {missing(path)}")
    return _copy_net(read_net(path))


# --------------------------------------------------------------------------------------------
# the update rules: Caffe's SGDSolver and its subclasses
# --------------------------------------------------------------------------------------------

class SGDSolver(Solver):
    """Caffe's SGDSolver: the Solver stepping the `runtime.optim` rule of its ``type_name``
    (`CaffeSGD` for momentum SGD)."""

    type_name = "SGD"

    def _make_optimizer(self) -> torch.optim.Optimizer:
        param = pb.SolverParameter()
        param.CopyFrom(self.param)
        param.type = self.type_name      # the class decides the rule, as in Caffe
        optimizer = OPTIMIZERS[self.type_name].from_solver(param, self.net)
        optimizer.updates_in_diffs = True     # pycaffe shows the update in each diff
        return optimizer


_SOLVER_CLASSES: dict[str, type] = {}
add_once(_SOLVER_CLASSES, SGDSolver.type_name, SGDSolver, "solver class for type")


def _solver_class(type_name: str) -> type:
    """pycaffe's ``<type>Solver`` for a solver type of `runtime.optim.OPTIMIZERS`: an SGDSolver
    whose ``type_name`` picks the rule; registered once per type."""
    rule = OPTIMIZERS[type_name].__name__
    cls = type(f"{type_name}Solver", (SGDSolver,), {
        "__module__": __name__, "__qualname__": f"{type_name}Solver", "type_name": type_name,
        "__doc__": f"Caffe's {type_name}Solver: the Solver stepping `runtime.optim.{rule}`."})
    return add_once(_SOLVER_CLASSES, type_name, cls, "solver class for type")


NesterovSolver = _solver_class("Nesterov")
AdaGradSolver = _solver_class("AdaGrad")
RMSPropSolver = _solver_class("RMSProp")
AdaDeltaSolver = _solver_class("AdaDelta")
AdamSolver = _solver_class("Adam")
