"""File reading and atomic writing with one-line errors: nothing is half-written on interruption."""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from runtime.console import STOP_SIGNALS
from runtime.errors import AllconvError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
# (temporary, target) of the files `written_together` renames when its block ends
_together: ContextVar[list | None] = ContextVar("allconv_written_together", default=None)
TEMPORARY = ".*.tmp"      # the names of `atomic_writer`'s temporary files, as a glob
_LEFTOVERS = (".tmp", ".partial")   # the endings of temporary files and folders


def temporary_prefix(target: Path) -> str:
    """The start of the name of a temporary file or folder written for ``target``, beside it:
    ``.<name>.<pid>.``, so that a later writer knows a killed one's (`remove_dead_writers`)."""
    return f".{target.name}.{os.getpid()}."


def remove_dead_writers(target: Path) -> None:
    """Remove the temporary files and folders that writers of ``target`` left beside it and
    that no longer run (a SIGKILL gives a writer no time to remove its own)."""
    # the whole name: '.w.2024.npz.<pid>.<random>.tmp', a writer of 'w.2024.npz', is not w's
    own = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[^.]+"
                     rf"(?:{'|'.join(map(re.escape, _LEFTOVERS))})")
    try:
        beside = [(p, own.fullmatch(p.name)) for p in target.parent.iterdir()]
    except OSError:     # no folder yet, or unreadable: the write itself says so
        return
    for left, match in beside:
        if match and not _running(int(match[1])):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                _unlink_quietly(left)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # another user's
        return True
    return True


def missing(path: PathLike) -> str:
    """``no such file``, with the folder a relative path was looked for in (the current one,
    as Caffe looks)."""
    path = Path(path)
    return "no such file" + ("" if path.is_absolute() else
                             f" (relative to the current folder {Path.cwd()})")


def read_bytes(path: PathLike, what: str, limit: int | None = None) -> bytes:
    """The bytes of ``path``; a missing or unreadable file, or one of more than ``limit``
    bytes (a device that never ends, such as /dev/zero, too), is an AllconvError naming it."""
    path = Path(path)
    try:
        if limit is None:
            return path.read_bytes()
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size      # 0 for a device
            data = handle.read(limit + 1) if size <= limit else b""
        if max(size, len(data)) > limit:
            raise AllconvError(f"{path}: more than {limit:,} bytes, the most a {what} file "
                               "may hold")
        return data
    except FileNotFoundError:
        raise AllconvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AllconvError(f"{path}: is a directory, expected a {what} file") from None
    except OSError as err:
        raise AllconvError(f"{path}: cannot read: {err.strerror or err}") from None
    except ValueError as err:  # a NUL byte in the path
        raise AllconvError(f"{str(path)!r}: not a usable path: {err}") from None


def read_text(path: PathLike, what: str) -> str:
    """The UTF-8 text of ``path``; a file that is not UTF-8 is an AllconvError naming it and
    the first bad byte's offset (as are `read_bytes`'s errors)."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AllconvError(f"{path}: not a {what} text file: byte {err.start} is not "
                           "UTF-8") from None


def numeric(array: np.ndarray, where: str) -> np.ndarray:
    """``array`` when it holds real numbers (or booleans); else an AllconvError naming
    ``where`` (complex ones too: their imaginary part would be dropped)."""
    if (not (np.issubdtype(array.dtype, np.number) or array.dtype == bool)
            or np.issubdtype(array.dtype, np.complexfloating)):
        raise AllconvError(f"{where}: holds {array.dtype} values, not real numbers")
    return array


# what reading a damaged .npy raises: numpy's header parser lets tokenize's error out of a
# header dict cut open
NPY_ERRORS = (OSError, ValueError, EOFError, tokenize.TokenError)
# what reading a damaged zip raises (numpy's .npz, torch's saves): a bad directory, a cut member,
# a compression method or an encryption zipfile does not know, a bad deflate stream
ZIP_MAGIC = b"PK\x03\x04"          # a zip's first local header
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # an HDF5 superblock's signature
ZIP_ERRORS = NPY_ERRORS + (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def read_npz(path: PathLike, keys, what: str) -> dict:
    """The arrays ``keys`` of the .npz file ``path``, never unpickled, each of numbers; a
    missing, cut short or corrupt file, another kind of file, a missing key or an array of
    other values is an AllconvError naming the path and what failed (``what``: what the file
    should be)."""
    with _numpy_file(path, what, ZIP_ERRORS):
        with open(path, "rb") as handle:
            magic = handle.read(4)
            if magic != ZIP_MAGIC:
                raise AllconvError(f"{path}: not {what}: "
                                   + ("an empty file" if not magic else "not a .npz (zip) file"))
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as f:
                missing = [k for k in keys if k not in f.files]
                if missing:
                    raise AllconvError(f"{path}: not {what}: no array {missing[0]!r} (it holds "
                                       f"{', '.join(f.files) or 'none'})")
                return {k: numeric(f[k], f"{path}, array {k!r}") for k in keys}


def read_npy(path: PathLike, what: str, mmap: bool = False) -> np.ndarray:
    """The array of the .npy file ``path`` (memory-mapped with ``mmap``), never unpickled, of
    numbers; a missing, cut short or corrupt file, or another kind of file (text, .npz, a
    pickle: no .npy magic string), is an AllconvError naming the path and what failed
    (``what``: what the file should be)."""
    with _numpy_file(path, what, NPY_ERRORS):
        with open(path, "rb") as handle:
            np.lib.format.read_magic(handle)
        return numeric(np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False),
                       f"{path}")


@contextmanager
def _numpy_file(path: PathLike, what: str, errors: tuple) -> Iterator[None]:
    """Turn a missing file, a folder, a file not ours to read, or one of ``errors`` (numpy's on
    a file it cannot read) met in the block into an AllconvError naming ``path`` and what
    failed."""
    try:
        yield
    except FileNotFoundError:
        raise AllconvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AllconvError(f"{path}: is a directory, expected {what}") from None
    except PermissionError as err:
        raise AllconvError(f"{path}: cannot read it: {err.strerror}") from None
    except errors as err:
        raise AllconvError(f"{path}: not {what}: {_why_not_read(err)}") from None


def _why_not_read(err: Exception) -> str:
    """What numpy's error on a .npy or .npz says, in a few words."""
    if isinstance(err, tokenize.TokenError):
        return "its header is not a Python dict literal"
    return ("an array of Python objects (pickled), which is not read" if "pickle" in str(err)
            else str(err) or "empty or cut short")


def json_text(data, indent: int | None = None) -> str:
    """``data`` as JSON, which has no NaN or infinity: such a float, at any depth, is written
    null (Python's json would write the bare NaN that strict readers refuse)."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(v) for key, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value
    return json.dumps(finite(data), indent=indent, allow_nan=False)


def json_value(text, *, non_finite_as_null: bool = False):
    """The JSON value of ``text``, read strictly: NaN, Infinity and -Infinity, which Python's
    json takes, and a number past a float's range (1e400, which it takes as infinity) are a
    ValueError, as `json_text` never writes them; or, with ``non_finite_as_null``, null (as
    `json_text` writes them: a metrics line of an allconv before that wrote a bare NaN).
    Arrays nested past Python's recursion limit are a ValueError too."""
    def constant(word: str):
        if non_finite_as_null:
            return None
        raise ValueError(f"{word} is not JSON")

    def number(word: str):
        value = float(word)
        if math.isfinite(value):
            return value
        if non_finite_as_null:
            return None
        raise ValueError(f"{word} is past a float's range")
    try:
        return json.loads(text, parse_constant=constant, parse_float=number)
    except RecursionError:
        raise ValueError("nested deeper than Python's JSON reader goes") from None


def read_json_object(path: PathLike) -> dict:
    """The JSON object in ``path``; an unreadable file, bad JSON or another JSON value is an
    AllconvError naming the path."""
    try:
        data = json_value(read_bytes(path, "JSON"))
    except ValueError as err:
        raise AllconvError(f"{path}: cannot read it as JSON: {err}") from None
    if not isinstance(data, dict):
        raise AllconvError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def cache_dir() -> Path:
    """allconv's cache folder: ``$XDG_CACHE_HOME/allconv``, or ``~/.cache/allconv``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "allconv"


def suffix_option(suffix: str, what: str):
    """An argparse type for ``-o``: the path as given when it ends in ``suffix`` (any case),
    else the parser's one-line error naming the path and ``what`` it is."""
    def checked(text: str) -> str:
        if Path(text).suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"{text}: {what} must end in {suffix}")
        return text
    checked.__name__ = suffix.lstrip(".")
    return checked


def check_writable(path: PathLike) -> None:
    """An AllconvError naming ``path`` unless a file can be written there now: its folder
    exists and takes a new file (probed with an empty temporary file, removed at once), and
    the path is not a folder. Commands call it for every output before they write any. A
    symbolic link is probed where it points, where `atomic_writer` writes."""
    target = Path(path)
    real = link_target(target)
    try:
        if target.is_dir():
            raise AllconvError(f"{target}: cannot write: it is a folder")
        if not real.parent.is_dir():
            above = next((p for p in real.parents if p.exists()), None)
            raise AllconvError(f"{target}: cannot write: {above} is a file, not a folder"
                               if above is not None and not above.is_dir() else
                               f"{target}: cannot write: no folder {real.parent}")
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".probe", dir=real.parent)
    except OSError as err:
        raise AllconvError(f"{target}: cannot write: {real.parent} takes no new file "
                           f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def link_target(target: Path) -> Path:
    """Where ``target`` leads through symbolic links (itself, if none); a NUL byte in it, or
    links in a loop (where Caffe's stream fails too), is an AllconvError."""
    try:
        return Path(os.path.realpath(target, strict=True))
    except ValueError as err:
        raise AllconvError(f"{str(target)!r}: not a usable path: {err}") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise AllconvError(f"{target}: cannot write: {err.strerror}") from None
    return Path(os.path.realpath(target))      # a part of it is not there yet


def check_folder_writable(path: PathLike, option: str) -> None:
    """An AllconvError naming ``option`` and ``path`` unless the folder ``path`` takes new files
    now, or can be made: its nearest existing folder takes a new entry (probed with an empty
    temporary folder, removed at once). Commands call it before their work, as check_writable."""
    folder = base = Path(path)
    if "\0" in str(folder):        # Path.exists takes it for a missing file
        raise AllconvError(f"{option} {str(folder)!r}: not a usable path: a NUL byte in it")
    try:
        base = next((p for p in (folder, *folder.parents) if p.exists()), Path.cwd())
        if not base.is_dir():
            where = "" if base == folder else f" ({base} is one)"
            raise AllconvError(f"{option} {folder}: a file, not a folder{where}")
        os.rmdir(tempfile.mkdtemp(prefix=".probe.", dir=base))
    except OSError as err:
        where = f"{base} takes no new file" if base != folder else "cannot reach it"
        raise AllconvError(f"{option} {folder}: cannot write there: {where} "
                           f"({err.strerror or err})") from None


@contextmanager
def atomic_writer(path: PathLike) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` (temp file, fsync, rename) only if the block ends
    without an exception; an unwritable path is an AllconvError naming it. A device or a pipe
    there (/dev/null, /dev/stdout, a FIFO) is written as it is, not replaced: renamed over,
    root's /dev/null became a file. A symbolic link is written through, as Caffe's streams
    write: the file it names is replaced, the link stays."""
    target = Path(path)
    real = link_target(target)
    try:
        special = target.exists() and not target.is_file() and not target.is_dir()
    except OSError as err:          # a name too long for the file system
        raise AllconvError(f"{target}: cannot write: {err.strerror or err}") from None
    if special:
        try:
            with open(target, "wb") as handle:
                yield handle
        except OSError as err:
            raise AllconvError(f"{target}: cannot write: {err.strerror or err}") from None
        return
    remove_dead_writers(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(real), suffix=".tmp", dir=real.parent)
    except OSError as err:
        raise AllconvError(f"{target}: cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        pending = _together.get()
        if pending is None:
            os.replace(tmp, real)
            sync_folder(real.parent)
        else:
            pending.append((tmp, real, target))
        tmp = None
    except OSError as err:
        raise AllconvError(f"{target}: cannot write: {err.strerror or err}") from None
    finally:
        _unlink_quietly(tmp)


@contextmanager
def written_together() -> Iterator[None]:
    """The files that `atomic_writer` writes in this block appear together when it ends
    without an exception: each is written and fsynced under its temporary name, then all are
    renamed in a row, with Ctrl-C, SIGTERM and SIGHUP held until the last rename. Interrupted
    or failing while writing, the block leaves none of them (a snapshot's three files are one
    set; a pack's members checkpoint at one iteration, or all stay at the one before). Inside
    another such block, it is part of that one."""
    if _together.get() is not None:
        yield
        return
    pending: list = []
    token = _together.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _, _ in pending:
            _unlink_quietly(tmp)
        raise
    finally:
        _together.reset(token)
    with _signals_held():
        for n, (tmp, real, target) in enumerate(pending):
            try:
                os.replace(tmp, real)
            except OSError as err:
                for rest, _, _ in pending[n:]:
                    _unlink_quietly(rest)
                raise AllconvError(f"{target}: cannot write: {err.strerror or err}") from None
    for folder in dict.fromkeys(real.parent for _, real, _ in pending):
        sync_folder(folder)


@contextmanager
def _signals_held() -> Iterator[None]:
    """The block with the Python handlers of `STOP_SIGNALS` waiting: a signal that comes
    meanwhile goes to its handler after the block (a default or ignored disposition is left as
    it is, and handlers exist only in the main thread). A handler that raises there ends the
    replay, as the signal would have ended the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    waiting: list[tuple[int, object]] = []
    handlers = [(signum, handler) for signum in STOP_SIGNALS
                if callable(handler := signal.getsignal(signum))]
    for signum, _ in handlers:
        signal.signal(signum, lambda signum, frame: waiting.append((signum, frame)))
    try:
        yield
    finally:
        _restore_handlers(handlers)
    for signum, frame in waiting:
        dict(handlers)[signum](signum, frame)


def _restore_handlers(handlers: list) -> None:
    """Put each (signal, handler) back, all of them even where one that is put back raises
    (signal.signal first runs the handlers of signals that came, a restored one among them)."""
    if handlers:
        try:
            signal.signal(*handlers[0])
        finally:
            _restore_handlers(handlers[1:])


def sync_folder(folder: Path) -> None:
    """Make the renames into ``folder`` durable where the file system can sync a folder
    (some refuse: the renames stand all the same)."""
    _fsync(folder)


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder``, itself included: what was written there
    under temporary names is on disk before a rename makes it the real thing."""
    for parent, _, names in os.walk(folder):
        for name in names:
            _fsync(Path(parent) / name)
        _fsync(Path(parent))


def _fsync(path: Path) -> None:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def replace_folder(built: Path, target: Path) -> None:
    """The folder ``built`` (made beside ``target``) takes ``target``'s place durably: its
    files are synced, a folder already at ``target`` is set aside, ``built`` renamed in, the
    old one removed. Stopped in between, the old folder is kept beside it as
    ``.<name>.old-*``; an OSError is the caller's to name."""
    sync_tree(built)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / target.name)
    built.rename(target)
    sync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _unlink_quietly(path) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)
