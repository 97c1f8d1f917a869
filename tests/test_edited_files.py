"""Files a run writes, edited by hand or cut short, and inputs of the wrong kind: one line
naming the file and what is wrong, never a traceback."""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from harness import run as harness_run
from harness import run_folder
from runtime import snapshot
from runtime.data.source import open_source
from runtime.errors import AllconvError
from runtime.files import read_npy
from runtime.net import Net
from runtime.proto import pb
from visualize import inputs

SETTINGS = {"row": "table3/all-cnn-c", "lr": 0.01, "seed": 0, "precision": "fp32", "epochs": 1.0,
            "batch_size": 4, "eval_limit": None, "eval_every": 1.0, "checkpoint_every": 10,
            "processes": 1, "batch_per_process": False, "spec": 'variant = "all-c"\n'}
RESULT = {"row": "table3/all-cnn-c", "lr": 0.01, "seed": 0, "epochs": 1.0, "wall_seconds": 3.5,
          "test_error": 90.0, "never_predicted": ["a"], "dead_class_units": []}
# an evaluation's record in metrics.jsonl, as the loop writes it
RECORD = {"iter": 2, "epoch": 0.1, "lr": 0.01, "train_loss": 2.3, "test_loss": 2.2,
          "test_error": 90.0, "per_class": [0.5, None], "never_predicted": [1],
          "dead_units": [], "seconds": 1.5}


def _folder(tmp_path, settings=SETTINGS, whitening=None,
            deploy="name: 'n'") -> run_folder.RunFolder:
    folder = run_folder.RunFolder(tmp_path)
    folder.write_record(settings, run_folder.provenance(
        commit=None, variant="all-c", dataset="cifar10", classes=list("abcdefghij"),
        whitening=whitening), deploy=deploy)
    return folder


def test_run_json_without_a_field_a_report_or_resume_reads(tmp_path):
    folder = _folder(tmp_path, {k: v for k, v in SETTINGS.items() if k != "lr"})
    with pytest.raises(AllconvError, match=re.escape(f"{tmp_path / 'run.json'}: no 'lr' field")):
        folder.settings
    assert _folder(tmp_path).settings == SETTINGS
    # one of before processes and batch_per_process were recorded still reads
    older = {k: v for k, v in SETTINGS.items() if k not in ("processes", "batch_per_process")}
    assert _folder(tmp_path, older).settings == older


@pytest.mark.parametrize("field, value, kind", [("precision", "fp16", "one of fp32, tf32, bf16"),
                                                ("epochs", -1, "a positive number"),
                                                ("batch_size", 0, "a positive integer"),
                                                ("eval_limit", -200, "a positive integer or null"),
                                                ("processes", 0, "a positive integer"),
                                                ("checkpoint_every", None, "a positive integer"),
                                                ("eval_every", "1", "a number of at least 0"),
                                                ("batch_per_process", 1, "true or false")])
def test_run_json_with_a_setting_of_another_type(tmp_path, field, value, kind):
    folder = _folder(tmp_path, {**SETTINGS, field: value})
    with pytest.raises(AllconvError, match=re.escape(
            f"its {field!r} field is {json.dumps(value)}, not {kind}; was it edited?")):
        folder.resumable(SETTINGS)


def test_a_resume_with_other_settings_shows_them_as_run_json_holds_them(tmp_path):
    folder = _folder(tmp_path, {**SETTINGS, "eval_limit": 100})
    with pytest.raises(AllconvError, match=re.escape(
            "other settings (eval_limit 100 there, null here)")):
        folder.resumable(SETTINGS)


def test_result_json_with_a_field_of_another_type(tmp_path):
    folder = _folder(tmp_path)
    folder.write_result({**RESULT, "wall_seconds": [1, 2]})
    with pytest.raises(AllconvError, match=re.escape(
            "result.json: its 'wall_seconds' field is [1, 2], not a number")):
        folder.result()
    folder.write_result(RESULT)
    assert folder.result() == RESULT


def test_a_metrics_record_without_its_iteration_names_the_line(tmp_path):
    folder = _folder(tmp_path)
    folder.metrics.write(RECORD)
    folder.metrics.write({k: v for k, v in RECORD.items() if k != "iter"})
    with pytest.raises(AllconvError, match=r"metrics.jsonl, line 2: no 'iter' field"):
        folder.metrics.truncate(5)


def test_provenance_whitening_of_another_type(tmp_path):
    _folder(tmp_path, whitening=0)
    with pytest.raises(AllconvError,
                       match="run.json, provenance: its 'whitening' field is 0, not an object"):
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


def test_an_npy_input_of_strings_or_complex_numbers(tmp_path):
    """A complex array (found by fuzzing) was taken with numpy's ComplexWarning, its
    imaginary part dropped."""
    np.save(tmp_path / "x.npy", np.array(["a", "b"]))
    with pytest.raises(AllconvError, match=r"x.npy: holds <U1 values, not real numbers"):
        read_npy(tmp_path / "x.npy", "a .npy array")
    np.save(tmp_path / "c.npy", np.array([1 + 2j], np.complex64))
    with pytest.raises(AllconvError, match=r"c.npy: holds complex64 values, not real numbers"):
        read_npy(tmp_path / "c.npy", "a .npy array")


def test_an_npy_header_cut_open_names_the_file(tmp_path):
    """numpy's header parser let tokenize's error out: a traceback in visualize --input, an
    .npz Data source and the preprocess cache (helper fuzz39)."""
    import io
    import zipfile
    from runtime.files import read_npz
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 4, 4), np.float32))
    bad = buf.getvalue().replace(b"'shape': (", b"'shape': \xef", 1)
    (tmp_path / "x.npy").write_bytes(bad)
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("data.npy", bad)
    why = "its header is not a Python dict literal"
    with pytest.raises(AllconvError, match=rf"x.npy: not a .npy array: {why}"):
        read_npy(tmp_path / "x.npy", "a .npy array")
    with pytest.raises(AllconvError, match=rf"d.npz: not an .npz: {why}"):
        read_npz(tmp_path / "d.npz", ("data",), "an .npz")


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


def test_a_metrics_log_that_is_not_utf8_names_the_byte(tmp_path):
    folder = _folder(tmp_path)
    folder.metrics.path.write_bytes(b'{"iter": 1}\n\xab\xcd\n')
    with pytest.raises(AllconvError, match=re.escape(
            f"{folder.metrics.path}: not a JSON lines text file: byte 12 is not UTF-8")):
        folder.metrics.records()


@pytest.mark.parametrize("edit, said", [
    ({"seconds": None}, "no 'seconds' field"),                   # None: the field removed
    ({"test_error": "bad"}, "its 'test_error' field is \"bad\", not a percentage"),
    ({"test_error": 101.0}, "its 'test_error' field is 101.0, not a percentage"),
    ({"lr": "x"}, "its 'lr' field is \"x\", not a number"),
    ({"train_loss": None}, "no 'train_loss' field"),
    ({"per_class": [0.5, "a"]},
     "its 'per_class' field is [0.5, \"a\"], not a list of shares or nulls"),
    ({"never_predicted": 5}, "its 'never_predicted' field is 5, not a list of integers"),
    ({"epoch": None, "event": "diverged"}, "no 'epoch' field"),
])
def test_a_metrics_record_edited_is_named_before_any_reader_uses_it(tmp_path, edit, said):
    """Before: a missing 'seconds' failed at the resume's start, an 'lr' of text in the curves
    after the whole run had trained, and an event without its epoch in --report."""
    folder = _folder(tmp_path)
    record = {**RECORD, **edit}
    folder.metrics.write(RECORD)
    folder.metrics.write({k: v for k, v in record.items() if v is not None})
    with pytest.raises(AllconvError, match=re.escape(f"metrics.jsonl, line 2: {said}")):
        folder.outcome()
    folder.metrics.path.write_text(json.dumps(RECORD) + "\n")
    assert folder.outcome() == {"missing": "unfinished at iteration 2"}


def test_a_metrics_record_holding_nan_is_refused_and_never_written(tmp_path):
    """Python's json reads NaN, which JSON lacks: a resume took an epoch of NaN, wrote it back
    as null and refused that on the next resume (mutation fuzzer). NaN and a number past a
    float (1e400, read as infinity) are read as the null the writer writes for them, so a
    field that needs a number refuses them at once; a speed of NaN, which allconv wrote before
    3c8fb79, is read; an epoch below 0 is refused; the writer writes null at any depth."""
    folder = _folder(tmp_path)
    for edit in ('"epoch": NaN', '"epoch": 1e400'):
        folder.metrics.path.write_text(json.dumps(RECORD).replace('"epoch": 0.1', edit) + "\n")
        with pytest.raises(AllconvError, match=re.escape("metrics.jsonl, line 1: its 'epoch' "
                                                         "field is null, not a number")):
            folder.metrics.records()
    folder.metrics.path.write_text(json.dumps({**RECORD, "images_per_s": float("nan")}) + "\n")
    assert folder.metrics.records()[0]["images_per_s"] is None
    folder.metrics.path.write_text(json.dumps({**RECORD, "epoch": -1}) + "\n")
    with pytest.raises(AllconvError, match="its 'epoch' field is -1, not a number of at least 0"):
        folder.metrics.records()
    folder.metrics.path.write_text("")
    folder.metrics.write({**RECORD, "per_class": [0.5, float("nan")], "lr": float("inf")})
    assert json.loads(folder.metrics.path.read_text()) == {**RECORD, "per_class": [0.5, None],
                                                           "lr": None}


@pytest.mark.parametrize("edit, said", [
    ({"test_error": float("nan")}, "cannot read it as JSON: NaN is not JSON"),
    ({"lr": 1e400}, "cannot read it as JSON: Infinity is not JSON"),
    ({"never_predicted": 5}, "its 'never_predicted' field is 5, not a list of strings"),
    ({"dead_class_units": [1]}, "its 'dead_class_units' field is [1], not a list of strings"),
    ({"never_predicted": "x" * 50},              # a long value is cut to 40 characters
     "its 'never_predicted' field is \"" + "x" * 36 + "..., not a list of strings"),
    ({"lr": 0.05}, "not this run's result (lr 0.05 there, 0.01 in run.json); was it copied"),
    ({"iterations": "x"}, "its 'iterations' field is \"x\", not a positive integer"),
    ({"batch_size": "4"}, "its 'batch_size' field is \"4\", not a positive integer"),
    ({"train_size": 0}, "its 'train_size' field is 0, not a positive integer"),
    ({"wall_seconds": -1}, "its 'wall_seconds' field is -1, not a number of seconds"),
    # read by --report (before: a traceback after writing part of the table)
    ({"device": 5}, "its 'device' field is 5, not a string"),
    ({"torch": {"a": 1}}, "its 'torch' field is {\"a\": 1}, not a string"),
    ({"params_counted": -3}, "its 'params_counted' field is -3, not a positive integer"),
    # carried into the row's result by --report
    ({"per_class_accuracy": {"cat": 1.5}},
     "its 'per_class_accuracy' field is {\"cat\": 1.5}, not an object of shares or nulls"),
    ({"per_class_accuracy": [0.5]},
     "its 'per_class_accuracy' field is [0.5], not an object of shares or nulls"),
    ({"per_class_accuracy": {"cat": 0.5}},
     "its 'per_class_accuracy' names the classes cat, not the run's"),
])
def test_a_result_edited_or_copied_from_another_run(tmp_path, edit, said):
    folder = _folder(tmp_path)
    folder.file("result.json").write_text(json.dumps({**RESULT, **edit}))
    with pytest.raises(AllconvError, match=re.escape(f"result.json: {said}")):
        folder.result()


@pytest.mark.parametrize("edit, said", [
    ({"note": [1, 2]}, "provenance: its 'note' field is [1, 2], not a string"),
    ({"whitening": {}}, "provenance's whitening: no 'cache_entry' field"),
    ({"whitening": {"cache_entry": 5}}, "provenance's whitening: its 'cache_entry' field is 5"),
    ({"whitening": {"cache_entry": None}}, "provenance's whitening: its 'cache_entry' field is "
                                           "null"),
    ({"classes": ["a"]}, "provenance: 1 class names for cifar10's 10 classes"),
    ({"classes": list(range(10))}, "its 'classes' field is [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], not"),
    ({"classes": ["", "b"]}, "its 'classes' field is [\"\", \"b\"], not a list of names"),
    # the names are the labels of an export and of visualize's figures: one line, each once
    ({"classes": ["a\n"] + list("bcdefghij")},       # a final line break too
     "its 'classes' field is [\"a\\n\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\",..., not a "
     "list of names (one line each)"),
    ({"classes": ["a\nb"] + list("cdefghijk")},
     "its 'classes' field is [\"a\\nb\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"..., not a "
     "list of names (one line each)"),
    ({"classes": [f"c{i}" for i in range(9)] + ["c3"]},
     "provenance: the class name 'c3' is given twice"),
    ({"variant": "nope"}, "unknown variant 'nope'"),
])
def test_a_provenance_edited_is_named_by_every_reader(tmp_path, edit, said):
    """Before: a note of another type crashed --report, a whitening without its cache_entry
    crashed export-onnx and visualize, and wrong class names went into an export."""
    folder = _folder(tmp_path)
    config = json.loads(folder.file("run.json").read_text())
    config["provenance"].update(edit)
    folder.file("run.json").write_text(json.dumps(config))
    with pytest.raises(AllconvError, match=re.escape(said)):
        run_folder.RunFolder.read(tmp_path)
    if "whitening" in edit:     # --resume reads it first (before: a TypeError's traceback)
        with pytest.raises(AllconvError, match=re.escape(said)):
            run_folder.RunFolder(tmp_path).check_same_whitening(None)


def test_a_resume_keeps_checkpoints_whose_run_json_is_gone(tmp_path):
    """Before: --resume deleted the checkpoints without a word and started at iteration 0."""
    folder = _folder(tmp_path)
    (tmp_path / "checkpoint_iter_8.caffemodel").write_bytes(b"w")
    folder.file("run.json").unlink()
    with pytest.raises(AllconvError, match=re.escape(
            f"cannot resume {tmp_path}: it holds checkpoints but no run.json file")):
        folder.resumable(SETTINGS)
    assert (tmp_path / "checkpoint_iter_8.caffemodel").read_bytes() == b"w"
    folder.start(SETTINGS, resume=False)                       # without --resume: started again
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spec, said", [(5, "its 'spec' field is 5, not a string"),
                                        (None, "its 'spec' field is null, not a string"),
                                        ("missing", "no 'spec' field; was it edited?")])
def test_a_run_json_spec_of_another_type_is_one_line(tmp_path, spec, said):
    """Before: --resume crashed in tomllib (AttributeError: 'int' object has no attribute
    'replace')."""
    folder = _folder(tmp_path)
    config = json.loads(folder.file("run.json").read_text())
    if spec == "missing":
        del config["spec"]
    else:
        config["spec"] = spec
    folder.file("run.json").write_text(json.dumps(config))
    with pytest.raises(AllconvError, match=re.escape(f"run.json: {said}")):
        folder.resumable(SETTINGS)


def test_a_spec_whose_training_is_not_a_table_is_another_row():
    """Before: 'int' object has no attribute 'get'."""
    from harness.specs import same_row
    assert not same_row('variant = "all-c"\ntraining = 5\n', 'variant = "all-c"\n')


def test_a_resume_of_another_spec_says_so_without_the_specs_text(tmp_path):
    folder = _folder(tmp_path, {**SETTINGS, "spec": "a\nlong\ntoml"})
    with pytest.raises(AllconvError) as caught:
        folder.start({**SETTINGS, "spec": "another\ntoml"}, resume=True)
    assert "(the row's spec file has changed)" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("steps, resumes", [("[200, 250, 300]", True),
                                             ("[100, 250, 300]", False)])
def test_a_run_of_before_the_schedule_was_the_variants_resumes_if_it_was_the_same(
        tmp_path, steps, resumes):
    """Runs started before the TOMLs lost unit, length and steps (the 75 %-trained seed-1 run
    of the campaign): their spec text resumes when those held the variant's schedule, and
    comments or layout never count. Before: every such run was refused."""
    from harness.specs import SPECS_DIR
    today = (SPECS_DIR / "table3" / "all-cnn-c.toml").read_text()
    before = today.replace("lr = 0.01 ", f'unit = "epoch"\nlength = 350\nsteps = {steps}\n'
                                         "lr = 0.01 ").replace("# length and lr steps", "# ")
    folder = _folder(tmp_path, {**SETTINGS, "spec": before})
    if resumes:
        assert folder.resumable({**SETTINGS, "spec": today})
        assert folder.resumable({**SETTINGS, "spec": today + "\n# a comment\n"})
    else:
        with pytest.raises(AllconvError, match="the row's spec file has changed"):
            folder.resumable({**SETTINGS, "spec": today})


@pytest.mark.parametrize("content, said", [
    (b"", "an empty file"),
    (b"not a zip", "not a .npz (zip) file"),
    ("cut", "not a .npz source"),
    ("object", "an array of Python objects (pickled), which is not read"),
    ("no labels", "no array 'labels' (it holds data)"),
    # a member's entry in the zip's directory damaged: NotImplementedError and RuntimeError
    ("method", "That compression method is not supported"),
    ("encrypted", "is encrypted, password required"),
])
def test_a_corrupt_npz_is_named_in_one_line(tmp_path, content, said):
    """Before: a .npz cut short raised zipfile.BadZipFile, and an object array numpy's advice
    about allow_pickle."""
    path = tmp_path / "d.npz"
    if content == "cut":
        np.savez(path, data=np.zeros((2, 3, 4, 4), np.float32), labels=np.zeros(2))
        path.write_bytes(path.read_bytes()[:100])
    elif content == "object":
        np.savez(path, data=np.array([{}, 1], dtype=object), labels=np.zeros(2))
    elif content == "no labels":
        np.savez(path, data=np.zeros((2, 3, 4, 4), np.float32))
    elif content in ("method", "encrypted"):
        np.savez(path, data=np.zeros((2, 3, 4, 4), np.float32), labels=np.zeros(2))
        data = bytearray(path.read_bytes())
        entry = data.index(b"PK\x01\x02")     # the first member's in the zip's directory
        if content == "method":
            data[entry + 10] = 99               # its compression method
        else:
            data[entry + 8] |= 1                # its flags: encrypted
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(content)
    with pytest.raises(AllconvError, match=re.escape(f"{path}: not a save_npz_source file")) \
            as caught:
        open_source(str(path), pb.TRAIN)
    assert said in str(caught.value) or (content == "cut" and "zip" in str(caught.value))


def test_an_npz_of_strings_is_refused_as_an_npy_of_strings_is(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=np.array(["a", "b"]), labels=np.zeros(2))
    with pytest.raises(AllconvError, match=re.escape(
            f"{path}, array 'data': holds <U1 values, not real numbers")):
        open_source(str(path), pb.TRAIN)


@pytest.mark.parametrize("content, said", [
    (b"", "an empty rng state file"),
    (b"x\n", "not an rng state a run wrote (Unsupported operand 120; a truncated or foreign"),
    # its zip directory cut off: torch.load's OSError, "error: Invalid argument"
    ("cut", "not an rng state a run wrote (a damaged zip: File is not a zip file; a truncated "
            "file?)"),
    # a byte of its values flipped: torch.load read it as another state (zip CRCs unchecked)
    ("flipped", "not an rng state a run wrote (its 'checkpoint_iter_6/data/0' fails its CRC-32 "
                "check: a damaged file)"),
])
def test_a_garbage_rng_state_is_one_short_line(tmp_path, content, said):
    """Before: torch's page of advice on weights_only and arbitrary code execution."""
    path = tmp_path / "checkpoint_iter_6.rngstate"
    if content in ("cut", "flipped"):
        import torch
        torch.save({"format": "x", "values": torch.arange(3000.0)}, path)
        data = bytearray(path.read_bytes())
        if content == "cut":
            content = bytes(data[:len(data) * 9 // 10])
        else:
            at = data.index(torch.tensor([1234.0]).numpy().tobytes())
            data[at] ^= 0x10
            content = bytes(data)
    path.write_bytes(content)
    with pytest.raises(AllconvError, match=re.escape(f"{path}: {said}")) as caught:
        snapshot.read_rng_state(str(path))
    assert "arbitrary code" not in str(caught.value) and "\n" not in str(caught.value)


def test_an_empty_solverstate_says_it_is_empty(tmp_path):
    from runtime.caffemodel import read_binary
    path = tmp_path / "checkpoint_iter_6.solverstate"
    path.write_bytes(b"")
    with pytest.raises(AllconvError, match=re.escape(
            f"{path} is an empty file, not a binary SolverState")):
        read_binary(path, pb.SolverState)


def test_a_spec_that_is_not_utf8(tmp_path):
    from harness.specs import load_spec
    path = tmp_path / "row.toml"
    path.write_bytes(b'variant = "all-c"\n\xff\n')
    with pytest.raises(AllconvError, match=re.escape(
            f"{path}: not a TOML text file: byte 18 is not UTF-8")):
        load_spec(path)


def test_an_image_past_pillows_decompression_limit(tmp_path, monkeypatch):
    """Pillow refuses an image of over twice MAX_IMAGE_PIXELS (178 M): one line, not its
    DecompressionBombError (here with the limit lowered to 100 pixels)."""
    from PIL import Image

    from runtime.data.jpeg import _pillow
    path = tmp_path / "big.png"
    Image.new("RGB", (32, 32)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    message = re.escape(f"{path}: could not load the image: Image size (1024 pixels) exceeds")
    with pytest.raises(AllconvError, match=message):
        _pillow(path.read_bytes(), path)
    with pytest.raises(AllconvError, match=message):
        inputs._read_image(path)


def _checkpoint(path, i=2):
    (path / f"checkpoint_iter_{i}.solverstate").write_bytes(b"s")
    (path / f"checkpoint_iter_{i}.caffemodel").write_bytes(b"w")


def test_a_fresh_start_names_what_it_would_lose_and_offers_resume_only_where_it_works(
        tmp_path):
    from harness import jobs
    folder = _folder(tmp_path)
    assert jobs._kept(folder) is None                        # a record alone: nothing to lose
    _checkpoint(tmp_path)
    assert jobs._kept(folder) == ("an unfinished run (its checkpoint checkpoint_iter_2)",
                                 "--resume keeps it, ")
    folder.metrics.write({"iter": 4, "epoch": 2.0, "event": "diverged"})
    assert jobs._kept(folder) == ("a run that diverged at iteration 4 (epoch 2.00)", "")
    folder.file(run_folder.RUN_JSON).unlink()
    assert jobs._kept(folder) == ("checkpoints without their run.json", "")


def test_a_run_json_of_before_provenance_resumes_on_any_whitening(tmp_path):
    folder = _folder(tmp_path, whitening={"cache_entry": "/c/cifar10-aaaa"})
    with pytest.raises(AllconvError, match="trained on the whitening cifar10-aaaa, the data "
                                           "given now gives cifar10-bbbb"):
        folder.check_same_whitening({"cache_entry": "/d/cifar10-bbbb"})
    folder.check_same_whitening({"cache_entry": "/d/cifar10-aaaa"})   # moved, the same data
    config = json.loads(folder.file(run_folder.RUN_JSON).read_text())
    del config["provenance"]["whitening"]              # written before provenance had it
    folder.file(run_folder.RUN_JSON).write_text(json.dumps(config))
    run_folder.RunFolder(tmp_path).check_same_whitening({"cache_entry": "/d/cifar10-bbbb"})


def test_a_cache_folder_without_its_whitening_is_not_the_runs_entry(tmp_path, monkeypatch):
    """An entry is whole once its whitening.npz is there (entries are written atomically);
    an empty folder of the same name is none, and the run's data is made again."""
    from runtime.data import preprocess
    monkeypatch.setattr(preprocess, "prepared_root", lambda cache_dir=None: tmp_path / "cache")
    entry = tmp_path / "cifar10-aaaa"
    entry.mkdir()
    (tmp_path / "run").mkdir()
    folder = _folder(tmp_path / "run", whitening={"cache_entry": str(entry)})
    assert folder.cache_entry() is None
    (entry / preprocess.WHITENING_FILE).write_bytes(b"")
    assert folder.cache_entry() == entry


def test_hdf5_weights_with_a_layer_name_that_is_not_utf8(tmp_path):
    """h5py gives such a group's name as bytes: building the message was a TypeError."""
    h5py = pytest.importorskip("h5py", reason="HDF5 weights need h5py (the hdf5 extra)")
    from runtime import hdf5_snapshot
    path = tmp_path / "w.caffemodel.h5"
    hdf5_snapshot.write_weights(path, [("ip", [np.ones((2, 3), np.float32)])])
    with h5py.File(path, "a") as f:
        f["data"].move("ip", b"\xffip")
    net = Net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }'
              'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
              'inner_product_param { num_output: 2 bias_term: false '
              'weight_filler { type: "gaussian" } } }', pb.TEST)
    with pytest.raises(AllconvError, match=re.escape(
            f"{path}: no weights for layer(s) ip (the file has: \\xffip)")):
        net.copy_from(str(path), require_all=True)


def test_a_binary_proto_past_protobufs_limit_and_a_device_without_end(tmp_path):
    """Caffe's ReadProtoFromBinaryFile reads at most INT_MAX bytes; -weights /dev/zero read on
    until memory ran out."""
    from runtime.files import read_bytes
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"x" * 11)
    assert read_bytes(path, "w", limit=11) == b"x" * 11
    with pytest.raises(AllconvError, match=re.escape(
            f"{path}: more than 10 bytes, the most a w file may hold")):
        read_bytes(path, "w", limit=10)
    with pytest.raises(AllconvError, match=re.escape(
            "/dev/zero: more than 1,000 bytes, the most a w file may hold")):
        read_bytes("/dev/zero", "w", limit=1000)


@pytest.mark.parametrize("damage, said", [
    ("result dir", "result.json: a folder, where a run folder holds its result.json file"),
    ("result link", "result.json: a link to nothing, where a run folder holds its result.json"),
    ("run.json gone", ": holds a run's metrics.jsonl or result.json but no run.json, its record"),
])
def test_a_run_folders_record_that_is_no_file_is_named(tmp_path, damage, said):
    """--report counted such a run as unfinished, or skipped it, without naming it."""
    (tmp_path / "lr-0.01").mkdir()
    folder = _folder(tmp_path / "lr-0.01")
    folder.file("metrics.jsonl").write_text(json.dumps(RECORD) + "\n")
    if damage == "result dir":
        folder.file("result.json").mkdir()
    elif damage == "result link":
        folder.file("result.json").symlink_to(tmp_path / "gone")
    else:
        folder.file("run.json").unlink()
    with pytest.raises(AllconvError, match=re.escape(said)):
        [run.outcome() for run in run_folder.row_runs(tmp_path)]


def test_an_rng_state_that_is_a_folder_is_refused_not_skipped(tmp_path):
    """It was taken as missing: "random streams are not restored", and the resume not exact."""
    path = tmp_path / "s_iter_2.rngstate"
    path.mkdir()
    with pytest.raises(AllconvError, match=re.escape(f"{path}: is a directory, not an rng "
                                                     "state file")):
        snapshot.read_rng_state(str(path))


def test_a_run_json_that_is_a_folder_is_named_by_the_run_readers(tmp_path):
    """export-onnx --run and visualize --run said "not a replicate run folder (no run.json)"."""
    (tmp_path / "run.json").mkdir()
    with pytest.raises(AllconvError, match=re.escape(
            f"{tmp_path / 'run.json'}: a folder, where a run folder holds its run.json file")):
        run_folder.RunFolder.read(tmp_path)
