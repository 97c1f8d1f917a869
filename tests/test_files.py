"""runtime.files: files written together appear together, or not at all."""
import os
import shutil
from pathlib import Path

import pytest

from runtime.errors import AllconvError
from runtime.files import (_UMASK, atomic_write_bytes, atomic_writer, check_writable,
                           replace_folder, written_together)


def test_files_written_together_appear_only_when_the_block_ends(tmp_path):
    with written_together():
        atomic_write_bytes(tmp_path / "a", b"1")
        atomic_write_bytes(tmp_path / "b", b"2")
        assert not (tmp_path / "a").exists() and len(list(tmp_path.glob(".*.tmp"))) == 2
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_write_removes_what_killed_writers_of_its_file_left(tmp_path):
    """A SIGKILLed allconv-prep-cifar left a 615 MB `.x.npz.<pid>.<random>.tmp` (and an LMDB's
    partial folder) that every later run kept: a write removes those whose process has ended,
    and keeps a running writer's, another file's and what is not a temporary."""
    dead = 2**22 + 1            # past Linux's largest pid: no such process
    (tmp_path / f".a.{dead}.x1y2.tmp").write_bytes(b"half")
    (tmp_path / f".a.{dead}.q9.partial").mkdir()
    (tmp_path / f".a.{dead}.q9.partial" / "data.mdb").write_bytes(b"half")
    # ... and a writer of 'a.<digits>.npz', whose temporary starts as a's would (helper
    # mutants38: it was taken for a's, by a dead pid of those digits, and removed mid-write)
    kept = [f".a.{os.getpid()}.z3.tmp", f".b.{dead}.x1.tmp", ".a.x1y2.tmp", f".a.{dead}.notes",
            f".a.{dead}.npz.{os.getpid()}.k8.tmp", f".a.{dead}.tmp.{os.getpid()}.k8.partial"]
    for name in kept:
        (tmp_path / name).write_bytes(b"")
    atomic_write_bytes(tmp_path / "a", b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["a"])


def test_a_writer_s_temporary_names_its_pid_and_leftovers_go_from_beside_a_link_s_file(
        tmp_path):
    """A write through a link removes the dead writers' leftovers beside the file it names (a
    leftover that is a link to a folder: the link, not the folder), and its own temporary
    carries its pid, which a later writer reads; with the umask's mode, as open() gives."""
    dead = 2**22 + 1
    (tmp_path / "disk").mkdir()
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x").write_bytes(b"kept")
    (tmp_path / "disk" / f".w.{dead}.a1.tmp").write_bytes(b"half")
    (tmp_path / "disk" / f".w.{dead}.b2.partial").symlink_to(tmp_path / "keep")
    (tmp_path / "w").symlink_to(tmp_path / "disk" / "w")
    with atomic_writer(tmp_path / "w") as handle:
        handle.write(b"new")
        assert [p.name.split(".")[2] for p in (tmp_path / "disk").glob(".w.*.tmp")] \
            == [str(os.getpid())]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["w"]
    assert (tmp_path / "keep" / "x").read_bytes() == b"kept"
    atomic_write_bytes(tmp_path / "u", b"1")
    assert (tmp_path / "u").stat().st_mode & 0o777 == 0o666 & ~_UMASK    # not mkstemp's 0600


def test_an_exception_in_the_block_leaves_no_file_and_no_temporary(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with written_together():
            atomic_write_bytes(tmp_path / "a", b"new")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_bytes() == b"old"


def test_a_write_interrupted_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(tmp_path / "a") as handle:
            handle.write(b"ne")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_bytes() == b"old"


def test_a_rename_that_fails_leaves_none_of_the_later_temporaries(tmp_path):
    """The second of three renames fails (its target is a folder): the first file is in place,
    the other two are not, and no temporary stays."""
    (tmp_path / "b").mkdir()
    with pytest.raises(AllconvError, match=f"{tmp_path / 'b'}: cannot write"):
        with written_together():
            for name in "abc":
                with atomic_writer(tmp_path / name) as handle:
                    handle.write(name.encode())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a").read_bytes() == b"a" and (tmp_path / "b").is_dir()


def test_an_output_path_with_a_nul_byte_is_one_line(tmp_path):
    with pytest.raises(AllconvError, match="not a usable path: embedded null byte"):
        check_writable(tmp_path / "a\0b.png")
    assert list(tmp_path.iterdir()) == []


def test_an_output_under_a_file_says_the_file_is_no_folder(tmp_path):
    """`-o net.prototxt/x.onnx`, net.prototxt a file: "no folder net.prototxt" before."""
    (tmp_path / "net.prototxt").write_text("")
    with pytest.raises(AllconvError, match=f"cannot write: {tmp_path / 'net.prototxt'} is a "
                                           "file, not a folder$"):
        check_writable(tmp_path / "net.prototxt" / "deeper" / "x.onnx")
    with pytest.raises(AllconvError, match=f"cannot write: no folder {tmp_path / 'no'}$"):
        check_writable(tmp_path / "no" / "x.onnx")


def test_a_pipe_or_device_is_written_as_it_is_not_replaced(tmp_path):
    """An output given as /dev/null (or a FIFO, /dev/stdout) was renamed over: as root, the
    machine's /dev/null became a regular file. The bytes now go through it."""
    import os
    import stat
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_bytes(fifo, b"abc")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 10) == b"abc"
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]       # no temporary left


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    """Caffe's streams write the file a link names; the temporary file and rename replaced the
    link with a file, and the file it named kept its old bytes."""
    import os
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "w.caffemodel").write_bytes(b"old")
    link = tmp_path / "w.caffemodel"
    link.symlink_to(tmp_path / "disk" / "w.caffemodel")
    check_writable(link)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and (tmp_path / "disk" / "w.caffemodel").read_bytes() == b"new"
    dangling = tmp_path / "next.caffemodel"
    dangling.symlink_to(tmp_path / "disk" / "next.caffemodel")
    atomic_write_bytes(dangling, b"made")
    assert dangling.is_symlink() and dangling.read_bytes() == b"made"
    assert sorted(os.listdir(tmp_path / "disk")) == ["next.caffemodel", "w.caffemodel"]
    astray = tmp_path / "astray.caffemodel"
    astray.symlink_to(tmp_path / "gone" / "x.caffemodel")
    with pytest.raises(AllconvError, match=f"{astray}: cannot write: no folder {tmp_path}/gone$"):
        check_writable(astray)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)      # Caffe's stream fails on it; it was replaced by a file
    with pytest.raises(AllconvError, match=f"{loop}: cannot write: Too many levels of symbolic"):
        atomic_write_bytes(loop, b"x")
    assert loop.is_symlink()


def test_replace_folder_sets_the_old_one_aside_until_the_new_one_is_in(tmp_path, monkeypatch):
    """Before (gpu_collect): the old run folder was removed, then the new one moved in, so a
    kill in between lost both; now the old one is kept aside until the new one is in place."""
    target, built = tmp_path / "run", tmp_path / ".built"
    for folder, text in ((target, "old"), (built, "new")):
        folder.mkdir()
        (folder / "f").write_text(text)
    rename = Path.rename

    def stopped(self, to):
        if self == built:
            raise KeyboardInterrupt
        return rename(self, to)
    with monkeypatch.context() as mp:
        mp.setattr(Path, "rename", stopped)
        with pytest.raises(KeyboardInterrupt):
            replace_folder(built, target)
    kept = [p for p in tmp_path.glob(".run.old-*/run/f")]
    assert [p.read_text() for p in kept] == ["old"] and not target.exists()
    shutil.rmtree(kept[0].parents[1])
    target.mkdir()
    replace_folder(built, target)
    assert (target / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_name_too_long_is_one_line(tmp_path):
    """Before: Path.exists raised ENAMETOOLONG as a traceback (a solver's final snapshot with a
    prefix too long, which Caffe does not probe when `snapshot` is 0)."""
    with pytest.raises(AllconvError, match="cannot write: File name too long$"):
        atomic_write_bytes(tmp_path / ("p" * 300), b"x")


def test_a_writer_of_another_user_is_left_alone(tmp_path, monkeypatch):
    """A leftover whose pid is another user's running process (kill: EPERM) stays."""
    from runtime.files import atomic_write_bytes

    def kill(pid, signum):
        raise PermissionError(1, "Operation not permitted")
    (tmp_path / ".a.4242.x1.tmp").write_bytes(b"")
    monkeypatch.setattr(os, "kill", kill)
    atomic_write_bytes(tmp_path / "a", b"1")
    assert (tmp_path / ".a.4242.x1.tmp").exists()


def test_files_written_together_through_a_link_keep_the_link(tmp_path):
    """As by atomic_writer alone, a link is written through, not replaced."""
    from runtime.files import atomic_write_bytes, written_together
    (tmp_path / "f").write_bytes(b"old")
    (tmp_path / "link").symlink_to("f")
    with written_together():
        atomic_write_bytes(tmp_path / "link", b"new")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "f").read_bytes() == b"new"


def test_json_nested_past_the_recursion_limit_is_one_line_naming_the_file(tmp_path):
    """Found by fuzzing: a run.json of 100,000 '[' was a RecursionError traceback out of
    export-onnx --run, visualize --run and replicate --report."""
    from runtime.files import read_json_object
    path = tmp_path / "run.json"
    path.write_text("[" * 100_000)
    with pytest.raises(AllconvError, match=f"^{path}: cannot read it as JSON: nested deeper "
                                           "than Python's JSON reader goes$"):
        read_json_object(path)
