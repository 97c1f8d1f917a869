"""One training run: a reproduction row at one learning rate, in a loop the harness owns.

The generator renders the row's net and solver, each parsed once. The net's NetParameter goes
through the run's transforms (harness/net_transforms.py: its Data layers become Input layers,
which the loop feeds), and one TRAIN `Net` and an evaluation net of the TEST phase sharing its
weights are built from the result; `CaffeSGD` and the `CaffeLR` schedule come from the solver,
and the feed is the loop's own. The rendered texts go to the run folder as they are
(harness/run_folder.py). The loop is airbench-style: the whitened dataset stays on the device,
batches are drawn and augmented there, and the host reads the device only every few seconds
(for the progress bar and the non-finite-loss flag, which every iteration updates on the
device) and at evaluations. Under torchrun each process trains its slice of the global batch
(see runtime/distributed.py). Checkpoints, at every ``checkpoint_every``-th evaluation and at
the end, are Caffe's snapshot (.caffemodel, .solverstate) plus the loop's own .rngstate (the
feed's order and position and the generators, by name), each written atomically.
"""
from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from generator.render import NetOptions, Rendered, SolverOptions, rendered_net, rendered_solver
from runtime.distributed import SINGLE, Ranks
from harness import run_folder
from harness.datasets import Data, ImageFolders, check_trainable, row_data
from harness import datasets
from harness.loop import DeferredInterrupt, Loop, Progress
from harness.metrics import class_metrics, plot_curves
from harness.net_transforms import NetTransform, data_as_input, transformed
from harness.pipelines import PIPELINES
from harness.report import git_commit
from harness.run_folder import RunFolder
from harness.specs import Spec
from runtime import TEST, TRAIN, snapshot
from runtime.cli_support import resolve_device
from runtime.errors import AllconvError
from runtime.lr_policy import CaffeLR
from runtime.net import Net
from runtime.optim import CaffeSGD
from runtime.rng import net_rng_state, set_net_rng_state
from runtime.topk import topk_errors

PRECISIONS = ("auto", "fp32", "tf32", "bf16")
EVAL_BATCH = 500        # test images per forward at 32x32; fewer for larger inputs, same pixels
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


class Prototxt(NamedTuple):
    """A run's prototxt as the generator rendered it, each parsed once: the net (TRAIN and TEST
    Data layers) and solver, and the deploy net's text."""

    net: Rendered
    solver: Rendered
    deploy: str


class Run:
    """One (row, lr): the TRAIN net, an evaluation net sharing its weights, `CaffeSGD` under
    the `CaffeLR` schedule, and the feed; ``step`` trains one iteration of ``ranks.world``
    processes' global batch."""

    def __init__(self, spec: Spec, opts: RunOptions, data: Data | ImageFolders, run_dir: Path,
                 device: torch.device, precision: str, ranks: Ranks = SINGLE):
        self.spec, self.opts, self.folder, self.ranks = spec, opts, RunFolder(run_dir), ranks
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
        self.prototxt = self._render()
        self.solver_param = self.prototxt.solver.param
        if self.solver_param.max_iter < 1:
            raise AllconvError(f"{spec.key}: {self.epochs:g} epochs of {self.data.train_size:,} "
                               f"images is less than one iteration of batch {self.global_batch}")
        shape = self.data.sample_shape
        self.eval_batch = min(max(1, EVAL_BATCH * 32 * 32 // (shape[1] * shape[2])),
                              self.test_size)
        net_param = transformed(self.prototxt.net.param, self.net_transforms())
        self.net = Net(net_param, TRAIN, seed=opts.seed).to(device)
        self.eval_net = Net(net_param, TEST, seed=opts.seed).to(device)
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

    def net_transforms(self) -> list[NetTransform]:
        """The transforms from the rendered net to the one the TRAIN and TEST nets are built
        from (harness/net_transforms.py), in order: each phase's Data layer becomes an Input
        layer of the batch the loop feeds it. A packed run appends its pack here."""
        return [data_as_input({TRAIN: self.batch_size, TEST: self.eval_batch},
                              self.data.sample_shape)]

    def _render(self) -> Prototxt:
        """The row's net, solver and deploy net from the generator, for this run's batch, lr,
        length and run folder."""
        spec, folder = self.spec, self.folder
        net_opts = NetOptions(num_classes=spec.num_classes, batch_size=self.global_batch,
                              test_batch_size=EVAL_BATCH, init=spec.init)
        solver = rendered_solver(spec.variant, net_opts, SolverOptions(
            net_path=str(folder.file(run_folder.NET)), base_lr=self.opts.lr, epochs=self.epochs,
            step_epochs=spec.training.steps, test_every_epochs=self.opts.eval_every,
            snapshot_prefix=str(folder.checkpoint_prefix), seed=self.opts.seed,
            train_size=self.data.train_size))
        deploy = rendered_net(spec.variant, NetOptions(num_classes=spec.num_classes, deploy=True,
                                                       init=spec.init)).text
        return Prototxt(rendered_net(spec.variant, net_opts), solver, deploy)

    def record(self, settings: dict) -> None:
        """Write the run folder's record: run.json (``settings`` and the provenance) and the
        prototxt as rendered."""
        spec, opts = self.spec, self.opts
        whitened = PIPELINES[spec.augmentation].whitened
        provenance = run_folder.provenance(
            commit=git_commit(), variant=spec.variant.name, dataset=spec.dataset.name,
            classes=self.data.classes,
            whitening=run_folder.whitening_identity(spec.dataset.name, opts.data_dir,
                                                    opts.verify) if whitened else None)
        self.folder.write_record(settings, provenance, net=self.prototxt.net.text,
                                 solver=self.prototxt.solver.text, deploy=self.prototxt.deploy)

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
        _, solver_state = snapshot.write(self.folder.checkpoint_prefix, self.net, self.optimizer,
                                         self.schedule, state)
        self.folder.prune_checkpoints(self.iter)
        return Path(solver_state)

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
    folder = RunFolder(run_dir)
    settings = run_folder.settings(spec, opts, precision, ranks.world)
    resumed = folder.start(settings, opts.resume) if ranks.is_main else opts.resume
    ranks.barrier()
    if resumed and folder.result() is not None:
        return folder.result()
    run = Run(spec, opts, data or load_data(spec, opts, device), run_dir, device, precision,
              ranks)
    if ranks.is_main:
        run.record(settings)
    state = folder.latest_checkpoint() if resumed else None
    if state is not None:
        run.restore(state)
    log = folder.metrics if ranks.is_main else None
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
    plot_curves(log.records(), folder.file(run_folder.CURVES),
                f"{spec.title} ({spec.key}), lr {opts.lr:g}" + (" - SMOKE RUN" if run.smoke else ""),
                spec.paper.error, spec.paper.tolerance)
    result = _result(run, last, precision, device, run.data.classes)
    folder.write_result(result)
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
        "run_dir": str(run.folder.path),
    }
