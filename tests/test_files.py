"""runtime.files: files written together appear together, or not at all."""
import pytest

from runtime.files import atomic_write_bytes, written_together


def test_files_written_together_appear_only_when_the_block_ends(tmp_path):
    with written_together():
        atomic_write_bytes(tmp_path / "a", b"1")
        atomic_write_bytes(tmp_path / "b", b"2")
        assert not (tmp_path / "a").exists() and len(list(tmp_path.glob(".*.tmp"))) == 2
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_exception_in_the_block_leaves_no_file_and_no_temporary(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with written_together():
            atomic_write_bytes(tmp_path / "a", b"new")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_bytes() == b"old"
