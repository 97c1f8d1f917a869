"""One training run: a reproduction row at one learning rate, trained through the runtime.

The generator writes the row's net and solver prototxt; the runtime's SGDSolver builds the TRAIN
and TEST nets from them and applies Caffe's update with the lr of Caffe's policy. The loop is
airbench-style: the whitened dataset stays on the device, batches are drawn and augmented there,
and the host waits for the device only every ``display`` iterations (the solver's) and at
evaluations. Checkpoints, at every ``checkpoint_every``-th evaluation and at the end, are the
solver's Caffe snapshots (.caffemodel, .solverstate, .rngstate, each written atomically); the
.rngstate holds the generators and the feed's data order.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from generator.render import NetOptions, SolverOptions, render_net, render_solver
from harness.feed import TrainFeed
from harness.metrics import MetricsLog, class_metrics, plot_curves
from harness.run_files import record_run_files, run_settings
from harness.specs import Spec
from runtime.data import prepared_cifar
from runtime.data.cifar import class_names
from runtime.data.source import Source
from runtime.errors import AllconvError
from runtime.solver import SGDSolver

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
EVAL_BATCH = 500
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class RunOptions:
    """How to run a row; ``epochs`` below the spec's length makes a smoke run."""

    lr: float
    epochs: float | None = None
    precision: str = "auto"
    device: str | None = None
    seed: int = 0
    eval_every: float = 1.0
    checkpoint_every: int = 10
    data_dir: str | None = None
    verify: bool = True
    resume: bool = False
    time_limit: float | None = None
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False
    progress: bool = True
    position: int = 0


class Diverged(AllconvError):
    """The training loss became NaN or infinite."""


class Data(NamedTuple):
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_device(name: str | None) -> torch.device:
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AllconvError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA and fp32 on the CPU; tf32 needs CUDA."""
    if precision not in PRECISIONS:
        raise AllconvError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "tf32" and device.type != "cuda":
        raise AllconvError("precision tf32 needs a CUDA device")
    return precision


def set_precision(precision: str) -> None:
    """fp32 turns TF32 off for convolutions and matmuls (PyTorch allows it in cuDNN convs by
    default); tf32 turns it on; bf16 runs under autocast with fp32 weights and updates."""
    mode = "tf32" if precision == "tf32" else "ieee"
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cuda.matmul.fp32_precision = mode


def check_trainable(spec: Spec) -> None:
    """The harness trains the CIFAR rows with no or flip-and-translate augmentation."""
    if spec.dataset not in ("cifar10", "cifar100"):
        raise AllconvError(f"{spec.key}: the harness trains CIFAR only, not {spec.dataset}")
    if spec.augmentation not in ("none", "flip-translate"):
        raise AllconvError(f"{spec.key}: augmentation {spec.augmentation!r} is not implemented "
                           "(the harness does flips and translations of at most 5 px)")


def load_data(spec: Spec, opts: RunOptions, device: torch.device) -> Data:
    """The GCN+ZCA whitened dataset, cached on disk by runtime.data, moved to ``device``."""
    prepared = prepared_cifar(spec.dataset, opts.data_dir, device=device, verify=opts.verify)
    return Data(*(torch.from_numpy(a).to(device) for a in prepared[:4]))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


class Run:
    """A row's nets, solver and feed for one lr; ``step`` trains one iteration."""

    def __init__(self, spec: Spec, opts: RunOptions, data: Data, run_dir: Path,
                 device: torch.device, precision: str):
        self.spec, self.opts, self.data, self.dir = spec, opts, data, run_dir
        self.epochs = opts.epochs or spec.training.length
        self.smoke = spec.is_smoke(opts.epochs)
        self.batch_size = spec.training.batch_size
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else nullcontext())
        self.feed = TrainFeed(data.train_images, data.train_labels,
                              spec.augmentation == "flip-translate", opts.seed)
        self.solver = SGDSolver(self._write_prototxt(), device=device, train_feed=self.feed,
                                test_feeds=Source(data.test_images, data.test_labels))
        self.net, self.test_net = self.solver.net, self.solver.test_nets[0]
        self.net.retain_blob_diffs = False
        self.scores = next(l.param.bottom[0] for l in self.test_net.layers
                           if l.param.type == "SoftmaxWithLoss")
        self.memory_format = torch.preserve_format
        if opts.channels_last:
            self.memory_format = torch.channels_last
            self.net.to(memory_format=self.memory_format)
            self.test_net.to(memory_format=self.memory_format)
        self.loss = self.net.loss
        if opts.compile or opts.cuda_graphs:
            self.loss = torch.compile(self.net.loss,
                                      mode="reduce-overhead" if opts.cuda_graphs else None)
        self.rate = float("nan")

    def _write_prototxt(self) -> Path:
        """Net and solver prototxt of the row from the generator; the Data layers' sources are
        never opened, since the feeds serve the device-resident data."""
        spec = self.spec
        net_opts = NetOptions(num_classes=spec.num_classes, batch_size=self.batch_size,
                              test_batch_size=EVAL_BATCH, init=spec.init)
        net_path, solver_path = self.dir / "train_test.prototxt", self.dir / "solver.prototxt"
        net_path.write_text(render_net(spec.variant, net_opts))
        solver_path.write_text(render_solver(spec.variant, net_opts, SolverOptions(
            net_path=str(net_path), base_lr=self.opts.lr, epochs=self.epochs,
            step_epochs=spec.training.steps, test_every_epochs=self.opts.eval_every,
            snapshot_prefix=str(self.dir / CHECKPOINT), seed=self.opts.seed,
            train_size=len(self.data.train_images))))
        return solver_path

    @property
    def iter(self) -> int:
        return self.solver.iter

    @property
    def epoch(self) -> float:
        return self.iter * self.batch_size / len(self.data.train_images)

    def step(self) -> torch.Tensor:
        """One Caffe iteration: clear diffs, forward/backward on the feed's next batch, update.
        The batch comes from the Data layer's feed and is passed as its tops, which keeps the
        Python sampler out of a compiled graph."""
        self.net.clear_param_diffs()
        if self.opts.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()   # the last step's graph outputs are done
        data, label = self.feed(self.batch_size)
        with self.autocast:
            loss = self.loss(data=data.contiguous(memory_format=self.memory_format), label=label)
        loss.backward()
        self.rate = self.solver.update()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Test loss and class_metrics over the whole test set, with the TEST-phase net."""
        for name, blobs in self.test_net.params.items():
            for mine, trained in zip(blobs, self.net.params[name]):
                mine.data.copy_(trained.data)
        images, labels = self.data.test_images, self.data.test_labels
        scores, loss = [], 0.0
        for start in range(0, len(images), EVAL_BATCH):
            x, y = images[start:start + EVAL_BATCH], labels[start:start + EVAL_BATCH]
            with self.autocast:
                out = self.test_net.forward(data=x.contiguous(memory_format=self.memory_format),
                                            label=y)
            loss += out["loss"].float() * len(x)
            scores.append(self.test_net.blobs[self.scores].data.float().reshape(len(x), -1))
        metrics = class_metrics(torch.cat(scores), labels)
        return {"test_loss": float(loss) / len(images), "test_error": metrics.pop("error"),
                **metrics}

    def checkpoint(self) -> Path:
        """Snapshot the solver (about 70 ms for All-CNN-C), then delete older snapshots;
        returns the .solverstate."""
        _, state = self.solver.snapshot()
        for path in self.dir.glob(f"{CHECKPOINT}_iter_*"):
            if _snapshot_iter(path) != self.iter:
                path.unlink()
        return Path(state)

    def latest_checkpoint(self) -> Path | None:
        states = sorted(self.dir.glob(f"{CHECKPOINT}_iter_*.solverstate"), key=_snapshot_iter)
        return states[-1] if states else None

    def restore(self, state: Path) -> None:
        self.solver.restore(state)


class DeferredInterrupt:
    """Holds Ctrl-C (SIGINT) until the current iteration has finished, so that the weights,
    momentum and data order a checkpoint saves belong to one iteration. Main thread only."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._active:
            signal.signal(signal.SIGINT, self._previous)


def _snapshot_iter(path: Path) -> int:
    return int(re.search(r"_iter_(\d+)\.", path.name).group(1))


def run_config(spec: Spec, opts: RunOptions, precision: str) -> dict:
    """What a checkpoint must have been made with to be resumed."""
    return {"row": spec.key, "lr": opts.lr, "epochs": opts.epochs or spec.training.length,
            "seed": opts.seed, "precision": precision, "batch_size": spec.training.batch_size,
            "eval_every": opts.eval_every, "checkpoint_every": opts.checkpoint_every,
            "spec": spec.path.read_text()}


def prepare_dir(run_dir: Path, config: dict, resume: bool) -> bool:
    """Make ``run_dir``; with ``resume`` keep it if its config matches (True), else empty it."""
    config_path = run_dir / "run.json"
    if resume and config_path.is_file():
        old = run_settings(json.loads(config_path.read_text()))
        if old != config:
            changed = ", ".join(k for k in config if old.get(k) != config[k])
            raise AllconvError(f"cannot resume {run_dir}: it was started with other settings "
                               f"({changed}); drop --resume to start again")
        return True
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config_path.write_text(json.dumps(config, indent=1))
    return False


def train(spec: Spec, opts: RunOptions, run_dir: Path, data: Data | None = None) -> dict:
    """Train ``spec`` at ``opts.lr`` in ``run_dir`` and return the run's result. ``finished`` is
    False when ``time_limit`` stopped it (``resume`` continues it); Diverged on a NaN/inf loss."""
    check_trainable(spec)
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    set_precision(precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    resumed = prepare_dir(run_dir, run_config(spec, opts, precision), opts.resume)
    if resumed and (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    record_run_files(run_dir, spec, opts)
    run = Run(spec, opts, data or load_data(spec, opts, device), run_dir, device, precision)
    state = run.latest_checkpoint() if resumed else None
    if state is not None:
        run.restore(state)
    log = MetricsLog(run_dir / "metrics.jsonl")
    records = log.truncate(run.iter)
    last = records[-1] if records else {"seconds": 0.0}
    evaluations = sum("test_error" in r for r in records)
    label = f"{spec.key} lr {opts.lr:g}" + (" SMOKE" if run.smoke else "")
    names = class_names(spec.dataset)
    param = run.solver.param
    loss_sum, loss_count = torch.zeros((), device=device), 0
    start, done_before = time.perf_counter(), last["seconds"]
    tick, tick_iter = start, run.iter
    with DeferredInterrupt() as interrupt, tqdm(
            total=param.max_iter, initial=run.iter, desc=label, unit="it",
            position=opts.position, disable=not opts.progress, dynamic_ncols=True) as bar:
        while run.iter < param.max_iter:
            loss_sum += run.step()
            loss_count += 1
            if interrupt.requested:
                tqdm.write(f"{label}: interrupted; checkpoint {run.checkpoint()} written, "
                           "--resume continues from it", file=sys.stderr)
                raise KeyboardInterrupt
            evaluate = run.iter % param.test_interval == 0 or run.iter == param.max_iter
            if not (evaluate or run.iter % param.display == 0):
                continue
            train_loss = loss_sum.item() / loss_count
            images_per_s = (run.iter - tick_iter) * run.batch_size / (time.perf_counter() - tick)
            bar.update(run.iter - bar.n)
            bar.set_postfix_str(f"loss {train_loss:.4f} test acc "
                                f"{100 - last.get('test_error', 100):.2f}% "
                                f"{images_per_s:,.0f} img/s")
            if not math.isfinite(train_loss):
                _diverged(run, log, train_loss)
            if not evaluate:
                continue
            metrics = run.evaluate()
            if not math.isfinite(metrics["test_loss"]):
                _diverged(run, log, metrics["test_loss"])
            last = {"iter": run.iter, "epoch": round(run.epoch, 4), "lr": run.rate,
                    "train_loss": train_loss, **metrics,
                    "seconds": round(done_before + time.perf_counter() - start, 3),
                    "images_per_s": round(images_per_s, 1), "smoke": run.smoke}
            log.write(last)
            evaluations += 1
            if metrics["never_predicted"]:
                tqdm.write(f"warning: {label}, epoch {run.epoch:.2f}: classes never predicted: "
                           + ", ".join(names[c] for c in metrics["never_predicted"]),
                           file=sys.stderr)
            loss_sum.zero_()
            loss_count = 0
            if evaluations % opts.checkpoint_every == 0 or run.iter == param.max_iter:
                run.checkpoint()
                if opts.time_limit is not None and last["seconds"] >= opts.time_limit \
                        and run.iter < param.max_iter:
                    return {"finished": False, "iter": run.iter, "epoch": run.epoch,
                            "run_dir": str(run_dir)}
            tick, tick_iter = time.perf_counter(), run.iter
    plot_curves(log.records(), run_dir / "curves.png",
                f"{spec.title} ({spec.key}), lr {opts.lr:g}" + (" - SMOKE RUN" if run.smoke else ""),
                spec.paper.error, spec.paper.tolerance)
    result = _result(run, last, precision, device, names)
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _result(run: Run, last: dict, precision: str, device: torch.device, names) -> dict:
    opts = run.opts
    return {
        "finished": True, "row": run.spec.key, "lr": opts.lr, "smoke": run.smoke,
        "epochs": run.epochs, "iterations": run.iter, "batch_size": run.batch_size,
        "seed": opts.seed, "precision": precision,
        "options": {k: getattr(opts, k) for k in ("compile", "cuda_graphs", "channels_last")},
        "device": device_name(device), "torch": torch.__version__,
        "wall_seconds": last["seconds"], "test_error": last["test_error"],
        "test_loss": last["test_loss"], "per_class_accuracy": dict(zip(names, last["per_class"])),
        "never_predicted": [names[c] for c in last["never_predicted"]],
        "dead_class_units": [names[c] for c in last["dead_units"]],
        "params_counted": sum(p.numel() for p in run.net.learnable_params),
        "train_size": len(run.data.train_images), "test_size": len(run.data.test_images),
        "run_dir": str(run.dir),
    }


def _diverged(run: Run, log: MetricsLog, loss: float) -> None:
    log.write({"iter": run.iter, "epoch": round(run.epoch, 4), "event": "diverged",
               "loss": str(loss), "smoke": run.smoke})
    state = run.latest_checkpoint()
    kept = (f"the last good checkpoint is {state} (iteration {_snapshot_iter(state)})"
            if state else "no checkpoint had been written yet")
    raise Diverged(f"{run.spec.key} at lr {run.opts.lr:g} diverged at iteration {run.iter} "
                   f"(epoch {run.epoch:.2f}): the loss is {loss}; {kept}; try a smaller lr")
