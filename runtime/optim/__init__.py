"""Caffe's update rules as ``torch.optim.Optimizer`` classes, one module per rule as Caffe's
src/caffe/solvers/ has them, on the shared `CaffeOptimizer` (grouping by lr_mult/decay_mult,
clip, iter_size, regularization, history <-> ``.solverstate``).

``OPTIMIZERS`` maps a solver ``type`` (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam) to its
class; `optimizer_from_solver` builds the one a solver file names.
"""
from __future__ import annotations

from runtime.errors import AllconvError
from runtime.optim.adadelta import CaffeAdaDelta
from runtime.optim.adagrad import CaffeAdaGrad
from runtime.optim.adam import CaffeAdam
from runtime.optim.base import REGULARIZATIONS, CaffeOptimizer
from runtime.optim.rmsprop import CaffeRMSProp
from runtime.optim.sgd import CaffeSGD
from runtime.proto import pb
from runtime.registry import add_once

__all__ = ["CaffeOptimizer", "CaffeSGD", "CaffeAdaGrad", "CaffeRMSProp", "CaffeAdaDelta",
           "CaffeAdam", "OPTIMIZERS", "SOLVER_TYPES", "REGULARIZATIONS", "optimizer_from_solver"]

OPTIMIZERS: dict[str, type] = {}
for _cls in (CaffeSGD, CaffeAdaGrad, CaffeRMSProp, CaffeAdaDelta, CaffeAdam):
    for _name in _cls.solver_types:
        add_once(OPTIMIZERS, _name, _cls, "solver type")
SOLVER_TYPES = tuple(OPTIMIZERS)


def check_solver_type(name: str) -> None:
    """A one-line error listing the supported types when ``name`` is not one."""
    if name not in OPTIMIZERS:
        raise AllconvError(f"solver type {name!r} is not supported; supported types: "
                           f"{', '.join(SOLVER_TYPES)}")


def optimizer_from_solver(solver, net) -> CaffeOptimizer:
    """The optimizer of the solver's ``type`` for ``net`` (see `CaffeOptimizer.from_solver`)."""
    from runtime.prototxt import read_solver

    param = solver if isinstance(solver, pb.SolverParameter) else read_solver(solver)
    check_solver_type(param.type)
    return OPTIMIZERS[param.type].from_solver(param, net)
