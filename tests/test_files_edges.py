"""runtime.files behaviours no other test pins."""
import argparse
import math
import os

import numpy as np
import pytest

from runtime import files
from runtime.errors import AllconvError
from runtime.files import (atomic_write_bytes, check_folder_writable, check_writable, json_text,
                           numeric, suffix_option, written_together)


def test_boolean_arrays_count_as_numbers():
    assert numeric(np.array([True, False]), "x").dtype == bool
    with pytest.raises(AllconvError, match="holds <U1 values, not real numbers"):
        numeric(np.array(["a"]), "x")


def test_a_non_finite_float_inside_a_tuple_is_written_null():
    assert json_text({"a": (1.5, math.nan), "b": [math.inf]}) == '{"a": [1.5, null], "b": [null]}'


def test_the_suffix_of_an_output_is_compared_in_any_case():
    checked = suffix_option(".onnx", "the ONNX model")
    assert checked("model.ONNX") == "model.ONNX"
    with pytest.raises(argparse.ArgumentTypeError, match="x.txt: the ONNX model must end in .onnx"):
        checked("x.txt")


def test_a_folder_is_no_writable_file(tmp_path):
    with pytest.raises(AllconvError, match="cannot write: it is a folder"):
        check_writable(tmp_path)


def test_a_nul_byte_in_an_output_folder_is_named(tmp_path):
    with pytest.raises(AllconvError, match="--out .*not a usable path: a NUL byte in it"):
        check_folder_writable(str(tmp_path / "a\0b"), "--out")


def test_an_atomic_write_fsyncs_the_file_before_its_rename(tmp_path, monkeypatch):
    synced, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(source, target):
        synced.append(("rename", os.path.basename(target)))
        real_replace(source, target)
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    atomic_write_bytes(tmp_path / "w.bin", b"data")
    first_rename = synced.index(("rename", "w.bin"))
    assert any(isinstance(s, str) and s.endswith(".tmp") for s in synced[:first_rename])


def test_a_nested_block_is_part_of_the_outer_one(tmp_path):
    with written_together():
        atomic_write_bytes(tmp_path / "a", b"1")
        with written_together():
            atomic_write_bytes(tmp_path / "b", b"2")
        assert not (tmp_path / "b").exists()       # the inner block's end renames nothing
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_npy_file_not_ours_to_read_is_said_so_not_called_another_kind(tmp_path, monkeypatch):
    """A file without read permission (as a user other than root meets it) is no verdict on
    its contents: before, "not a .npy array: [Errno 13] Permission denied"."""
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3, np.float32))

    def denied(handle):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(np.lib.format, "read_magic", denied)
    with pytest.raises(AllconvError, match=r"x.npy: cannot read it: Permission denied$"):
        files.read_npy(path, "a .npy array")
