"""One training run: a reproduction row at one learning rate, in a loop the harness owns.

The generator writes the row's net and solver prototxt. The loop builds one TRAIN `Net` from
the net (its Data layers turned into Input layers: the loop feeds them), an evaluation net of
the TEST phase sharing its weights, `CaffeSGD` and the `CaffeLR` schedule from the solver, and
its own feed. It is airbench-style: the whitened dataset stays on the device, batches are drawn
and augmented there, and the host reads the device only every few seconds (for the progress
bar and the non-finite-loss flag, which every iteration updates on the device) and at
evaluations. Under torchrun each process trains its slice of the global batch (see
runtime/distributed.py). Checkpoints, at every ``checkpoint_every``-th evaluation and at the
end, are Caffe's snapshot (.caffemodel, .solverstate) plus the loop's own .rngstate (the feed's
order and position and the generators, by name), each written atomically.
"""
from __future__ import annotations

import json
import re
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from generator.render import NetOptions, SolverOptions, render_net, render_solver
from runtime.distributed import SINGLE, Ranks
from harness.datasets import Data, ImageFolders, check_trainable, row_data
from harness import datasets
from harness.loop import DeferredInterrupt, Loop, Progress
from harness.metrics import MetricsLog, class_metrics, plot_curves
from harness.run_files import record_run_files, run_settings
from harness.specs import Spec
from runtime import TEST, TRAIN, snapshot
from runtime.errors import AllconvError
from runtime.lr_policy import CaffeLR
from runtime.net import Net
from runtime.optim import CaffeSGD
from runtime.prototxt import read_net, read_solver
from runtime.proto import pb
from runtime.rng import net_rng_state, set_net_rng_state
from runtime.topk import topk_errors

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
EVAL_BATCH = 500        # test images per forward at 32x32; fewer for larger inputs, same pixels
CHECKPOINT = "checkpoint"
STATE_FORMAT = "allconv-harness-state-1"


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
    batch_per_process: bool = False
    batch_size: int | None = None
    eval_limit: int | None = None


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


def load_data(spec: Spec, opts: RunOptions, device: torch.device) -> Data | ImageFolders:
    """The data the row trains on (harness/datasets.py)."""
    return datasets.load_data(spec, opts.data_dir, opts.verify, device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def input_net(net_param, phase: int, batch: int, sample_shape) -> "pb.NetParameter":
    """The net with each Data layer of ``phase`` turned into an Input layer of ``batch``
    samples (and labels): the loop feeds the tops itself, so no source is ever opened."""
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    out.state.phase = phase
    for layer in out.layer:
        if layer.type != "Data":
            continue
        layer.type = "Input"
        for field in ("data_param", "transform_param"):
            layer.ClearField(field)
        shapes = [(batch, *sample_shape), (batch,)][:len(layer.top)]
        for shape in shapes:
            layer.input_param.shape.add().dim.extend(shape)
    return out


class Run:
    """One (row, lr): the TRAIN net, an evaluation net sharing its weights, `CaffeSGD` under
    the `CaffeLR` schedule, and the feed; ``step`` trains one iteration of ``ranks.world``
    processes' global batch."""

    def __init__(self, spec: Spec, opts: RunOptions, data: Data | ImageFolders, run_dir: Path,
                 device: torch.device, precision: str, ranks: Ranks = SINGLE):
        self.spec, self.opts, self.dir, self.ranks = spec, opts, run_dir, ranks
        self.data = row_data(spec, data, device)
        self.epochs = opts.epochs or spec.epochs
        self.smoke = spec.is_smoke(opts.epochs, opts.batch_size, opts.eval_limit)
        self.test_size = min(self.data.test_size, opts.eval_limit or self.data.test_size)
        self.global_batch = (opts.batch_size or spec.training.batch_size) * (
            ranks.world if opts.batch_per_process else 1)
        if self.global_batch % ranks.world:
            raise AllconvError(f"the batch of {self.global_batch} does not split into "
                               f"{ranks.world} processes; use --batch-per-process")
        self.batch_size = self.global_batch // ranks.world
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else nullcontext())
        net_param, self.solver_param = self._prototxt()
        if self.solver_param.max_iter < 1:
            raise AllconvError(f"{spec.key}: {self.epochs:g} epochs of {self.data.train_size:,} "
                               f"images is less than one iteration of batch {self.global_batch}")
        shape = self.data.sample_shape
        self.net = Net(input_net(net_param, TRAIN, self.batch_size, shape), TRAIN,
                       seed=opts.seed).to(device)
        self.eval_batch = min(max(1, EVAL_BATCH * 32 * 32 // (shape[1] * shape[2])),
                              self.test_size)
        self.eval_net = Net(input_net(net_param, TEST, self.eval_batch, shape), TEST,
                            seed=opts.seed).to(device)
        self.net.retain_blob_diffs = False
        self.memory_format = torch.channels_last if opts.channels_last else torch.preserve_format
        if opts.channels_last:
            self.net.to(memory_format=self.memory_format)
        self.eval_net.share_trained_layers_with(self.net)   # it always sees the trained weights
        # Keyed masks (the same for any number of processes) in eager mode only: a compiled
        # Dropout draws from the default generator, so there nothing is keyed each step.
        compiled = opts.compile or opts.cuda_graphs
        self.dropouts = [] if compiled else [l for l in self.net.layers
                                             if hasattr(l, "key_masks")]
        self.scores = next(l.param.bottom[0] for l in self.eval_net.layers
                           if l.param.type == "SoftmaxWithLoss")
        self.optimizer = CaffeSGD.from_solver(self.solver_param, self.net)
        self.schedule = CaffeLR(self.optimizer, self.solver_param)
        self.feed = self.data.feed(opts.seed)
        self.loss = ranks.wrap(LossOf(self.net))
        if opts.compile or opts.cuda_graphs:
            self.loss = torch.compile(self.loss,
                                      mode="reduce-overhead" if opts.cuda_graphs else None)
        self.rate = float("nan")

    def _prototxt(self):
        """The row's net (TRAIN and TEST Data layers) and solver from the generator, written
        to the run folder for the record; returns both parsed."""
        spec = self.spec
        net_opts = NetOptions(num_classes=spec.num_classes, batch_size=self.global_batch,
                              test_batch_size=EVAL_BATCH, init=spec.init)
        net_path, solver_path = self.dir / "train_test.prototxt", self.dir / "solver.prototxt"
        net_text = render_net(spec.variant, net_opts)
        solver_text = render_solver(spec.variant, net_opts, SolverOptions(
            net_path=str(net_path), base_lr=self.opts.lr, epochs=self.epochs,
            step_epochs=spec.training.steps, test_every_epochs=self.opts.eval_every,
            snapshot_prefix=str(self.dir / CHECKPOINT), seed=self.opts.seed,
            train_size=self.data.train_size))
        if self.ranks.is_main:
            net_path.write_text(net_text)
            solver_path.write_text(solver_text)
        return read_net(net_text), read_solver(solver_text)

    @property
    def iter(self) -> int:
        return self.schedule.last_epoch

    @property
    def max_iter(self) -> int:
        return self.solver_param.max_iter

    @property
    def epoch(self) -> float:
        return self.iter * self.global_batch / self.data.train_size

    def step(self) -> torch.Tensor:
        """One Caffe iteration on this process's slice of the next global batch: forward,
        backward (gradients averaged over the processes), Caffe's update; returns the global
        batch's mean loss as seen by this process (its slice's, averaged by the caller)."""
        self.optimizer.zero_grad()
        if self.opts.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()   # the last step's graph outputs are done
        part = self.ranks.part(self.global_batch)
        for layer in self.dropouts:
            layer.key_masks(self.iter, part.start, self.global_batch)
        data, label = self.feed(self.global_batch, part)
        with self.autocast:
            loss = self.loss(data.contiguous(memory_format=self.memory_format), label)
        loss.backward()
        self.rate = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.schedule.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, progress=None) -> dict:
        """Test loss, class_metrics and the dataset's top-k errors over the test set (its first
        ``eval_limit`` images), with the TEST-phase net; ``progress(done, total)`` is called
        after each batch."""
        scores, labels, loss, done = [], [], 0.0, 0
        for x, y in self.data.test_batches(self.eval_batch, self.test_size):
            with self.autocast:   # the batch as given: no copy into Input buffers, any size
                out = self.eval_net.blob_values(
                    data=x.contiguous(memory_format=self.memory_format), label=y)
            loss += out["loss"].float() * len(x)
            scores.append(out[self.scores].float().reshape(len(x), -1))
            labels.append(y)
            done += len(x)
            if progress is not None:
                progress(done, self.test_size)
        scores, labels = torch.cat(scores), torch.cat(labels)
        metrics = class_metrics(scores, labels)
        wider = [k for k in self.data.topk if k > 1]   # top-1 is class_metrics' error
        topk = ({f"top{k}_error": e for k, e in topk_errors(scores, labels, wider).items()}
                if wider else {})
        return {"test_loss": float(loss) / done, "test_error": metrics.pop("error"), **topk,
                **metrics}

    def checkpoint(self) -> Path:
        """Caffe's snapshot (.caffemodel, .solverstate) and the loop's own state (.rngstate:
        the feed's order and position, the dropout and torch generators, by name), each
        written atomically; older checkpoints are deleted. Returns the .solverstate."""
        state = {"format": STATE_FORMAT, "iter": self.iter, "feed": self.feed.state_dict(),
                 "dropout": net_rng_state(self.net), **snapshot.torch_rng_state()}
        _, solver_state = snapshot.write(self.dir / CHECKPOINT, self.net, self.optimizer,
                                         self.schedule, state)
        for path in self.dir.glob(f"{CHECKPOINT}_iter_*"):
            if _snapshot_iter(path) != self.iter:
                path.unlink()
        return Path(solver_state)

    def latest_checkpoint(self) -> Path | None:
        states = sorted(self.dir.glob(f"{CHECKPOINT}_iter_*.solverstate"), key=_snapshot_iter)
        return states[-1] if states else None

    def restore(self, path: Path) -> None:
        """Continue from a `checkpoint`: weights, momentum, iteration, lr position, feed and
        generators."""
        # the .caffemodel beside it, not learned_net: a copied run folder resumes its own
        snapshot.restore(path, self.net, self.optimizer, self.schedule,
                         weights=snapshot.sibling(path, ".caffemodel"))
        rng_path = snapshot.sibling(path, ".rngstate")
        state = snapshot.read_rng_state(rng_path)
        if state.get("format") != STATE_FORMAT or state.get("iter") != self.iter:
            raise AllconvError(f"{rng_path}: not the loop state of {path} (format "
                               f"{state.get('format')!r}, iteration {state.get('iter')})")
        self.feed.load_state_dict(state["feed"])
        set_net_rng_state(self.net, state["dropout"], rng_path)
        snapshot.set_torch_rng_state(state)


class LossOf(torch.nn.Module):
    """``net.loss`` as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, net: Net):
        super().__init__()
        self.net = net

    def forward(self, data: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.net.loss(data=data, label=label)


def _snapshot_iter(path: Path) -> int:
    return int(re.search(r"_iter_(\d+)\.", path.name).group(1))


def run_config(spec: Spec, opts: RunOptions, precision: str, ranks: Ranks = SINGLE) -> dict:
    """What a checkpoint must have been made with to be resumed."""
    return {"row": spec.key, "lr": opts.lr, "epochs": opts.epochs or spec.training.length,
            "seed": opts.seed, "precision": precision,
            "batch_size": opts.batch_size or spec.training.batch_size,
            "eval_limit": opts.eval_limit,
            "eval_every": opts.eval_every, "checkpoint_every": opts.checkpoint_every,
            "processes": ranks.world, "batch_per_process": opts.batch_per_process,
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


def train(spec: Spec, opts: RunOptions, run_dir: Path, data: Data | None = None,
          ranks: Ranks = SINGLE) -> dict:
    """Train ``spec`` at ``opts.lr`` in ``run_dir`` and return the run's result. ``finished`` is
    False when ``time_limit`` stopped it (``resume`` continues it); Diverged at the first
    non-finite loss; KeyboardInterrupt after checkpointing on Ctrl-C."""
    if data is None:
        check_trainable(spec, opts.data_dir)
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    set_precision(precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    config = run_config(spec, opts, precision, ranks)
    resumed = prepare_dir(run_dir, config, opts.resume) if ranks.is_main else opts.resume
    ranks.barrier()
    if resumed and (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    if ranks.is_main:
        record_run_files(run_dir, spec, opts)
    run = Run(spec, opts, data or load_data(spec, opts, device), run_dir, device, precision,
              ranks)
    state = run.latest_checkpoint() if resumed else None
    if state is not None:
        run.restore(state)
    log = MetricsLog(run_dir / "metrics.jsonl") if ranks.is_main else None
    records = log.truncate(run.iter) if log else []
    last = records[-1] if records else {"seconds": 0.0}
    evaluations = sum("test_error" in r for r in records)
    with DeferredInterrupt(), Progress(run, opts, ranks, last) as bar:
        loop = Loop(run, log, bar, done_before=last["seconds"])
        if DeferredInterrupt.consume():
            raise KeyboardInterrupt   # stopped before its first iteration: nothing to save
        while run.iter < run.max_iter:
            loop.step()
            evaluate = run.iter % run.solver_param.test_interval == 0 or run.iter == run.max_iter
            due = loop.sync_due(evaluate)
            if interrupted(ranks, due):
                if ranks.is_main:
                    bar.write(f"{bar.label}: interrupted; checkpoint {run.checkpoint()} "
                              "written, --resume continues from it")
                ranks.barrier()
                raise KeyboardInterrupt
            if not due:
                continue
            loop.sync(evaluate)
            if not evaluate:
                continue
            last = loop.evaluate()
            evaluations += 1
            if evaluations % opts.checkpoint_every == 0 or run.iter == run.max_iter:
                if ranks.is_main:
                    run.checkpoint()
                ranks.barrier()
                out_of_time = opts.time_limit is not None and last["seconds"] >= opts.time_limit
                if ranks.any(out_of_time) and run.iter < run.max_iter:
                    return {"finished": False, "iter": run.iter, "epoch": run.epoch,
                            "run_dir": str(run_dir)}
    if not ranks.is_main:
        return {"finished": True, "rank": ranks.rank}
    plot_curves(log.records(), run_dir / "curves.png",
                f"{spec.title} ({spec.key}), lr {opts.lr:g}" + (" - SMOKE RUN" if run.smoke else ""),
                spec.paper.error, spec.paper.tolerance)
    result = _result(run, last, precision, device, run.data.classes)
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def interrupted(ranks: Ranks, synced: bool) -> bool:
    """Ctrl-C was pressed: after this iteration alone, or under torchrun at the next
    iteration where the ranks sync anyway, all of them together (one rank stopping alone
    would leave the others waiting in the next all-reduce)."""
    if ranks.world == 1:
        return DeferredInterrupt.consume()
    if not synced:
        return False
    stop = ranks.any(DeferredInterrupt.requested)
    if stop:
        DeferredInterrupt.consume()
    return stop


def _result(run: Run, last: dict, precision: str, device: torch.device, names) -> dict:
    opts = run.opts
    return {
        "finished": True, "row": run.spec.key, "lr": opts.lr, "smoke": run.smoke,
        "epochs": run.epochs, "iterations": run.iter, "batch_size": run.global_batch,
        "processes": run.ranks.world,
        "seed": opts.seed, "precision": precision,
        "options": {k: getattr(opts, k) for k in ("compile", "cuda_graphs", "channels_last")},
        "device": device_name(device), "torch": torch.__version__,
        "wall_seconds": last["seconds"], "test_error": last["test_error"],
        **{k: v for k, v in last.items() if re.fullmatch(r"top\d+_error", k)},
        "test_loss": last["test_loss"], "per_class_accuracy": dict(zip(names, last["per_class"])),
        "never_predicted": [names[c] for c in last["never_predicted"]],
        "dead_class_units": [names[c] for c in last["dead_units"]],
        "params_counted": sum(p.numel() for p in run.net.learnable_params),
        "train_size": run.data.train_size, "test_size": run.test_size,
        "run_dir": str(run.dir),
    }
