"""allconv-caffe: Caffe's command line (tools/caffe.cpp) over the PyTorch runtime.

    allconv-caffe train -solver S [-snapshot X.solverstate | -weights W.caffemodel] [-gpu 0]
                        [-sigint_effect stop|snapshot|none] [-sighup_effect snapshot|stop|none]
    allconv-caffe test  -model M -weights W [-iterations 50] [-gpu 0]
    allconv-caffe time  -model M [-iterations 50] [-phase TRAIN|TEST] [-gpu 0]
    allconv-caffe device_query -gpu 0
    (train, test, time also take -level N and -stage a,b; as in gflags every command takes
    every flag, ignoring those it does not use, spelt -flag, -flag=value or --flag=value;
    glog's -log_dir, -minloglevel, -alsologtostderr, ... too: runtime/caffe_flags.py)
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
import warnings

import torch

from runtime.caffe_flags import add_flags, as_gflags_reads, configure_logging, log_failure
from runtime.cli_support import Parser, add_version, run_command
from runtime.errors import AllconvError
from runtime.layers import NoFillerWarning
from runtime.signal_handler import SignalHandler

log = logging.getLogger("allconv.caffe")


def _device(gpu: str | None) -> str:
    """The device of a -gpu flag (CPU without one), named in the log as Caffe does."""
    if gpu is None:
        log.info("Use CPU.")
        return "cpu"
    device = _cuda_devices(gpu)[0]      # caffe.cpp's test and time take the first, too
    log.info("Using GPU %s: %s", device[5:], torch.cuda.get_device_name(device))
    return device


def _cuda_devices(gpu: str) -> list[str]:
    """caffe.cpp's get_gpus: the devices -gpu names, every one this machine has for all."""
    if not torch.cuda.is_available():
        raise AllconvError(f"-gpu {gpu} asked for, but CUDA is not available here")
    count = torch.cuda.device_count()
    ids = range(count) if gpu == "all" else [int(i) for i in gpu.split(",")]
    if max(ids) >= count:
        raise AllconvError(f"-gpu {gpu}: this machine has {count} GPU(s), ids 0 to {count - 1}")
    return [f"cuda:{i}" for i in ids]


def _train_device(gpu: str | None, solver_path: str) -> str:
    """caffe.cpp: without -gpu, a solver that sets solver_mode GPU runs on its device_id (or
    GPU 0); with no CUDA here, that is said in one line and the CPU is used."""
    from runtime.prototxt import read_solver
    from runtime.proto import pb
    param = read_solver(solver_path)
    if (gpu is None and param.HasField("solver_mode")
            and param.solver_mode == pb.SolverParameter.GPU):
        gpu = str(param.device_id)
        if not torch.cuda.is_available():
            log.warning("solver_mode is GPU (device_id %s), but CUDA is not available here: "
                        "running on the CPU", gpu)
            gpu = None
    return _device(gpu)


def train(args) -> None:
    """caffe.cpp's train: the solver from -solver, resumed from -snapshot or started from
    -weights, one process or every process of torchrun; Ctrl-C and SIGHUP as -sigint_effect
    and -sighup_effect say."""
    from runtime.distributed import (from_environment, launched_by_torchrun, leave,
                                     not_process_zero, said_once)
    from runtime.solver import make_solver
    _needs(args.solver, "Need a solver definition to train.")
    if args.snapshot and args.weights:
        raise AllconvError("give -snapshot or -weights, not both (as Caffe)")
    if args.snapshot and args.snapshot.endswith((".caffemodel", ".caffemodel.h5")):
        raise AllconvError(f"-snapshot {args.snapshot}: a .caffemodel holds weights, not a "
                           "solver state; give it as -weights (or give the .solverstate)")
    if args.snapshot and not os.path.exists(args.snapshot):     # said before the nets are built
        raise AllconvError(f"{args.snapshot}: no such file")
    # CUDA and the ids are checked first: the torchrun hint helps only where they exist
    if args.gpu and not launched_by_torchrun() and len(_cuda_devices(args.gpu)) > 1:
        raise AllconvError(f"-gpu {args.gpu}: one process per GPU, started by torchrun: "
                           "torchrun --nproc_per_node N $(which allconv-caffe) train -solver "
                           f"{args.solver} -gpu 0 (each process takes its LOCAL_RANK's GPU)")
    if not_process_zero():
        logging.getLogger().setLevel(logging.ERROR)   # as Caffe's, only the root solver logs
    device = said_once(_train_device, args.gpu, args.solver)
    if launched_by_torchrun() and device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    ranks = from_environment(torch.device(device))
    # installed before the nets are built, as caffe.cpp's: a Ctrl-C then is the solver's
    with SignalHandler(args.sigint_effect, args.sighup_effect) as requested_action:
        with warnings.catch_warnings():
            if args.snapshot:       # it replaces the fillers
                warnings.simplefilter("ignore", NoFillerWarning)
            # caffe.cpp: -snapshot clears the solver's weights, -weights replaces them
            solver = make_solver(args.solver, device=device, ranks=ranks, level=args.level,
                                 stages=_stages(args), weights=[] if args.snapshot else (
                                     [args.weights] if args.weights else None))
        solver.action_function = requested_action
        if args.snapshot:
            log.info("Resuming from %s", args.snapshot)
            solver.restore(args.snapshot)
        log.info("Starting Optimization")
        solver.solve()
        log.info("Optimization Done.")
        if solver.requested_early_exit and solver.last_state and ranks.is_main:
            log.info("Stopped at iteration %d; resume from its last snapshot with: %s",
                     solver.iter, _resume_command(args, solver.last_state))
    leave(ranks)


def _resume_command(args, state: str) -> str:
    """The command that continues this training from ``state``: its solver, devices, level
    and stages, under torchrun with as many processes per node where it ran there (a
    multi-node run's rendezvous options, and the log and signal flags, are the user's)."""
    from runtime.distributed import launched_by_torchrun
    words = ["allconv-caffe", "train", "-solver", args.solver]
    for flag in ("gpu", "level", "stage"):
        if getattr(args, flag):
            words += [f"-{flag}", str(getattr(args, flag))]
    command = shlex.join(words + ["-snapshot", state])
    if launched_by_torchrun():
        processes = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        command = (f"torchrun --nproc_per_node {processes} "
                   f"$(which allconv-caffe){command.removeprefix('allconv-caffe')}")
    return command


def _stages(args) -> list[str]:
    """-stage's comma-separated names, as caffe.cpp splits them."""
    return [stage for stage in (args.stage or "").split(",") if stage]


def test(args) -> None:
    """caffe.cpp's test: every element of every output, per batch and averaged, with the
    loss (the weighted sum Forward returns) and each loss output's weighted share; sums and
    means in float, as caffe.cpp keeps them, so a mean and its share print alike."""
    import numpy as np

    from runtime import TEST, Net
    from runtime.solver import loss_share
    _needs(args.model, "Need a model definition to score.")
    _needs(args.weights, "Need model weights to score.")
    device = _device(args.gpu)      # before the net: a -gpu that cannot be is said first
    net = Net(args.model, TEST, weights=args.weights, level=args.level,
              stages=_stages(args)).to(device)
    totals: dict[str, np.ndarray] = {}
    loss = np.float32(0)
    logging.info("Running for %d iterations.", args.iterations)
    with torch.no_grad():
        for i in range(args.iterations):
            outputs = net.forward()
            loss += np.float32(net.last_loss)
            for name, value in outputs.items():
                scores = value.detach().float().flatten().cpu().numpy()
                if name in totals:
                    totals[name] += scores
                else:
                    totals[name] = scores.copy()
                for score in scores.tolist():
                    logging.info("Batch %d, %s = %g", i, name, score)
    count = np.float32(args.iterations)
    logging.info("Loss: %g", loss / count)       # caffe.cpp logs these too
    for name, sums in totals.items():
        weight = net.loss_weight(name)
        for mean in (sums / count).tolist():
            logging.info("%s = %g%s", name, mean, loss_share(weight, mean))


def time_net(args) -> None:
    """caffe time: one untimed forward and backward, then ``-iterations`` timed ones; each
    iteration's time, then per layer and in all, averaged."""
    from runtime import TEST, TRAIN, Net
    from runtime.layer_timer import LayerTimer
    from runtime.layers import describe
    _needs(args.model, "Need a model definition to time.")
    device = _device(args.gpu)
    phase = TEST if args.phase == "TEST" else TRAIN
    net = Net(args.model, phase, level=args.level, stages=_stages(args)).to(device)
    net.retain_blob_diffs = False

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    # the timed loop calls every layer's Backward, needed or not, told which bottoms need a
    # diff: a backward that does what its code says (a Python layer's) runs where the net's
    # backward skips it
    skipped = [layer for layer, need in zip(net.layers, net.layer_need_backward())
               if not need and layer.backward_runs_unreached]

    def forward_backward(timer: LayerTimer) -> tuple[float, float]:
        """One timed pass: (forward, backward) seconds."""
        sync(); t0 = time.perf_counter()
        loss = net.loss()
        sync(); t1 = time.perf_counter()
        if loss.requires_grad:
            loss.backward()
        for layer in skipped:
            begin = time.perf_counter()
            layer.run_backward([None] * len(layer.tops), [False] * len(layer.bottoms))
            timer.backward[layer.name] += time.perf_counter() - begin
        sync(); t2 = time.perf_counter()
        net.clear_param_diffs()
        return t1 - t0, t2 - t1

    logging.info("Performing Forward")
    loss = net.loss()
    logging.info("Initial loss: %g", float(loss.detach()))
    logging.info("Performing Backward")
    net.check_backward()
    if loss.requires_grad:
        loss.backward()
    net.clear_param_diffs()
    logging.info("*** Benchmark begins ***")
    logging.info("Testing for %d iterations.", args.iterations)
    without = [layer for layer in net.layers if not layer.has_backward]
    if without:
        raise AllconvError(f"{describe(without[-1].param)}: Caffe's time runs every layer's "
                           f"Backward, and the {without[-1].type_name} layer has none")
    n, forward, backward, start = args.iterations, 0.0, 0.0, time.perf_counter()
    with LayerTimer(net, sync) as timer:
        for i in range(1, n + 1):
            f, b = forward_backward(timer)
            timer.collect_backward()
            forward, backward = forward + f, backward + b
            logging.info("Iteration: %d forward-backward time: %g ms.", i, 1e3 * (f + b))
    _log_times(timer, n, forward, backward, time.perf_counter() - start)


def _log_times(timer, n: int, forward: float, backward: float, total: float) -> None:
    """caffe time's summary of ``n`` iterations, as caffe.cpp logs it: per layer, then the
    passes' averages (``forward``, ``backward`` and ``total``: seconds in all)."""
    logging.info("Average time per layer: ")
    for name in timer.forward:
        logging.info("%10s\tforward: %g ms.", name, 1e3 * timer.forward[name] / n)
        logging.info("%10s\tbackward: %g ms.", name, 1e3 * timer.backward[name] / n)
    logging.info("Average Forward pass: %g ms.", 1e3 * forward / n)
    logging.info("Average Backward pass: %g ms.", 1e3 * backward / n)
    logging.info("Average Forward-Backward: %g ms.", 1e3 * total / n)
    logging.info("Total Time: %g ms.", 1e3 * total)
    logging.info("*** Benchmark ends ***")


def device_query(args) -> None:
    """caffe device_query: the properties of each -gpu device."""
    _needs(args.gpu, "Need a device ID to query.")
    for device in _cuda_devices(args.gpu):
        props = torch.cuda.get_device_properties(device)
        print(f"Device id:                     {device[5:]}")
        print(f"Name:                          {props.name}")
        print(f"Major revision number:         {props.major}")
        print(f"Minor revision number:         {props.minor}")
        print(f"Total global memory:           {props.total_memory}")
        print(f"Number of multiprocessors:     {props.multi_processor_count}")


def _needs(value, message: str) -> None:
    """caffe.cpp's CHECK that a flag is given (not empty)."""
    if value is None:
        raise AllconvError(message)


def _net_state_help(level: str = "", stages: str = "") -> dict[str, str]:
    """The help of -level and -stage (``level``, ``stages``: what train adds)."""
    return {"level": f"the net state's level, for include/exclude rules (default 0{level})",
            "stage": "the net state's stages, comma-separated, for include/exclude "
                     f"rules{stages}"}


def build_parser() -> Parser:
    p = Parser(prog="allconv-caffe", description="Caffe's command line, run by the allconv "
                                                 "PyTorch runtime with Caffe's semantics.",
               empty_values=True)
    add_version(p, "-version")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    p.commands = sub.choices        # name -> its parser, filled below

    def command(name, run, flags, **texts):
        """A subcommand running ``run`` with gflags ``flags`` ({name: help}), whose epilog of
        examples keeps its lines."""
        parser = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter,
                                empty_values=True, **texts)
        add_flags(parser, flags)
        parser.set_defaults(run=run)

    command("train", train, {
        "solver": "solver prototxt",
        "snapshot": "resume from this .solverstate",
        "weights": "start from these .caffemodel weights (comma-separated), copied into the "
                   "train net and every test net",
        "sigint_effect": "on SIGINT (Ctrl-C), after the current iteration: stop (and "
                         "snapshot, with snapshot_after_train), snapshot and go on, or none "
                         "(default stop)",
        "sighup_effect": "on SIGHUP: as -sigint_effect (default snapshot)",
        "gpu": "GPU id; default: the solver's device_id when it says solver_mode: GPU (the "
               "CPU when CUDA is absent), else the CPU",
        **_net_state_help("; replaces the solver's train_state level",
                          "; added to the solver's train_state stages")},
            help="train a net with a solver prototxt",
            description="Train the solver's net, testing its test nets every "
                        "test_interval, with snapshots as the solver says.",
            epilog="examples:\n  allconv-caffe train -solver solver.prototxt\n"
                   "  allconv-caffe train -solver solver.prototxt -snapshot "
                   "net_iter_1000.solverstate\n"
                   "  allconv-caffe train -solver solver.prototxt -weights "
                   "pretrained.caffemodel -gpu 0")
    command("test", test, {"model": "net prototxt (TEST phase)", "weights": ".caffemodel",
                           "iterations": "batches (default 50)", "gpu": "GPU id; default: CPU",
                           **_net_state_help()},
            help="score a model: every output, per batch and averaged",
            description="Run -iterations TEST-phase batches of a net with trained "
                        "weights; print each output per batch, then averaged.",
            epilog="example:\n  allconv-caffe test -model net.prototxt -weights "
                   "net_iter_1000.caffemodel -iterations 100")
    command("time", time_net, {"model": "net prototxt", "phase": "the net's phase (default "
                               "TRAIN)", "iterations": "batches (default 50)",
                               "gpu": "GPU id; default: CPU", **_net_state_help()},
            help="time forward and backward passes of a net",
            description="Time one untimed and then -iterations forward and backward "
                        "passes; print each iteration and each layer's average.",
            epilog="example:\n  allconv-caffe time -model net.prototxt -iterations "
                   "10 -gpu 0")
    command("device_query", device_query, {"gpu": "GPU id(s), comma-separated, or all"},
            help="show the properties of the -gpu devices",
            description="Print the properties of each -gpu device.")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(as_gflags_reads(argv, parser.commands))
    configure_logging(args)
    try:
        args.run(args)
    except (AllconvError, OSError) as err:
        log_failure(err)
        raise
    return 0


def entry_point() -> None:
    run_command(main, "allconv-caffe")


if __name__ == "__main__":
    entry_point()
