"""Files a run writes, edited by hand or cut short, and inputs of the wrong kind: one line
naming the file and what is wrong, never a traceback."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from harness import run as harness_run
from harness import run_folder
from runtime import snapshot
from runtime.data.source import open_source
from runtime.errors import AllconvError
from runtime.net import Net
from runtime.proto import pb
from visualize import inputs

SETTINGS = {"row": "table3/all-cnn-c", "lr": 0.01, "seed": 0, "epochs": 1.0, "batch_size": 4}
RESULT = {**SETTINGS, "wall_seconds": 3.5, "test_error": 90.0}


def _folder(tmp_path, settings=SETTINGS, whitening=None,
            deploy="name: 'n'") -> run_folder.RunFolder:
    folder = run_folder.RunFolder(tmp_path)
    folder.write_record(settings, run_folder.provenance(
        commit=None, variant="all-c", dataset="cifar10", classes=["a"] * 10,
        whitening=whitening), deploy=deploy)
    return folder


def test_run_json_without_a_field_a_report_or_resume_reads(tmp_path):
    folder = _folder(tmp_path, {k: v for k, v in SETTINGS.items() if k != "lr"})
    with pytest.raises(AllconvError, match=re.escape(f"{tmp_path / 'run.json'}: no 'lr' field")):
        folder.settings
    assert _folder(tmp_path).settings == SETTINGS


def test_result_json_with_a_field_of_another_type(tmp_path):
    folder = _folder(tmp_path)
    folder.write_result({**RESULT, "wall_seconds": [1, 2]})
    with pytest.raises(AllconvError, match="result.json: a list as its 'wall_seconds' field"):
        folder.result()
    folder.write_result(RESULT)
    assert folder.result() == RESULT


def test_a_metrics_record_without_its_iteration_names_the_line(tmp_path):
    folder = _folder(tmp_path)
    folder.metrics.write({"iter": 2, "epoch": 0.1})
    folder.metrics.write({"epoch": 0.2})
    with pytest.raises(AllconvError, match=r"metrics.jsonl, line 2: no 'iter' field"):
        folder.metrics.truncate(5)


def test_provenance_whitening_of_another_type(tmp_path):
    _folder(tmp_path, whitening=0)
    with pytest.raises(AllconvError, match="run.json, provenance: a int as its 'whitening'"):
        run_folder.RunFolder.read(tmp_path)


def test_a_checkpoints_loop_figures_edited(tmp_path):
    path = tmp_path / "checkpoint_iter_6.rngstate"
    with pytest.raises(AllconvError, match=re.escape(f"{path}: not a state this run can restore "
                                                     "(no field 'count')")):
        with snapshot.restoring_state(path):
            harness_run._progress({"loss_sum": 1.0, "seconds": 2.0})
    with pytest.raises(AllconvError, match="float.. argument must be"):
        with snapshot.restoring_state(path):
            harness_run._progress({"count": 1, "loss_sum": [1], "seconds": 2.0})


def test_a_parse_error_in_a_runs_deploy_net_names_the_file(tmp_path):
    folder = _folder(tmp_path, deploy="layer {{ name: 'x' }\n")
    with pytest.raises(AllconvError, match=re.escape(str(tmp_path / "deploy.prototxt")) + ":1:"):
        Net(folder.deploy(), pb.TEST)


def test_an_empty_npz_data_source(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    with pytest.raises(AllconvError, match="d.npz: not a save_npz_source file"):
        open_source(str(tmp_path / "d.npz"), pb.TRAIN)


def test_an_npy_input_of_strings(tmp_path):
    np.save(tmp_path / "x.npy", np.array(["a", "b"]))
    with pytest.raises(AllconvError, match=r"x.npy: holds <U1 values, not numbers"):
        inputs._read_npy(tmp_path / "x.npy")


def test_weights_given_silence_the_warnings_of_the_fillers_they_replace(tmp_path):
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
            'inner_product_param { num_output: 2 } }')
    with pytest.warns(UserWarning, match="has no weight_filler"):
        net = Net(text, pb.TEST)
    net.save(tmp_path / "w.caffemodel")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Net(text, pb.TEST, weights=str(tmp_path / "w.caffemodel"))
