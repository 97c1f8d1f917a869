"""caffe.cpp's flags as gflags holds them: global, so every command takes every flag and
ignores those it does not use; spelt -name, -name=value, --name or --name=value; glog's
logging flags beside them.

`add_flags(parser, used)` gives a command all of them, with help for the ones in ``used``;
`configure_logging(args)` applies glog's flags to the log.
"""
from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import socket
import sys
import threading
import time
import traceback

from runtime.cli_support import number
from runtime.errors import AllconvError
from runtime.limits import INT_MAX, INT_MIN
from runtime.signal_handler import EFFECTS


def _path(text: str) -> str | None:
    """A file flag's value; an empty one is not given (gflags' default), and a list of empty
    names names no file."""
    if not text.strip():
        return None
    if not text.strip(", "):
        raise argparse.ArgumentTypeError(f"{text!r} names no file")
    return text


def _gpu(text: str) -> str | None:
    """-gpu: an id, ids separated by commas, or all; empty is not given (gflags' default)."""
    if not text.strip():
        return None
    if text != "all" and not all(part.isdigit() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a GPU id (0), ids (0,1) or all")
    return text


TRUE, FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


def _int32(low: str | None = "positive"):
    """A gflags int32 flag's value: an integer of 32 bits (gflags refuses another) that is
    ``low`` ("positive", "non-negative" or None)."""
    parse = number(int, low, high=INT_MAX, why=" (a 32-bit flag)")

    def checked(text: str) -> int:
        value = parse(text)
        if value < INT_MIN:
            raise argparse.ArgumentTypeError(f"must be at least {INT_MIN} (a 32-bit flag), "
                                             f"not {text}")
        return value
    return checked


def _bool(text: str) -> bool:
    """A gflags boolean's value, as gflags spells one."""
    if text.lower() in TRUE + FALSE:
        return text.lower() in TRUE
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


# caffe.cpp's DEFINE_* flags: name -> argparse keywords, gflags' default included
CAFFE_FLAGS = {
    "solver": dict(type=_path),
    "model": dict(type=_path),
    "phase": dict(choices=("TRAIN", "TEST")),
    "level": dict(type=_int32(None), default=0),
    "stage": dict(),
    "snapshot": dict(type=_path),
    "weights": dict(type=_path),
    "iterations": dict(type=_int32(), default=50),
    "gpu": dict(type=_gpu),
    "sigint_effect": dict(choices=EFFECTS, default="stop"),
    "sighup_effect": dict(choices=EFFECTS, default="snapshot"),
}
# glog's flags (caffe.cpp's main sets alsologtostderr); the booleans also take -noNAME
GLOG_BOOLEANS = {"logtostderr": False, "alsologtostderr": True, "colorlogtostderr": False}
GLOG_FLAGS = {
    "log_dir": dict(type=_path, help="also write the log to a file in this folder, named as "
                                     "glog names it"),
    "minloglevel": dict(type=_int32("non-negative"), default=0,
                        help="log only messages of this severity and above (0 INFO, "
                             "1 WARNING, 2 ERROR, 3 FATAL; default 0)"),
    "stderrthreshold": dict(type=_int32("non-negative"), default=2,
                            help="without -alsologtostderr, messages of this severity and "
                                 "above still go to stderr (default 2)"),
    "v": dict(type=_int32(None), default=0, help="glog's verbose level (no message of "
                                                     "allconv-caffe depends on it)"),
}
SEVERITIES = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
_installed: list[logging.Handler] = []


def add_flags(parser, used: dict[str, str]) -> None:
    """Every flag of caffe.cpp and glog on ``parser``: those in ``used`` (name -> help) shown
    in its help, the others taken and ignored, as gflags takes them."""
    for name, keywords in CAFFE_FLAGS.items():
        parser.add_argument(f"-{name}", **keywords,
                            help=used[name] if name in used else argparse.SUPPRESS)
    logs = parser.add_argument_group("glog's logging flags")
    for name, default in GLOG_BOOLEANS.items():
        logs.add_argument(f"-{name}", nargs="?", type=_bool, const=True, default=default,
                          metavar="BOOL", help=argparse.SUPPRESS if name != "alsologtostderr"
                          else "log to stderr too (default true, as caffe.cpp sets it; "
                               "-logtostderr: to stderr only; -noNAME turns a boolean off)")
        logs.add_argument(f"-no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
    for name, keywords in GLOG_FLAGS.items():
        logs.add_argument(f"-{name}", **keywords)


def as_gflags_reads(argv: list[str], commands: dict) -> list[str]:
    """caffe.cpp's command line as gflags reads it, written for argparse. ``commands``: {name:
    its parser}."""
    return _command_first(_gflags_spelling(_values_joined(argv, commands)), commands)


def _values_joined(argv: list[str], commands: dict) -> list[str]:
    """``argv`` with each flag that takes a value joined to the argument after it
    (``-flag=value``, whatever that starts with: ``-model -x.prototxt``, ``-model --help``),
    each bool flag given alone made ``-flag=true`` (gflags gives it no value of its own:
    ``-alsologtostderr 0`` leaves a stray 0), and ``--``, the end of gflags' flags, dropped
    (after it only the command may stand)."""
    takes = {option: action.nargs for parser in commands.values()
             for action in parser._actions for option in action.option_strings}
    joined, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":     # what follows is no flag: at most the command, as caffe.cpp's
            extra = rest[1:] if rest[:1] and rest[0] in commands and not \
                any(a in commands for a in joined) else rest
            if extra:
                raise AllconvError(f"{' '.join(extra)}: after --, where gflags' flags end, "
                                   "only the command may stand (give flags before it)")
            return joined + rest
        nargs = takes.get(_single_dash(arg), 0)
        if nargs == "?":
            joined.append(f"{arg}=true")
        elif nargs != 0 and rest:
            joined.append(f"{arg}={rest.pop(0)}")
        else:
            joined.append(arg)
    return joined


def _gflags_spelling(argv: list[str]) -> list[str]:
    """gflags takes --name as -name (Caffe's scripts write --solver=...); -name=value
    argparse already takes. Its -help and -version act wherever they stand (after the
    command too): the command's help, the version."""
    if any(arg in ("-version", "--version") for arg in argv):
        return ["-version"]
    return ["--help" if arg in ("-help", "--help") else _single_dash(arg) for arg in argv]


def _single_dash(arg: str) -> str:
    """gflags' ``--name`` as the ``-name`` it means (``--`` and ``--1`` stay)."""
    return arg[1:] if arg.startswith("--") and arg[2:3].isalpha() else arg


def _command_first(argv: list[str], commands: dict) -> list[str]:
    """gflags takes flags anywhere, so caffe.cpp runs `caffe -model X -iterations 1 time`:
    flags before the command move behind it (a flag's value, joined to it, is never taken
    for the command)."""
    helps = ("-h", "-help", "--help")
    if not argv or not argv[0].startswith("-") or argv[0] in (*helps, "-version", "--version"):
        return argv
    at = next((i for i, arg in enumerate(argv) if arg in commands), None)
    if at is None:
        if any(arg in helps for arg in argv):
            return ["--help"]
        raise AllconvError(f"no command among the arguments: give one of {', '.join(commands)} "
                           "(its flags before or after it)")
    return [argv[at], *argv[:at], *argv[at + 1:]]


def configure_logging(args, program: str = "allconv-caffe") -> None:
    """The log as glog's flags say: stderr (everything, or from -stderrthreshold's severity
    on; unless the process has set up logging itself), a file in -log_dir (without it, in
    glog's temp folders when -noalsologtostderr leaves stderr only the errors), nothing below
    -minloglevel."""
    root = logging.getLogger()
    for handler in _installed:        # a second call (the tests') replaces the first's
        root.removeHandler(handler)
        handler.close()
    formatter = GlogFormatter()
    least = SEVERITIES[min(args.minloglevel, 3)]
    handlers = []
    if not root.handlers:     # as logging.basicConfig: a caller's own handlers stay alone
        stderr = logging.StreamHandler(sys.stderr)
        to_stderr = args.logtostderr or args.alsologtostderr
        stderr.setLevel(least if to_stderr else
                        max(least, SEVERITIES[min(args.stderrthreshold, 3)]))
        handlers.append(stderr)
    if args.log_dir and not args.logtostderr:
        handlers += _log_files(args.log_dir, program)
    elif not (args.logtostderr or args.alsologtostderr):    # glog's folders, as Caffe's log
        handlers += _temp_log_files(program)    # always; here when stderr has errors alone
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    _installed[:] = handlers
    root.setLevel(least)


class GlogFormatter(logging.Formatter):
    """glog's line, ``[IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg``, as Caffe's logs
    have it (what BVLC's tools/extra/parse_log.py reads); file:line is the Python source's."""

    LINE_FORMAT = "[IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg"
    LETTERS = ((logging.CRITICAL, "F"), (logging.ERROR, "E"), (logging.WARNING, "W"), (0, "I"))

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        letter = next(letter for level, letter in self.LETTERS if record.levelno >= level)
        when = time.localtime(record.created)
        micro = min(int((record.created % 1) * 1e6), 999_999)
        prefix = (f"{letter}{time.strftime('%m%d %H:%M:%S', when)}.{micro:06d} "
                  f"{threading.get_native_id():>5} {record.filename}:{record.lineno}] ")
        return prefix + super().format(record)


def log_failure(err: BaseException) -> None:
    """The error that ends a command, as an ERROR line in the -log_dir file (stderr has the
    command line's own), where glog's file holds the line of a failed CHECK."""
    files = [h for h in _installed if isinstance(h, logging.FileHandler)]
    if not files:
        return
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    record = logging.LogRecord("allconv", logging.ERROR, where.filename if where else "",
                               where.lineno if where else 0, " ".join(str(err).split()),
                               None, None)
    for handler in files:
        if record.levelno >= handler.level:
            handler.handle(record)


class GlogFile(logging.FileHandler):
    """glog's log file of one severity in -log_dir, <program>.<host>.<user>.log.<SEVERITY>.
    <date>-<time>.<pid>, with glog's header and the link <program>.<SEVERITY> to the newest:
    INFO holds every line, WARNING those from WARNING on, ERROR those from ERROR on; the
    WARNING and ERROR files are made at their first line, as glog makes them."""

    def __init__(self, folder: str, program: str, severity: str):
        self.folder, self.program, self.severity = folder, program, severity
        self.name_on_disk = (f"{program}.{socket.gethostname()}.{getpass.getuser()}.log."
                             f"{severity}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}")
        super().__init__(os.path.join(folder, self.name_on_disk), delay=severity != "INFO")
        self.setLevel(getattr(logging, severity))

    def _open(self):
        with open(self.baseFilename, "a") as log:     # glog's header, once
            if not log.tell():
                log.write(f"Log file created at: {time.strftime('%Y/%m/%d %H:%M:%S')}\n"
                          f"Running on machine: {socket.gethostname()}\n"
                          f"Log line format: {GlogFormatter.LINE_FORMAT}\n")
        link = os.path.join(self.folder, f"{self.program}.{self.severity}")
        if os.path.islink(link):
            with contextlib.suppress(FileNotFoundError):   # torchrun's processes race here
                os.unlink(link)
        if not os.path.exists(link):
            with contextlib.suppress(FileExistsError):     # another process's, just made
                os.symlink(self.name_on_disk, link)
        return super()._open()


def _temp_log_files(program: str) -> list[logging.Handler]:
    """glog's log files without -log_dir: in the first of $TEST_TMPDIR, $TMPDIR, $TMP, /tmp
    and the current folder that takes them; where none does, a warning and none (as glog)."""
    folders = [os.environ[name] for name in ("TEST_TMPDIR", "TMPDIR", "TMP")
               if os.path.isdir(os.environ.get(name, ""))] + ["/tmp", "./"]
    for folder in folders:
        try:
            return _log_files(folder, program)
        except AllconvError:
            continue
    print(f"{program}: warning: no folder takes the log files ({', '.join(folders)}); the "
          "log goes to no file", file=sys.stderr)
    return []


def _log_files(folder: str, program: str) -> list[logging.Handler]:
    """glog's INFO, WARNING and ERROR files in ``folder``; one that cannot take them is an
    AllconvError."""
    try:
        return [GlogFile(folder, program, severity)
                for severity in ("INFO", "WARNING", "ERROR")]
    except OSError as err:
        raise AllconvError(f"-log_dir {folder}: cannot write the log file there: "
                           f"{err.strerror or err}") from None
