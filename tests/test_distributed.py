"""One run on several processes (torchrun, gloo on the CPU), --shard and --report, and Ctrl-C
with --rows-in-parallel, on tiny data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ddp_worker
from harness import cli
from harness.jobs import job_list, parse_shard
from harness.specs import SPECS_DIR, load_spec, load_tables, select
from harness.run import Run
from harness.train import train
from runtime.caffemodel import read_weights
from runtime.errors import AllconvError
from process_group import run_group
from same_weights import assert_same_weights
from test_harness import cache, tiny_data, tiny_spec  # noqa: F401  (fixtures)
from runtime.distributed import RankFeed, Ranks, not_process_zero

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4   # fp32: the gradient is summed in another order on 2 processes


def _weights(path: Path) -> dict:
    return {f"{layer}:{i}": a for layer, arrays in read_weights(path).items()
            for i, a in enumerate(arrays)}


def _group_ends(pgid: int, seconds: float = 10) -> bool:
    """True once no process of the group is left (multiprocessing's resource tracker exits
    a moment after the main process)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_two_gloo_processes_train_what_one_process_trains(tmp_path):
    spec_path = tiny_spec(tmp_path / "specs", "model-a", batch_size=8)   # has dropout
    spec, data = load_spec(spec_path), ddp_worker.synthetic_data()
    single = train(spec, ddp_worker.options(), tmp_path / "single", data)
    (tmp_path / "init").mkdir()
    start = Run(spec, [(ddp_worker.options(), tmp_path / "init")], data, torch.device("cpu"),
                "fp32")
    w0 = {f"{name}:{i}": v.data.numpy() for name, views in start.net.params.items()
          for i, v in enumerate(views)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", str(Path(ddp_worker.__file__)), str(spec_path),
                        str(tmp_path / "ddp")], timeout=360, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FutureWarning" not in done.stderr          # e.g. DDP's broadcast_buffers rename
    last = f"checkpoint_iter_{single['iterations']}.caffemodel"
    one = _weights(tmp_path / "single" / last)
    two = _weights(tmp_path / "ddp" / "straight" / last)
    moved = max(np.abs(one[k] - w0[k]).max() for k in one)
    differ = max(np.abs(one[k] - two[k]).max() for k in one)
    assert moved > 1e-3 and differ / moved < TOLERANCE, (differ, moved)
    # stopped, resumed under torchrun
    assert_same_weights(tmp_path / "ddp" / "straight" / last, tmp_path / "ddp" / "resumed" / last)
    straight = json.loads((tmp_path / "ddp" / "straight" / "result.json").read_text())
    assert straight["iterations"] == single["iterations"] == 4
    # only rank 0 wrote: one metrics line per evaluation
    records = (tmp_path / "ddp" / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["iter"] for r in records] == [2, 4]
    resumed = tmp_path / "ddp" / "off-schedule"
    assert json.loads((resumed / "result.json").read_text())["iterations"] == 6
    assert [json.loads(r)["iter"] for r in (resumed / "metrics.jsonl").read_text()
            .splitlines()] == [2, 4, 6]


RANKS_WORKER = """
import json, sys, torch
from runtime.distributed import from_environment, leave
ranks = from_environment(torch.device("cpu"))
k = ranks.rank + 1
p = torch.nn.Parameter(torch.zeros(2))
p.grad = torch.tensor([k, -3.0 * k])
ranks.average_gradients([p])
print(json.dumps({"mean": ranks.mean(torch.tensor([k, 10.0 * k])).tolist(),
                  "min": ranks.min(torch.tensor([k])).tolist(), "grad": p.grad.tolist()}))
leave(ranks)
"""


def test_two_processes_average_and_take_the_smallest_over_the_ranks():
    """Ranks.mean, average_gradients (Caffe's gradients divided by the solver count) and min
    over two gloo processes, started as torchrun starts them (its environment variables):
    each process gets (1 + 2) / 2, not the sum."""
    import socket
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    workers = [subprocess.Popen([sys.executable, "-c", RANKS_WORKER], stdout=subprocess.PIPE,
                                text=True, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
               for r in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    for out in outputs:
        assert json.loads(out) == {"mean": [1.5, 15.0], "min": [1.0], "grad": [1.5, -4.5]}


def test_an_option_refused_under_torchrun_is_said_once(tmp_path):
    """Every process refuses --pack 2 under torchrun; process 0 alone says why."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", "-m", "harness.cli", "all-cnn-c", "--pack", "2",
                        "--out", str(tmp_path / "out")], timeout=120, env=env, cwd=tmp_path)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if line.startswith("replicate: error: ")]
    assert said == ["replicate: error: --pack trains its runs on one process: under torchrun use "
                    "--pack 1, or a pack without torchrun"], done.stderr[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_a_device_refused_under_torchrun_is_said_once_by_allconv_caffe(tmp_path):
    """allconv-caffe train -gpu 0 without CUDA: every process refuses, process 0 says why."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt" base_lr: 0.1')
    done = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", "-m", "runtime.cli", "train", "-solver",
                        "solver.prototxt", "-gpu", "0"], timeout=120, env=env, cwd=tmp_path)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "error: " in line]
    assert said == ["allconv-caffe train: error: -gpu 0 asked for, but CUDA is not available "
                    "here"], done.stderr[-2000:]


def test_shards_cover_every_run_exactly_once_in_list_order():
    tables = load_tables(SPECS_DIR)
    args = cli.build_parser().parse_args(["table3", "--lr-search"])
    jobs = job_list(args, select(["table3"], tables))
    everything = [(spec.key, opts.lr, opts.seed) for spec, opts, _ in jobs]
    assert len(everything) == len(set(everything)) == 48
    assert [k for k, _, _ in everything][::4] == [s.key for s in tables["table3"]]
    for n in (1, 3, 5, 48, 50):
        shards = [everything[k::n] for k in (parse_shard(f"{k}/{n}")[0] for k in range(n))]
        assert sorted(sum(shards, [])) == sorted(everything)
    for bad in ("3/3", "-1/2", "1", "a/b"):
        with pytest.raises(AllconvError, match="--shard"):
            parse_shard(bad)


def test_shards_count_lr_seed_runs_and_report_marks_a_partial_grid(tmp_path,
                                                                   tiny_data):  # noqa: F811
    tiny_spec(tmp_path / "specs", "model-a", batch_size=16, lr_grid=[0.01, 0.02])
    args = ["model-a", "--specs", str(tmp_path / "specs"), "--data", str(tiny_data),
            "--no-verify", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--no-progress", "--lr-search", "--seed", "0,1"]
    report = ["model-a", "--specs", str(tmp_path / "specs"), "--epochs", "1", "--out",
              str(tmp_path / "out"), "--lr-search", "--report"]    # as the shards print it
    shards = job_list(cli.build_parser().parse_args(args),
                          select(["model-a"], load_tables(tmp_path / "specs")))
    assert [(o.lr, o.seed) for _, o, _ in shards][1::2] == [(0.01, 1), (0.02, 1)]
    assert cli.main(args + ["--shard", "1/2"]) == 0      # seed 1 of both lrs, as one pack
    assert sorted(p.name for p in (tmp_path / "out" / "tiny" / "model-a").glob("lr-*")) == [
        "lr-0.01-seed-1-smoke", "lr-0.02-seed-1-smoke"]
    assert cli.main(report) == 0
    row = json.loads((tmp_path / "out" / "tiny" / "model-a.json").read_text())
    # the grid's seed is the lowest any run has: 1, until seed 0's runs are there
    assert not row["partial"] and row["grid"] == {"lrs": [0.01, 0.02], "seed": 1,
                                                  "missing": []}
    assert [(r["lr"], r["seed"], r["missing"]) for r in row["runs"]] == [(0.01, 1, None),
                                                                          (0.02, 1, None)]
    assert cli.main(args + ["--shard", "0/2", "--pack", "1"]) == 0
    assert cli.main(report) == 0
    row = json.loads((tmp_path / "out" / "tiny" / "model-a.json").read_text())
    assert row["status"] == "SMOKE" and not row["partial"]
    assert [(r["lr"], r["seed"]) for r in row["runs"]] == [(0.01, 0), (0.01, 1), (0.02, 0),
                                                           (0.02, 1)]
    assert row["measured"]["seeds"] == [0, 1]


def test_one_ctrl_c_stops_both_workers_which_checkpoint_and_resume(tmp_path, tiny_data,
                                                                   cache):  # noqa: F811
    from runtime.data import prepared_cifar

    prepared_cifar("cifar10", tiny_data, verify=False)   # workers find the cheap whitening
    for row in ("model-a", "model-b", "model-c"):     # the third waits for a free worker
        tiny_spec(tmp_path / "specs", row, batch_size=4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness.cli", "tiny", "--specs", str(tmp_path / "specs"),
               "--data", str(tiny_data), "--no-verify", "--epochs", "8", "--eval-every", "0.25",
               "--device", "cpu",
               "--no-progress", "--rows-in-parallel", "2", "--checkpoint-every", "100",
               "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "XDG_CACHE_HOME": str(cache)}
    main = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    runs = [out / "tiny" / row / "lr-0.01-smoke" / "metrics.jsonl"
            for row in ("model-a", "model-b")]
    deadline = time.time() + 240
    while not all(r.is_file() and r.read_text() for r in runs) and time.time() < deadline:
        time.sleep(0.1)   # both are training: each has written its first evaluation (of 32)
    os.killpg(main.pid, signal.SIGINT)          # what Ctrl-C in a terminal does
    _, err = main.communicate(timeout=240)
    assert main.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "stopped by Ctrl-C" in err
    assert _group_ends(main.pid), subprocess.run(     # no worker left behind
        ["ps", "-o", "pid,stat,args", "-g", str(main.pid)], capture_output=True, text=True).stdout
    for r in runs:
        assert list(r.parent.glob("checkpoint_iter_*.solverstate")), r.parent
        assert not (r.parent / "result.json").exists()
    assert not (out / "tiny" / "model-c").exists()     # queued, never started after Ctrl-C
    done = run_group(command + ["--resume"], timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for r in runs + [out / "tiny" / "model-c" / "lr-0.01-smoke" / "metrics.jsonl"]:
        assert json.loads((r.parent / "result.json").read_text())["iterations"] == 64


def test_workers_end_with_a_killed_parent_after_checkpointing(tmp_path, tiny_data,
                                                               cache):  # noqa: F811
    """Before: SIGKILL (or SIGHUP) to the --rows-in-parallel parent left its workers training
    for ever, orphans writing into the folders a resume then wrote too."""
    from runtime.data import prepared_cifar

    prepared_cifar("cifar10", tiny_data, verify=False)
    for row in ("model-a", "model-b"):
        tiny_spec(tmp_path / "specs", row, batch_size=4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness.cli", "tiny", "--specs", str(tmp_path / "specs"),
               "--data", str(tiny_data), "--no-verify", "--epochs", "50", "--eval-every", "0.25",
               "--device", "cpu", "--no-progress", "--rows-in-parallel", "2",
               "--checkpoint-every", "100", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "XDG_CACHE_HOME": str(cache)}
    main = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    runs = [out / "tiny" / row / "lr-0.01-smoke" for row in ("model-a", "model-b")]
    deadline = time.time() + 240
    while not all((r / "metrics.jsonl").is_file() and (r / "metrics.jsonl").read_text()
                  for r in runs) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(main.pid, signal.SIGKILL)           # the parent alone
    main.wait(timeout=30)
    assert _group_ends(main.pid), subprocess.run(
        ["ps", "-o", "pid,stat,args", "-g", str(main.pid)], capture_output=True, text=True).stdout
    for r in runs:
        assert list(r.glob("checkpoint_iter_*.solverstate")), r
        assert not (r / "result.json").exists()


def test_replicate_started_ignoring_ctrl_c_takes_it():
    """A shell's background job starts with SIGINT ignored: replicate takes it all the same,
    from its start, as its loop does, else the one Ctrl-C a torchrun process gets when its agent
    is gone (end_with_parent) was lost before the loop began, and the orphan trained on."""
    probe = ("import signal\n"
             "from harness import cli\n"
             "cli.run_command = lambda main, prog: print(\n"
             "    signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
             "cli.entry_point()\n")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           timeout=60, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                        signal.SIG_IGN),
                           cwd=Path(__file__).resolve().parent.parent)
    assert shown.stdout.strip() == "True", shown.stderr


def test_a_process_whose_parent_is_killed_is_interrupted(tmp_path):
    """torchrun's agent SIGKILLed: its processes were left training to the end, orphans; with
    `end_with_parent` (as every torchrun process of replicate starts it) the orphan gets a
    Ctrl-C, which its loop turns into a checkpoint and a stop."""
    child = ("import signal, sys, time\n"
             # Ctrl-C taken as the loop takes it, even where a shell started us ignoring it
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
             f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
             "from harness.jobs import end_with_parent\n"
             "end_with_parent()\n"
             "print('watching', flush=True)\n"
             "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
             f"    open({str(tmp_path / 'stopped')!r}, 'w').close()\n")
    parent = ("import subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
              "stdout=subprocess.PIPE, text=True)\n"
              "child.stdout.readline()\n")       # the child watches; the parent ends at once
    subprocess.run([sys.executable, "-c", parent, child], timeout=60, check=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "stopped").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "stopped").exists()


def test_a_worker_whose_parent_ended_before_its_watch_began_is_interrupted(tmp_path):
    """A --rows-in-parallel worker is given its pool's pid: where that process has already
    ended (the worker then belongs to another), the watch stops it at once, rather than
    watching its new parent."""
    child = ("import os, signal, subprocess, sys, time\n"
             f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
             "from harness.jobs import end_with_parent\n"
             "signal.signal(signal.SIGINT, lambda *_: print('stopped', flush=True) or "
             "os._exit(0))\n"
             "ended = subprocess.Popen([sys.executable, '-c', '']); ended.wait()\n"
             "end_with_parent(ended.pid)\n"
             "time.sleep(60)\n")
    done = subprocess.run([sys.executable, "-c", child], timeout=20, capture_output=True,
                          text=True)
    assert done.stdout == "stopped\n"


class Counting:
    """A feed whose batches are 0, 1, 2, ..."""

    def __init__(self):
        self.served = -1

    def __call__(self, batch_size):
        self.served += 1
        return self.served


def test_rank_r_of_n_takes_batches_r_r_plus_n_and_so_on():
    """As Caffe's shared DataReader: of 3 ranks, rank 0 reads batches 0, 3, 6, rank 2 batches
    2, 5, 8 (rank 0's batch is the one its log and snapshot's state follow)."""
    for rank, want in ((0, [0, 3, 6]), (1, [1, 4, 7]), (2, [2, 5, 8])):
        feed = RankFeed(Counting(), Ranks(rank, 3))
        assert [feed(4) for _ in range(3)] == want, rank


def test_process_zero_is_global_rank_zero_not_each_nodes_first(monkeypatch):
    """On two nodes of two processes, the second node's first process (RANK 2, LOCAL_RANK 0)
    is not process 0: only RANK 0 says what every process finds alike."""
    monkeypatch.setenv("WORLD_SIZE", "4")
    for rank, local, other in (("2", "0", True), ("0", "0", False), ("1", "1", True)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local)
        assert not_process_zero() is other, (rank, local)
