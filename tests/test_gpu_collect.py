"""tools/gpu_collect.py files a lease's device files: a finished run's tar becomes its run folder
(weights beside it) and the table is rebuilt from it; an unfinished one waits in .carry-runs
unless the run finished in another call; the benchmark JSONs go to results/benchmarks."""
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from runtime.errors import AllconvError

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("gpu_collect", ROOT / "tools" / "gpu_collect.py")
gpu_collect = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gpu_collect)

COMMITTED = ROOT / "results" / "table3" / "all-cnn-c" / "lr-0.05"   # 9.96 % after 350 epochs


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_lease_is_filed_and_the_table_rebuilt(tmp_path, capsys):
    call = tmp_path / "call4"
    call.mkdir()
    run = {f"table3/all-cnn-c/lr-0.05/{p.name}": p.read_bytes() for p in COMMITTED.iterdir()}
    run["table3/all-cnn-c/lr-0.05/checkpoint_iter_68359.caffemodel"] = b"weights"
    _tar(call / "run-all-cnn-c-lr-0.05.tar", run)
    _tar(call / "run-model-c-lr-0.1-seed-2-unfinished.tar",
         {"table3/model-c/lr-0.1-seed-2/run.json": b"{}"})
    (call / "train_throughput_pack.json").write_text('{"packs": []}\n')
    (call / "replicate.log").write_text("log\n")
    earlier = tmp_path / "call3"        # given after the call that finished the run
    earlier.mkdir()
    _tar(earlier / "run-all-cnn-c-lr-0.05-unfinished.tar",
         {"table3/all-cnn-c/lr-0.05/run.json": b"{}"})
    carry = tmp_path / ".carry-runs"
    carry.mkdir()
    (carry / "run-all-cnn-c-lr-0.05-unfinished.tar").write_bytes(b"an earlier lease's")
    results = tmp_path / "results"

    assert gpu_collect.main([str(call), str(earlier), "--results", str(results),
                             "--carry-runs", str(carry)]) == 0
    folder = results / "table3" / "all-cnn-c" / "lr-0.05"
    assert (folder / "result.json").read_bytes() == (COMMITTED / "result.json").read_bytes()
    assert (folder / "checkpoint_iter_68359.caffemodel").read_bytes() == b"weights"
    assert sorted(p.name for p in carry.iterdir()) == ["run-model-c-lr-0.1-seed-2-unfinished.tar"]
    assert (results / "benchmarks" / "train_throughput_pack.json").read_text() == \
        '{"packs": []}\n'
    assert "lr-0.05: 9.96 % after 350 epochs" in capsys.readouterr().out
    row = [line for line in (results / "table3" / "README.md").read_text().splitlines()
           if "`all-cnn-c`" in line]
    assert len(row) == 1 and "| 9.96 |" in row[0]


def test_a_tar_reaching_outside_its_run_is_refused(tmp_path):
    call = tmp_path / "call4"
    call.mkdir()
    _tar(call / "run-all-cnn-c-lr-0.05.tar", {"table3/all-cnn-c/lr-0.05/run.json": b"{}",
                                               "table3/model-c/lr-0.1/run.json": b"{}"})
    with pytest.raises(AllconvError, match="holds table3/model-c/lr-0.1/run.json, outside "
                                           "table3/all-cnn-c/lr-0.05/"):
        gpu_collect.main([str(call), "--results", str(tmp_path / "results"),
                          "--carry-runs", str(tmp_path / "carry")])
    assert not (tmp_path / "results" / "table3" / "all-cnn-c").exists()


@pytest.mark.parametrize("name, files, what", [
    ("train_throughput_pack.json",
     '{"benchmark": "train_throughput", "device": "CPU (2 threads), tiny run"}',
     "a benchmark on CPU"),
    ("run-all-cnn-c-lr-0.05-smoke-unfinished.tar", None, "a smoke run")])
def test_a_dry_runs_files_are_refused_for_the_repositorys_results(tmp_path, name, files, what):
    """A CPU dry run's benchmark replaced the device's measurements that `check` reads, and
    its smoke runs landed beside the real ones: refused unless collected elsewhere."""
    call = tmp_path / "call"
    call.mkdir()
    if files is None:
        _tar(call / name, {"table3/all-cnn-c/lr-0.05-smoke/run.json": b"{}"})
    else:
        (call / name).write_text(files)
    results = tmp_path / "results"
    with pytest.raises(AllconvError, match=f"{name}: {what}.*, from a CPU dry run"):
        gpu_collect.collect([call], results, tmp_path / "carry", dry_run_ok=False)
    assert not results.exists() and not (tmp_path / "carry").exists()
    gpu_collect.collect([call], results, tmp_path / "carry", dry_run_ok=True)   # elsewhere
    assert [p.name for p in (results / "benchmarks", tmp_path / "carry")[files is None].iterdir()] \
        == [name]


@pytest.mark.parametrize("text", ['{"device": "NVIDIA H200"}', "[1]", "{",
                                  '{"benchmark": "train_throughput", "device": 3}'])
def test_a_json_that_no_benchmark_wrote_is_one_line_naming_it(tmp_path, text):
    """train_throughput's own reader (read_device) judges the file, not a second parser."""
    call = tmp_path / "call"
    call.mkdir()
    (call / "train_throughput_x.json").write_text(text)
    with pytest.raises(AllconvError, match=r"^\S*train_throughput_x.json: "):
        gpu_collect.collect([call], tmp_path / "results", tmp_path / "carry", dry_run_ok=False)


def test_a_dry_runs_file_beside_real_ones_files_nothing(tmp_path):
    """The refusal comes before any filing: a device's benchmark beside a smoke tar is not
    copied either (a half-filed call would mix the two)."""
    call = tmp_path / "call"
    call.mkdir()
    (call / "train_throughput_pack.json").write_text(
        '{"benchmark": "train_throughput", "device": "NVIDIA H200"}')
    _tar(call / "run-all-cnn-c-lr-0.05-smoke-unfinished.tar",
         {"table3/all-cnn-c/lr-0.05-smoke/run.json": b"{}"})
    with pytest.raises(AllconvError, match="a smoke run, from a CPU dry run"):
        gpu_collect.collect([call], tmp_path / "results", tmp_path / "carry", dry_run_ok=False)
    assert not (tmp_path / "results").exists()
