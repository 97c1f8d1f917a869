"""What every Caffe update rule shares (src/caffe/solvers/sgd_solver.cpp, SGDSolver, which
AdaGrad, RMSProp, AdaDelta and Adam extend): parameter groups by multipliers, ClipGradients,
Normalize (1/iter_size), Regularize (L2/L1), and the history blobs <-> ``.solverstate``.

One ``step()`` is Caffe's ApplyUpdate:

1. clip: when ``clip_gradients >= 0`` and the global L2 norm of the diffs of *every* parameter
   (``lr_mult`` 0 included: under ``force_backward`` they have diffs) exceeds it, scale every
   diff by clip / norm;
2. per parameter: scale by 1/iter_size; add ``weight_decay * decay_mult * w`` (L2) or
   ``* sign(w)`` (L1); then the rule's ComputeUpdateValue with the local rate
   ``lr * lr_mult`` (a subclass's ``_update``), which subtracts the update from the weights.

Arithmetic is Caffe's float solver: hyper-parameters are rounded to fp32 before use, and each
operation is done in Caffe's order as a few in-place ``torch._foreach_*`` calls per group, with
no host sync. The rate is ``group["lr"]`` (a float, or a 0-dim tensor that a CUDA graph can
keep), set by `runtime.lr_policy.CaffeLR` or by the caller; ``group["iter"]`` counts the
updates done (Caffe's ``iter_``; Adam's bias correction reads it).

Packed runs (runtime/pack.py): with ``lr`` a 1-d tensor of K rates, the parameters hold K
members along axis 0 (`runtime.members.member_block`) and member k's rows step at rate k; the
clip's norm is then each member's own, and ``active`` (a (K,) bool tensor, None: all) stops a
member: its gradient is zeroed and its weights stay, while the others go on.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from runtime.errors import AllconvError
from runtime.members import member_rows, member_state
from runtime.proto import pb

REGULARIZATIONS = ("L1", "L2")
PROTO = pb.SolverParameter()   # caffe.proto's defaults: the constructors' keyword defaults
_f32 = np.float32


def fp32(x: float) -> float:
    """``x`` rounded to float32 (Caffe's Dtype), as a Python float."""
    return float(_f32(x))


def one_minus(x: float) -> float:
    """Caffe's ``Dtype(1) - x`` in float32."""
    return fp32(_f32(1) - _f32(x))


def running_average_(history, values, decay: float) -> None:
    """history = decay * history + (1 - decay) * values, in place: Caffe's
    ``caffe_cpu_axpby(N, 1 - decay, values, decay, history)`` (scale, then add)."""
    torch._foreach_mul_(history, fp32(decay))
    torch._foreach_add_(history, values, alpha=one_minus(decay))


def over_root(numerators, history, delta: float) -> list[torch.Tensor]:
    """numerators / (sqrt(history) + delta), as new tensors (AdaGrad, RMSProp, Adam)."""
    root = torch._foreach_sqrt(history)
    torch._foreach_add_(root, fp32(delta))
    return torch._foreach_div(numerators, root)


def zero_rate(group: dict, rate) -> bool:
    """Whether a group's local rate is 0: a float's own value (NaN is not 0); a tensor's,
    which only a sync could read, from ``lr_mult`` 0."""
    return rate == 0 if isinstance(rate, float) else group["lr_mult"] == 0


def scale_(tensors, group: dict, rate) -> None:
    """tensors *= rate, as Caffe's BLAS scales an update (the reference build's OpenBLAS
    ``sscal`` and ``axpby``): a rate of 0 writes 0s, over NaN or infinite values too, so a
    frozen layer's weights stay when a diverged backward gives it NaN diffs."""
    if zero_rate(group, rate):
        torch._foreach_zero_(tensors)
    else:
        torch._foreach_mul_(tensors, rate)


def fp32_values(x) -> list[float]:
    """A rate or hyper-parameter (a float, or a tensor of them) as float32 Python floats."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().flatten().tolist()
    with np.errstate(over="ignore"):      # beyond float32's range: inf, as C++ casts it
        return [fp32(x)]


def check_finite(options: dict, names) -> None:
    """Each of ``names`` present in ``options`` must be finite in float32: a NaN or infinite
    hyper-parameter makes every update NaN or infinite (Caffe checks none of them)."""
    for name in names:
        if name in options and not all(np.isfinite(fp32_values(options[name]))):
            field = "lr (a solver's base_lr)" if name == "lr" else name
            raise AllconvError(f"{field} is {_shown(options[name])}: every update would be NaN "
                               "or infinite (Caffe does not check this)")


def _shown(x) -> str:
    values = fp32_values(x)
    return f"{values[0]:g}" if len(values) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def refuse_momentum(param, rule: str) -> None:
    """Caffe's check of AdaGrad and RMSProp: a solver file's ``momentum`` must be 0."""
    if param.momentum != 0:
        raise AllconvError(f"Momentum cannot be used with {rule} (momentum is "
                           f"{param.momentum:g}; leave it out or set 0)")


def _group_by_mults(params, owner: str) -> list[dict]:
    """Torch-style params (tensors or group dicts) split into one group per (lr_mult,
    decay_mult); a parameter's own attributes win over its group's keys, which win over 1."""
    params = list(params)
    if not params:
        raise AllconvError(f"{owner} got an empty parameter list")
    given = params if isinstance(params[0], dict) else [{"params": params}]
    groups: "OrderedDict[tuple, dict]" = OrderedDict()
    for index, group in enumerate(given):
        options = {k: v for k, v in group.items() if k != "params"}
        tensors = group["params"]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        for p in tensors:
            lr_mult = float(getattr(p, "lr_mult", options.get("lr_mult", 1.0)))
            decay_mult = float(getattr(p, "decay_mult", options.get("decay_mult", 1.0)))
            key = (index, lr_mult, decay_mult)
            if key not in groups:
                groups[key] = {**options, "params": [], "lr_mult": lr_mult,
                               "decay_mult": decay_mult}
            groups[key]["params"].append(p)
    return list(groups.values()) or [{**given[0], "lr_mult": 1.0, "decay_mult": 1.0}]


class CaffeOptimizer(torch.optim.Optimizer):
    """The shared part of Caffe's solvers as a ``torch.optim.Optimizer``.

    A subclass names its Caffe ``solver_types``, its ``history_keys`` (per-parameter state keys,
    each a block of N blobs in the ``.solverstate``, in Caffe's history_ order), reads its
    hyper-parameters from a SolverParameter in ``solver_options`` and implements ``_update``.
    ``weight_decay`` and ``regularization`` ("L2" or "L1") may differ per group;
    ``clip_gradients`` (global norm; negative: off) and ``iter_size`` (backward passes summed
    into one step) apply to the whole step. The history is created at construction, so it can
    be saved before the first step.
    """

    solver_types: tuple[str, ...] = ()
    history_keys: tuple[str, ...] = ()
    host_iteration = False   # the update reads group["iter"] on the host (no CUDA graph)
    # leave each step's update in ``.grad``, as Caffe's ComputeUpdateValue leaves it in the
    # diffs (a Solver's, for pycaffe's view; a training loop of its own needs no copy)
    updates_in_diffs = False

    def __init__(self, params, defaults: dict, clip_gradients: float = PROTO.clip_gradients,
                 iter_size: int = PROTO.iter_size):
        if defaults.get("regularization", PROTO.regularization_type) not in REGULARIZATIONS:
            raise AllconvError(f"unknown regularization_type {defaults['regularization']!r}; "
                               f"valid: {', '.join(REGULARIZATIONS)}")
        if int(iter_size) < 1:
            raise AllconvError(f"iter_size must be >= 1 (got {iter_size})")
        self.check_options(defaults)
        params = list(params)
        defaults = {"weight_decay": PROTO.weight_decay,
                    "regularization": PROTO.regularization_type, **defaults, "iter": 0}
        super().__init__(_group_by_mults(params, type(self).__name__), defaults)
        self.clip_gradients, self.clip_norm = float(clip_gradients), None
        self.iter_size = int(iter_size)
        self._order = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        rate = defaults["lr"]
        self.members = rate.numel() if isinstance(rate, torch.Tensor) and rate.dim() == 1 else 1
        self.active: torch.Tensor | None = None
        if self.members > 1:
            uneven = [tuple(p.shape) for p in self._order if p.shape[0] % self.members]
            if uneven:
                raise AllconvError(f"{self.members} member rates, but a parameter of shape "
                                   f"{uneven[0]} does not split into {self.members} members "
                                   "along axis 0")
        for group in self.param_groups:
            for p in group["params"]:
                for key in self.history_keys:
                    self.state[p][key] = torch.zeros_like(
                        p, memory_format=torch.contiguous_format).detach()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_solver(cls, solver, net, lr=None) -> "CaffeOptimizer":
        """From a SolverParameter, its text or a solver file, for ``net``'s learnable params
        (a `runtime.Net`, or any iterable of parameters). The solver's ``type`` must be one
        this class runs (`runtime.optim.optimizer_from_solver` picks the class). ``lr``
        replaces the solver's ``base_lr`` (a pack: a 1-d tensor of the members' rates)."""
        from runtime.prototxt import read_solver

        param = solver if isinstance(solver, pb.SolverParameter) else read_solver(solver)
        if param.type not in cls.solver_types:
            raise AllconvError(f"{cls.__name__} runs solver type(s) "
                               f"{', '.join(cls.solver_types)}, not {param.type!r}")
        params = getattr(net, "learnable_params", None)
        if params is None:
            params = net
        elif not params:        # Caffe's solver steps a net without learnable blobs too
            params = [{"params": []}]
        return cls(params, lr=fp32(param.base_lr) if lr is None else lr,
                   weight_decay=param.weight_decay,
                   # Caffe reads regularization_type only when there is weight decay
                   regularization=param.regularization_type if param.weight_decay else "L2",
                   clip_gradients=param.clip_gradients, iter_size=param.iter_size,
                   **cls.solver_options(param))

    @classmethod
    def solver_options(cls, param) -> dict:
        """The rule's keyword arguments from a SolverParameter, after Caffe's checks."""
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: dict) -> None:
        """One-line errors for hyper-parameters (constructor keywords: ``lr``,
        ``weight_decay``, the rule's) that Caffe refuses, or with which Caffe's update would
        be NaN or infinite from the start: here any non-finite rate, decay or momentum and a
        NaN delta; a rule adds its own. Run by the constructor."""
        check_finite(options, ("lr", "weight_decay", "momentum", "momentum2"))
        if "delta" in options and np.isnan(fp32(options["delta"])):
            raise AllconvError("delta is nan: every update would be NaN (Caffe does not check "
                               "this)")

    @classmethod
    def check_solver(cls, param) -> None:
        """`check_options` on a SolverParameter's values (with the rule's Caffe checks), as
        `from_solver` would run them: a Solver calls it before it builds any net."""
        cls.check_options({"lr": param.base_lr, "weight_decay": param.weight_decay,
                           **cls.solver_options(param)})

    # ------------------------------------------------------------------ the update
    @torch.no_grad()
    def step(self, closure=None):
        """One Caffe ApplyUpdate on the accumulated ``.grad`` tensors (which it overwrites)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._stop_inactive()
        self._clip()
        for group in self.param_groups:
            params = group["params"]
            rate = self._local_rate(group, params) if params else None
            if params and not (zero_rate(group, rate) and all(p.grad is None for p in params)
                               and self._frozen(group, params)):
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                grads = [p.grad for p in params]
                self._regularized(group, params, grads)
                self._update(group, params, grads, rate)
            group["iter"] += 1
        return loss

    def _update(self, group: dict, params, grads, local_rate) -> None:
        """Caffe's ComputeUpdateValue and Net::Update for one group: ``grads`` are the
        regularized diffs; the history is in ``self.state``; weights change in place."""
        raise NotImplementedError

    def _frozen(self, group: dict, params) -> bool:
        """A group of local rate 0 whose params got no diff (Caffe: a zero diff); True when
        handled here without one. By default the rule runs on zero diffs: weight decay still
        reaches the adaptive rules' histories, as in Caffe."""
        return False

    def _local_rate(self, group: dict, params):
        """lr * lr_mult: a float, a 0-dim tensor, or (members) one tensor per parameter of
        its rows' rates."""
        rate = group["lr"]
        if self.members > 1:
            return self._per_row(rate * fp32(group["lr_mult"]), params)
        if isinstance(rate, torch.Tensor):   # 0-dim, or one member's 1-d rate
            return rate.reshape(()) * fp32(group["lr_mult"])
        return fp32(_f32(rate) * _f32(group["lr_mult"]))

    def _per_row(self, values: torch.Tensor, tensors) -> list[torch.Tensor]:
        """Per-member ``values`` (K,) as one tensor per parameter, broadcast over its rows."""
        return [member_rows(values, t) for t in tensors]

    def _subtract(self, params, updates) -> None:
        """w -= update (Caffe's Net::Update), none for the rows of an inactive member."""
        if self.active is not None:
            updates = [torch.where(keep, u, 0) for keep, u in
                       zip(self._per_row(self.active, params), updates)]
        torch._foreach_sub_(params, updates)
        if self.updates_in_diffs:
            for p, update in zip(params, updates):
                if p.grad is None:              # a frozen group's: Caffe's diff is its update
                    p.grad = update.clone()
                elif p.grad is not update:
                    p.grad.copy_(update)

    def _stop_inactive(self) -> None:
        """An inactive member's gradients become 0 (a NaN one too)."""
        if self.active is None:
            return
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        for keep, p in zip(self._per_row(self.active, params), params):
            p.grad.masked_fill_(~keep, 0)

    def _clip(self) -> None:
        """ClipGradients; ``clip_norm`` keeps the norm it measured (a tensor, no host read;
        None where it measured none) for a Solver's log line."""
        clip, self.clip_norm = self.clip_gradients, None
        if clip < 0:
            return
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        if self.members == 1:
            norm = self.clip_norm = torch.linalg.vector_norm(
                torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, torch.where(norm > clip, clip / norm, 1.0))
            return
        norm = torch.linalg.vector_norm(torch.stack(   # (members,): each member's own norm
            [torch.linalg.vector_norm(g.reshape(self.members, -1), dim=1) for g in grads]), dim=0)
        torch._foreach_mul_(grads, self._per_row(torch.where(norm > clip, clip / norm, 1.0),
                                                 grads))

    def _regularized(self, group: dict, params, grads) -> None:
        """g = g / iter_size + weight_decay * decay_mult * (w or sign(w)), in place."""
        if self.iter_size != 1:
            torch._foreach_mul_(grads, fp32(_f32(1) / _f32(self.iter_size)))
        decay = fp32(_f32(group["weight_decay"]) * _f32(group["decay_mult"]))
        if decay:
            if group["regularization"] == "L1":
                torch._foreach_add_(grads, torch._foreach_sign(params), alpha=decay)
            else:
                torch._foreach_add_(grads, params, alpha=decay)

    def _state(self, params, key: str) -> list[torch.Tensor]:
        return [self.state[p][key] for p in params]

    # ------------------------------------------------------------------ .solverstate
    def history(self, member: int | None = None) -> list[torch.Tensor]:
        """Caffe's history_: each history key's blobs in the order the parameters were given
        (Caffe's learnable_params order when built from a Net), key after key; of a pack,
        ``member``'s blocks (views), the history of its solo run."""
        history = [self.state[p][key] for key in self.history_keys for p in self._order]
        if member is None:
            return history
        return member_state(history, member, self.members)

    def solver_state(self, iter: int, current_step: int, learned_net: str,
                     member: int | None = None) -> "pb.SolverState":
        """A Caffe ``SolverState`` message holding the history (of ``member``), exactly
        (fp32)."""
        from runtime.caffemodel import array_to_blob

        state = pb.SolverState()
        state.iter, state.current_step, state.learned_net = iter, current_step, learned_net
        for h in self.history(member):
            state.history.append(array_to_blob(h.detach().float().cpu().numpy()))
        return state

    def load_solver_state(self, state: "pb.SolverState", path: str = "solverstate",
                          member: int | None = None) -> None:
        """Copy a ``SolverState``'s history into this optimizer (into ``member``'s blocks: a
        solo run's state) and take its ``iter``; shapes must match (legacy 4-d blob shapes
        padded with leading 1s are accepted, as Caffe does). Everything is checked before
        anything changes."""
        from runtime.blob_shape import shape_equals
        from runtime.caffemodel import LegacyShaped, blob_to_array

        history = self.history(member)
        if len(state.history) != len(history):
            per = len(self.history_keys)
            raise AllconvError(f"{path}: solverstate has {len(state.history)} history blobs "
                               f"but the net has {len(history)}" + (
                                   f" ({per} per learnable param for {type(self).__name__})"
                                   if per > 1 else ""))
        arrays = []
        for i, (blob, h) in enumerate(zip(state.history, history)):
            want = tuple(h.shape)
            try:
                a = blob_to_array(blob)
            except AllconvError as e:
                raise AllconvError(f"{path}: history blob {i}: {e}") from None
            if not shape_equals(a.shape, want, isinstance(a, LegacyShaped)):
                raise AllconvError(f"{path}: history blob {i} has shape {tuple(a.shape)} but "
                                   f"it is for a learnable param of shape {want}")
            arrays.append(a.reshape(want))
        with torch.no_grad():
            for h, a in zip(history, arrays):
                # ascontiguousarray makes a 0-d array 1-d: a scalar's history takes its shape
                h.copy_(torch.from_numpy(np.ascontiguousarray(a)).reshape(h.shape)
                        .to(h.device, h.dtype))
        for group in self.param_groups:
            group["iter"] = int(state.iter)

