"""A run of a reproduction row in the harness's loop: `Run` holds K runs of one row (K = 1: a
solo run; K > 1: a pack, issue 20) trained as one net, and what each step, evaluation and
checkpoint does; harness/train.py drives it.

The generator renders the row's net once and each run's solver, each parsed once. The net's
NetParameter goes through the run's transforms (harness/net_transforms.py: its Data layers
become Input layers, which the loop feeds); a pack of K > 1 runs is then `runtime.pack`'s
packed net, whose member k starts from the weights and Dropout seeds of the solo ``Net(seed_k)``
and reads its own `TrainFeed(seed_k)`. One TRAIN `Net`, a TEST net sharing its weights,
`CaffeSGD` (one rate per member) under the `CaffeLR` schedule (each member's base lr), and the
feeds make the run. A member whose loss becomes NaN or infinite stops alone: its update becomes
zero on the device in the same step.

Each member checkpoints into its own run folder in the solo format (harness/run_folder.py): its
slice of the weights and momentum (.caffemodel, .solverstate) and its own random state
(.rngstate: its feed's order and position, its Dropout generators, torch's), each written
atomically, so a member resumes, exports and visualizes as a solo run. The step's device work
is `Run.update`, run eagerly or as one CUDA graph (harness/step.py).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from generator.render import NetOptions, Rendered, SolverOptions, rendered_net, rendered_solver
from runtime.distributed import SINGLE, Ranks, not_process_zero
from harness import datasets, run_folder
from harness.commit import git_commit
from harness.datasets import Data, ImageFolders, row_data
from harness.evaluation import Evaluator
from harness.net_transforms import NetTransform, data_as_input, transformed
from harness.run_folder import RunFolder, check_named_iteration
from harness.specs import Spec
from harness.step import TrainStep
from runtime import TEST, TRAIN, snapshot
from runtime.data import cifar
from runtime.errors import AllconvError
from runtime.files import written_together
from runtime.labels import defer_label_checks
from runtime.lr_policy import CaffeLR
from runtime.net import Net
from runtime.optim import CaffeSGD
from runtime.optim.base import fp32
from runtime.pack import Member, pack_inputs, pack_net, packed_net
from runtime.rng import net_rng_state, set_net_rng_state

PRECISIONS = ("auto",) + run_folder.RECORDED_PRECISIONS
EVAL_BATCH = 500        # test images per forward at 32x32; fewer for larger inputs, same pixels
CIFAR_PIXELS = cifar.IMAGE_SHAPE[1] * cifar.IMAGE_SHAPE[2]
MEMBER_FIELDS = ("lr", "seed", "lr_from")   # what may differ between the runs of a pack


@dataclass(frozen=True)
class RunOptions:
    """How to run a row; ``epochs`` other than the spec's length makes a smoke run. ``lr_from``
    records how the lr was chosen; ``deadline`` is a `time.monotonic()` time by which the run
    stops at a checkpoint."""

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
    deadline: float | None = None
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False
    progress: bool = True
    position: int = 0
    batch_per_process: bool = False
    batch_size: int | None = None
    eval_limit: int | None = None
    lr_from: str = "spec"
    pack_route: str = "grouped"


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


def run_data(spec: Spec, opts: RunOptions, device: torch.device) -> Data | ImageFolders:
    """The data the row trains on (harness/datasets.py); the whitening's stage bar as the
    progress bars go (--no-progress, torchrun's process 0 only)."""
    return datasets.load_data(spec, opts.data_dir, opts.verify, device,
                              progress=opts.progress and not not_process_zero())


def device_name(device: torch.device, processes: int = 1) -> str:
    """The device as the row tables name it: the GPU's name, or the CPU and its threads; then
    the processes that shared the run, when more than one (torchrun)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        name = f"CPU ({threads} thread{'s' if threads != 1 else ''})"
    return name + (f" × {processes} processes" if processes > 1 else "")


def net_options(spec: Spec, global_batch: int) -> NetOptions:
    """The row's training net at ``global_batch``."""
    return NetOptions(num_classes=spec.num_classes, batch_size=global_batch,
                      test_batch_size=EVAL_BATCH, init=spec.init)


def solver(spec: Spec, opts: RunOptions, global_batch: int, train_size: int,
           folder: RunFolder | None = None) -> Rendered:
    """The solver of ``spec`` run with ``opts`` at ``global_batch`` over ``train_size``
    images, its paths in ``folder`` (None: none, to read its counts before any folder)."""
    return rendered_solver(spec.variant, net_options(spec, global_batch), SolverOptions(
        net_path=str(folder.file(run_folder.NET)) if folder else "", base_lr=opts.lr,
        epochs=opts.epochs or spec.epochs,
        test_every_epochs=opts.eval_every,
        snapshot_prefix=str(folder.checkpoint_prefix) if folder else "", seed=opts.seed,
        train_size=train_size))


def global_batch(spec: Spec, opts: RunOptions, world: int = 1) -> int:
    """The global batch of ``spec`` run with ``opts`` on ``world`` processes; one that does not
    split into them is an error."""
    batch = (opts.batch_size or spec.training.batch_size) * (
        world if opts.batch_per_process else 1)
    if batch % world:
        raise AllconvError(f"the batch of {batch} does not split into {world} processes; use "
                           "--batch-per-process")
    return batch


def whitening_of(spec: Spec, opts: RunOptions) -> dict | None:
    """The identity of the whitened data a run of ``spec`` reads (run.json's provenance), or
    None for a pipeline that reads no whitening."""
    if not spec.pipeline.whitened:
        return None
    return run_folder.whitening_identity(spec.dataset.name, opts.data_dir, opts.verify)


def check_iterations(spec: Spec, opts: RunOptions, train_size: int, batch: int,
                     max_iter: int) -> None:
    """A run of less than one iteration is an error."""
    if max_iter < 1:
        raise AllconvError(f"{spec.key}: {opts.epochs or spec.epochs:g} epochs of "
                           f"{train_size:,} images is less than one iteration of batch {batch}")


def check_length(spec: Spec, opts: RunOptions, train_size: int, world: int = 1) -> None:
    """What `Run` checks of the batch and length, from ``train_size`` alone: before any data
    is read or folder made."""
    batch = global_batch(spec, opts, world)
    check_iterations(spec, opts, train_size, batch,
                     solver(spec, opts, batch, train_size).param.max_iter)


class Prototxt(NamedTuple):
    """A run's prototxt as the generator rendered it, each parsed once: the net (TRAIN and TEST
    Data layers), each member's solver, and the deploy net's text."""

    net: Rendered
    solvers: list[Rendered]
    deploy: str


class RunMember(NamedTuple):
    """One run of a pack: its options (lr, seed), run folder and training feed."""

    opts: RunOptions
    folder: RunFolder
    feed: object


def check_pack(members: Sequence[tuple[RunOptions, Path]]) -> None:
    """The runs of a pack differ only in lr, seed and lr_from, each with its own folder."""
    first = members[0][0]
    for opts, _ in members[1:]:
        other = [f.name for f in fields(RunOptions) if f.name not in MEMBER_FIELDS + ("position",)
                 and getattr(opts, f.name) != getattr(first, f.name)]
        if other:
            raise AllconvError(f"the runs of a pack must share every option but lr and seed; "
                               f"these differ: {', '.join(other)}")
    folders = [os.path.realpath(d) for _, d in members]
    if len(set(folders)) != len(folders):
        raise AllconvError("two runs of a pack have the same run folder")


def pack_label(spec: Spec, members: Sequence[RunMember], smoke: bool) -> str:
    """The progress bar's name of a run: row, lr(s), seed(s); a pack's per member, in the
    order of the losses and accuracies the bar shows (one value when all share it)."""
    def each(values: list[str]) -> str:
        return values[0] if len(set(values)) == 1 else "/".join(values)
    lrs = each([f"{m.opts.lr:g}" for m in members])
    seeds = each([str(m.opts.seed) for m in members])
    return (f"{spec.key} lr {lrs}" + (f" seed {seeds}" if seeds != "0" else "")
            + (" SMOKE" if smoke else ""))


class Run:
    """K runs of one row (K = 1: a solo run): the TRAIN net (packed for K > 1), an evaluation
    net sharing its weights, `CaffeSGD` under the `CaffeLR` schedule, the members' feeds;
    ``step`` trains one iteration of ``ranks.world`` processes' global batch."""

    def __init__(self, spec: Spec, members: Sequence[tuple[RunOptions, Path]],
                 data: Data | ImageFolders, device: torch.device, precision: str,
                 ranks: Ranks = SINGLE):
        check_pack(members)
        opts = members[0][0]
        self.spec, self.opts, self.ranks, self.K = spec, opts, ranks, len(members)
        if self.K > 1 and ranks.world > 1:
            raise AllconvError("a pack trains on one process: under torchrun use --pack 1")
        self.data = row_data(spec, data, device)
        folders = [RunFolder(run_dir) for _, run_dir in members]
        self.members = [RunMember(o, f, self.data.feed(o.seed))
                        for (o, _), f in zip(members, folders)]
        self.epochs = opts.epochs or spec.epochs
        self.smoke = spec.is_smoke(opts.epochs, opts.batch_size, opts.eval_limit)
        self.test_size = min(self.data.test_size, opts.eval_limit or self.data.test_size)
        self.global_batch = global_batch(spec, opts, ranks.world)
        self.batch_size = self.global_batch // ranks.world
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else nullcontext())
        self.prototxt = self._render()
        self.solver_param = self.prototxt.solvers[0].param
        check_iterations(spec, opts, self.data.train_size, self.global_batch,
                         self.solver_param.max_iter)
        shape = self.data.sample_shape
        self.eval_batch = min(max(1, EVAL_BATCH * CIFAR_PIXELS // (shape[1] * shape[2])),
                              self.test_size)
        self._build_nets(device)
        self.memory_format = torch.channels_last if opts.channels_last else torch.preserve_format
        if opts.channels_last:
            self.net.to(memory_format=self.memory_format)
        graphed = opts.cuda_graphs and device.type == "cuda"
        self._build_optimizer(device, tensor_rates=self.K > 1 or graphed)
        self.label_layers = defer_label_checks(self.net)
        self.loss_sum = torch.zeros(self.K, device=device)
        self.restored_progress: list[dict | None] = [None] * self.K   # from `restore`
        self.first_bad = torch.full((self.K,), -1, dtype=torch.long, device=device)
        self.iteration = torch.zeros((), dtype=torch.long, device=device)
        # Masks keyed by (seed, iteration) on the device: the same eager, compiled and in the
        # CUDA graph, for any number of processes, and for a pack's members as for their solo
        # runs; a resume needs no generator state for them.
        part = ranks.part(self.global_batch)
        for layer in self.net.layers:
            if hasattr(layer, "key_masks"):
                layer.key_masks(self.iteration, part.start, self.global_batch)
        self.loss = ranks.wrap(LossOf(self.net))
        if opts.compile:
            self.loss = torch.compile(self.loss)
        self.train_step = TrainStep(self, graphed)
        self.evaluator = Evaluator(self.eval_net, self.data.topk, autocast=self.autocast,
                                   cuda_graphs=graphed, memory_format=self.memory_format)
        self.rates = self.schedule.rates

    # ------------------------------------------------------------------ construction

    def net_transforms(self) -> list[NetTransform]:
        """The transforms from the rendered net to a solo run's TRAIN and TEST nets
        (harness/net_transforms.py), in order: each phase's Data layer becomes an Input layer
        of the batch the loop feeds it. A pack of K > 1 is then `runtime.pack.packed_net` of
        the result, which needs the solo nets for its members' weights."""
        return [data_as_input({TRAIN: self.batch_size, TEST: self.eval_batch},
                              self.data.sample_shape)]

    def _build_nets(self, device: torch.device) -> None:
        seeds = [m.opts.seed for m in self.members]
        train, test = (transformed(self.prototxt.net.param, self.net_transforms(), phase)
                       for phase in (TRAIN, TEST))
        if self.K == 1:
            self.net = Net(train, TRAIN, seed=seeds[0]).to(device)
            self.eval_net = Net(test, TEST, seed=seeds[0]).to(device)
        else:
            self.net = packed_net(train, TRAIN, seeds).to(device)
            self.eval_net = Net(pack_net(test, self.K), TEST, seed=seeds[0]).to(device)
        self.input_names = list(next(l for l in train.layer if l.type == "Input").top)
        self.net.retain_blob_diffs = False
        self.eval_net.share_trained_layers_with(self.net)   # it always sees the trained weights

    def _build_optimizer(self, device: torch.device, tensor_rates: bool) -> None:
        """CaffeSGD with one rate per member (a device tensor: packs and CUDA graphs), under
        `CaffeLR` with each member's base lr."""
        base_lrs = [m.opts.lr for m in self.members]
        lr = (torch.tensor([fp32(b) for b in base_lrs], device=device) if tensor_rates
              else None)
        self.optimizer = CaffeSGD.from_solver(self.solver_param, self.net, lr=lr)
        if self.K > 1:
            self.optimizer.active = torch.ones(self.K, dtype=torch.bool, device=device)
        self.schedule = CaffeLR(self.optimizer, self.solver_param,
                                base_lrs=base_lrs if tensor_rates else None)

    def _render(self) -> Prototxt:
        """The row's net and deploy net from the generator, for this run's batch, and each
        member's solver, for its lr, seed, length and run folder."""
        spec = self.spec
        solvers = [solver(spec, m.opts, self.global_batch, self.data.train_size, m.folder)
                   for m in self.members]
        deploy = rendered_net(spec.variant, NetOptions(num_classes=spec.num_classes, deploy=True,
                                                       init=spec.init)).text
        return Prototxt(rendered_net(spec.variant, net_options(spec, self.global_batch)),
                        solvers, deploy)

    def record(self, k: int, settings: dict, lr_from: str | None = None,
               note: str | None = None) -> None:
        """Write member ``k``'s record: run.json (``settings`` and the provenance) and the
        prototxt as rendered; ``lr_from``: how the lr was chosen when the run began (a
        resumed run keeps it, whatever option names its lr now), and its folder's ``note``."""
        spec, member = self.spec, self.members[k]
        provenance = run_folder.provenance(
            commit=git_commit(), variant=spec.variant.name, dataset=spec.dataset.name,
            classes=self.data.classes, whitening=whitening_of(spec, member.opts),
            lr_from=lr_from or member.opts.lr_from, note=note)
        member.folder.write_record(settings, provenance, net=self.prototxt.net.text,
                                   solver=self.prototxt.solvers[k].text,
                                   deploy=self.prototxt.deploy)

    @property
    def label(self) -> str:
        return pack_label(self.spec, self.members, self.smoke)

    @property
    def params_per_member(self) -> int:
        return sum(p.numel() for p in self.net.learnable_params) // self.K

    # ------------------------------------------------------------------ training

    @property
    def iter(self) -> int:
        return self.schedule.last_epoch

    @property
    def max_iter(self) -> int:
        return self.solver_param.max_iter

    def evaluates_at(self, iteration: int) -> bool:
        """Whether the run tests after step ``iteration``: every test_interval, and at the
        last."""
        return iteration % self.solver_param.test_interval == 0 or iteration == self.max_iter

    @property
    def epoch(self) -> float:
        return self.iter * self.global_batch / self.data.train_size

    def next_inputs(self) -> dict[str, torch.Tensor]:
        """This process's slice of the next global batch of every member, as the net's
        inputs (a pack: the members' images side by side on the channel axis)."""
        part = self.ranks.part(self.global_batch)
        batches = [dict(zip(self.input_names, m.feed(self.global_batch, part)))
                   for m in self.members]
        inputs = batches[0] if self.K == 1 else pack_inputs(self.net, batches)
        data = self.input_names[0]
        inputs[data] = inputs[data].contiguous(memory_format=self.memory_format)
        return inputs

    def step(self) -> None:
        """One Caffe iteration of every member: the batch, then the step (eager, or a CUDA
        graph's replay), then the schedule on the host."""
        inputs = self.next_inputs()
        self.rates = self.schedule.rates
        self.train_step(inputs)
        self.schedule.step()

    def update(self, inputs: dict[str, torch.Tensor]) -> None:
        """The step's device work (harness/step.py): forward, backward (gradients averaged
        over the processes), the members' bookkeeping, Caffe's update. No host read."""
        self.optimizer.zero_grad()
        with self.autocast:
            losses = self.loss(**inputs)
        losses.sum().backward()
        losses = losses.detach().float()
        finite = torch.isfinite(losses)
        self.iteration += 1
        self.loss_sum += losses
        self.first_bad.copy_(torch.where(~finite & (self.first_bad < 0), self.iteration,
                                         self.first_bad))
        if self.optimizer.active is not None:   # a member whose loss is not finite stops here
            self.optimizer.active.logical_and_(finite)
        self.optimizer.step()

    def stop_member(self, k: int) -> None:
        """Member ``k`` gets no further update (a pack; a solo run stops altogether)."""
        if self.optimizer.active is not None:
            self.optimizer.active[k] = False

    @torch.no_grad()
    def evaluate(self, progress=None) -> list[dict]:
        """Each member's test loss, error, top-k errors, per-class accuracy, never-predicted
        classes and dead class units over the test set (its first ``eval_limit`` images), in
        one pass of the TEST net (harness/evaluation.py); ``progress(done, total)`` after each
        batch."""
        return self.evaluator(self.data.test_batches(self.eval_batch, self.test_size),
                              None if progress is None else
                              (lambda done: progress(done, self.test_size)))

    # ------------------------------------------------------------------ checkpoints

    def _snapshot_view(self, k: int):
        """What runtime.snapshot saves and restores for member ``k``: the net and optimizer
        themselves for a solo run, member k's slice of them for a pack."""
        if self.K == 1:
            return self.net, self.optimizer
        view = Member(self.net, self.optimizer, k, self.K)
        return view, view

    def checkpoint(self, members: Sequence[int] | None = None,
                   progress: Sequence[dict] | None = None) -> list[Path]:
        """For each of ``members`` (default: all): Caffe's snapshot (.caffemodel, .solverstate)
        and the loop's own state (.rngstate: the feed's order and position, the dropout and
        torch generators, by name, and ``progress[k]``, the loop's running figures), into its
        folder, all members' files appearing together; then older checkpoints are deleted.
        Returns the .solverstate paths."""
        members = range(self.K) if members is None else members
        with written_together():     # a kill while writing leaves every member where it was
            written = self.write_checkpoints(members, progress)
        self.prune_checkpoints(members)
        return written

    def write_checkpoints(self, members: Sequence[int],
                          progress: Sequence[dict] | None = None) -> list[Path]:
        """`checkpoint`'s files of ``members``, through `atomic_writer` (inside the caller's
        `written_together`); the .solverstate paths."""
        written = []
        for k in members:
            state = {"format": snapshot.LOOP_STATE, "iter": self.iter,
                     "feed": self.members[k].feed.state_dict(),
                     "dropout": net_rng_state(self.net, None if self.K == 1 else k),
                     "progress": progress[k] if progress is not None else None,
                     **snapshot.torch_rng_state()}
            net, optimizer = self._snapshot_view(k)
            _, solver_state = snapshot.write(self.members[k].folder.checkpoint_prefix, net,
                                             optimizer, self.schedule, state)
            written.append(Path(solver_state))
        return written

    def prune_checkpoints(self, members: Sequence[int]) -> None:
        """Delete the checkpoints of ``members`` older than this iteration's."""
        for k in members:
            self.members[k].folder.prune_checkpoints(self.iter)

    def restore(self, paths: Sequence[Path]) -> None:
        """Continue every member from its `checkpoint` (one path each, all of one iteration):
        weights, momentum, iteration, lr position, feed and generators."""
        one_iteration(paths)
        for k, path in enumerate(paths):
            net, optimizer = self._snapshot_view(k)
            # the .caffemodel beside it, not learned_net: a copied run folder resumes its own;
            # every layer from it, or the run would not continue as it was
            snapshot.restore(path, net, optimizer, self.schedule,
                             weights=snapshot.sibling(path, ".caffemodel"), require_all=True)
            check_named_iteration(path, self.iter)
            rng_path = snapshot.sibling(path, ".rngstate")
            state = snapshot.read_rng_state(rng_path)
            if state.get("format") != snapshot.LOOP_STATE or state.get("iter") != self.iter:
                raise AllconvError(f"{rng_path}: not the loop state of {path} (format "
                                   f"{state.get('format')!r}, iteration {state.get('iter')})")
            with snapshot.restoring_state(rng_path):
                self.members[k].feed.load_state_dict(state["feed"])
                self.restored_progress[k] = _progress(state.get("progress"))
                set_net_rng_state(self.net, state["dropout"], rng_path,
                                  None if self.K == 1 else k)
                snapshot.set_torch_rng_state(state)
        self.iteration.fill_(self.iter)
        self.rates = self.schedule.rates


def _progress(saved: dict | None) -> dict | None:
    """A checkpoint's loop figures (step count, loss sum, seconds, and the metrics records
    written by then: None in a checkpoint from before they were kept), each checked a
    number."""
    return None if saved is None else {
        "count": int(saved["count"]), "loss_sum": float(saved["loss_sum"]),
        "seconds": float(saved["seconds"]),
        "records": None if saved.get("records") is None else int(saved["records"])}


def one_iteration(paths: Sequence[Path]) -> int:
    """The iteration of a pack's checkpoints, which must all be of one."""
    iterations = {snapshot_iteration(p) for p in paths}
    if len(iterations) != 1:
        raise AllconvError(f"the runs of a pack must resume from checkpoints of one "
                           f"iteration, not {sorted(iterations)}: resume them apart")
    return iterations.pop()


def snapshot_iteration(path: Path) -> int:
    """N of a checkpoint_iter_N file."""
    found = snapshot.iteration(path)
    if found is None:
        raise AllconvError(f"{path}: not a checkpoint_iter_N file")
    return found


class LossOf(torch.nn.Module):
    """Every member's weighted loss (a (K,) tensor) from the net's inputs, as a module's
    forward, so DistributedDataParallel can wrap it; their sum is the net's loss."""

    def __init__(self, net: Net):
        super().__init__()
        self.net = net
        self.terms = [(top, weight) for layer in net.layers
                      for top, weight in zip(layer.tops, layer.loss_weights) if weight]

    def forward(self, **inputs) -> torch.Tensor:
        values = self.net.blob_values(**inputs)
        return torch.stack([weight * values[top].sum() for top, weight in self.terms])
