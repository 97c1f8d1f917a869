"""What every allconv command line shares: one-line errors and warnings, exit status 2, Ctrl-C,
and the one check of a ``--device`` value."""
from __future__ import annotations

import argparse
import difflib
import errno
import io
import math
import os
import re
import select
import signal
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn
from contextvars import ContextVar

import numpy as np
import torch

from runtime.console import STOP_SIGNALS, interrupted_line
from runtime.errors import AllconvError
from runtime.registry import did_you_mean

DEVICES = "cpu, cuda, cuda:N"
_parsed_prog: ContextVar[str | None] = ContextVar("allconv_parsed_prog", default=None)
_parsed_parser: ContextVar["Parser | None"] = ContextVar("allconv_parsed_parser", default=None)
# Every character that ends a line for str.splitlines, written as its escape in an error.
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85,
                                                  0x2028, 0x2029)}


def version_text() -> str:
    """allconv's version (its installed package's) and torch's, as --version prints them."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        mine = version("allconv")
    except PackageNotFoundError:    # run from a checkout that pip did not install
        mine = "(not installed)"
    return f"allconv {mine}, torch {torch.__version__}"


def add_version(parser: argparse.ArgumentParser, flag: str = "--version") -> None:
    """``flag`` prints `version_text` and exits (Caffe's ``caffe -version``)."""
    parser.add_argument(flag, action="version", version=f"%(prog)s: {version_text()}",
                        help="print the version and exit")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit with status 2. Options are
    taken only as spelt (``--epoch`` is not ``--epochs``), a misspelt option is named before
    the required ones it leaves missing, and an option's empty value is refused (unless
    ``empty_values``, for gflags' "" = not given). A minus before a digit, ``inf`` or ``nan``
    starts a value (``-1/2``, ``-inf``), not an unknown option."""

    def __init__(self, *args, empty_values: bool = False, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.empty_values = empty_values
        # a word of a minus and a digit is a value (-1e-3, -1/2), not an option argparse lacks,
        # and so are -inf and -nan, which the options' own checks refuse
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)

    def _get_value(self, action, arg_string):
        # an option's empty value names nothing: a path would read as the current folder or an
        # empty file, a name as "not given"; refused unless the command keeps gflags' meaning
        if action.option_strings and not self.empty_values and not arg_string.strip():
            raise argparse.ArgumentError(action, "an empty value: give one, or leave the "
                                                 "option out")
        return super()._get_value(action, arg_string)

    def _check_value(self, action, value):
        # argparse's "invalid choice" with the nearest choices, as an unknown name elsewhere
        if action.choices is not None and value not in action.choices:
            names = [str(choice) for choice in action.choices]
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{did_you_mean(str(value), names)} (choose "
                        f"from {', '.join(map(repr, names))})")

    def _get_option_tuples(self, option_string):
        # argparse still matches prefixes of single-dash options (allconv-caffe's -model):
        # keep only an option given whole, its value perhaps attached (-gpu0)
        return [match for match in super()._get_option_tuples(option_string)
                if option_string.startswith(match[1])]

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith(("the following arguments are required",
                               "one of the arguments")):   # a required group's
            message = self._unrecognized() or message
        if message.startswith(UNRECOGNIZED):
            message += _did_you_mean(message[len(UNRECOGNIZED):].split(),
                                     _parsed_parser.get() or self)
        # the subcommand's name when its arguments were reached (argparse leaves its
        # unrecognized ones for the top parser to say)
        self.exit(2, f"{_parsed_prog.get() or self.prog}: error: {message} (see --help)"
                  .translate(_LINE_BREAKS) + "\n")

    def parse_known_args(self, args=None, namespace=None):
        _parsed_prog.set(self.prog)     # a subcommand's parser runs last: "visualize unit"
        _parsed_parser.set(self)
        self._given = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(args, namespace)

    def _unrecognized(self) -> str | None:
        """The arguments this parser does not know, found by parsing the same arguments again
        with nothing required (argparse checks the required ones first)."""
        required = [each for each in [*self._actions, *self._mutually_exclusive_groups]
                    if each.required]
        for each in required:
            each.required = False
        try:
            _, extras = super().parse_known_args(self._given)
        finally:
            for each in required:
                each.required = True
        return f"{UNRECOGNIZED}{' '.join(extras)}" if extras else None


UNRECOGNIZED = "unrecognized arguments: "


def _did_you_mean(words: list[str], parser: argparse.ArgumentParser) -> str:
    """The options of ``parser`` nearest to the unknown options among ``words`` (the other
    commands' spelling: --out for --output), as " (did you mean --a, --b?)"; else "". The
    cut-off is 0.7 alike: a typo is 0.8 or more (-mdoel, -model), a word that merely shares
    letters less (-noverify, -solver: 0.63)."""
    known = [o for action in parser._actions for o in action.option_strings]
    near = [match for word in words if re.match(r"--?[A-Za-z]", word)
            for match in difflib.get_close_matches(word.split("=")[0], known, 1, 0.7)]
    return f" (did you mean {', '.join(dict.fromkeys(near))}?)" if near else ""


def check_number(value, low: str | None = "positive", high=None, why: str = "",
                 shown: str | None = None) -> None:
    """A ValueError saying why the number ``value`` (written ``shown``) is not finite, not
    ``low`` ("positive", "non-negative" or None: any sign) or above ``high`` (``why``: the
    reason, said with it)."""
    shown = str(value) if shown is None else shown
    if isinstance(value, float) and not math.isfinite(value):   # an int is (any size)
        raise ValueError(f"must be a finite number, not {shown}")
    if (low == "positive" and value <= 0) or (low == "non-negative" and value < 0):
        raise ValueError(f"must be {'positive' if low == 'positive' else '0 or more'}, "
                         f"not {shown}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {high}{why}, not {shown}")


def _check_single(value: float, low: str | None, shown: str) -> None:
    """A ValueError where a float option's ``value`` changes as Caffe's float fields (32 bits)
    hold it: past their range (infinity), or a positive one that rounds to 0."""
    with np.errstate(over="ignore"):
        single = np.float32(value)
    if np.isinf(single):
        raise ValueError(f"must be within a 32-bit float's range (±3.4e38, that of Caffe's "
                         f"float fields), not {shown}")
    if low == "positive" and single == 0:
        raise ValueError(f"must be at least a 32-bit float's smallest (1.4e-45, that of "
                         f"Caffe's float fields), not {shown}")


def number(kind=float, low: str | None = "positive", high: int | None = None, why: str = ""):
    """The argparse type of every number option: one finite number of ``kind`` (int or float)
    in the range of `check_number`; anything else is the parser's one-line error."""
    def parse(text: str):
        try:
            if not text.isascii():          # Python's int() and float() read ١٠ and １０
                raise ValueError(text)
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        try:
            check_number(value, low, high, why, shown=text)
            if kind is float:
                _check_single(value, low, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value
    return parse


def option_name(dest: str) -> str:
    """The long option of an argparse destination: ``batch_size`` -> ``--batch-size``."""
    return "--" + dest.replace("_", "-")


def given_options(args, dests) -> list[str]:
    """The long options of those ``dests`` that were given (not None in ``args``), in order."""
    return [option_name(d) for d in dests if getattr(args, d, None) is not None]


def options_off_default(args, parser: argparse.ArgumentParser, wanted) -> list[str]:
    """The options whose destination ``wanted(dest)`` holds a value other than its default,
    spelt as given: --x or --no-x of a pair, else the long form (--help has no value)."""
    found = []
    for action in parser._actions:
        if (action.option_strings and wanted(action.dest) and hasattr(args, action.dest)
                and getattr(args, action.dest) != action.default):
            pair = isinstance(action, argparse.BooleanOptionalAction)
            found.append(action.option_strings[0 if getattr(args, action.dest) else 1] if pair
                         else max(action.option_strings, key=len))
    return found


def name(what: str, choices=None):
    """An argparse type: a non-empty ``what`` (a blob, a method), one of ``choices`` when
    given; anything else is an error listing them."""
    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"an empty {what}")
        if choices is not None and text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid: "
                                             f"{', '.join(choices)}")
        return text
    return parse


def comma_list(item):
    """An argparse type: one value of the type ``item`` (`number`, `name`) or a comma list of
    distinct ones, as a list; a bad value or one given twice is an error naming it."""
    def parse(text: str) -> list:
        try:
            values = [item(part) for part in text.split(",")]
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"{err}" + (f" (in {text!r})" if "," in text
                                                         else "")) from None
        for i, value in enumerate(values):
            if value in values[:i]:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                raise argparse.ArgumentTypeError(f"{shown} is given twice in {text!r}")
        return values
    return parse


MAX_RANGE = 1 << 20     # indices in one range of index_ranges: far above any blob's channels


def index_ranges(text: str) -> list[int]:
    """An argparse type: indices as ranges and numbers (``0-15``, ``3,7,9`` or a mix), each
    named once, as a list in order; anything else is the parser's one-line error."""
    def part(item: str) -> list[int]:
        low, _, high = item.partition("-")
        try:
            low, high = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give ranges and numbers, like 0-15 or "
                                             "0,4,9") from None
        if min(low, high) < 0:
            raise argparse.ArgumentTypeError(f"{item} is not an index (0 or more) in {text!r}")
        if high < low:
            raise argparse.ArgumentTypeError(f"the range {item} is reversed in {text!r}; write "
                                             f"{high}-{low}")
        if high - low >= MAX_RANGE:
            raise argparse.ArgumentTypeError(f"the range {item} is longer than {MAX_RANGE:,} "
                                             "indices")
        return range(low, high + 1)
    values, seen = [], set()
    for item in text.split(","):
        for value in part(item):
            if value in seen:
                raise argparse.ArgumentTypeError(f"{value} is given twice in {text!r}")
            seen.add(value)
            values.append(value)
    return values


def resolve_device(name: str | None) -> torch.device:
    """The device a ``--device`` value names: cpu, or cuda or cuda:N that this torch has;
    None picks cuda when it is available, else cpu. Anything else is an AllconvError."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise AllconvError(f"unknown device {name!r}; valid: {DEVICES}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise AllconvError(f"device {name!r} asked for, but torch sees no CUDA device")
        if device.index is not None and device.index >= count:
            valid = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise AllconvError(f"device {name!r} asked for, but torch sees {count} CUDA "
                               f"device(s): {valid}")
    return device


def add_device_option(parser, help: str) -> None:
    """``--device``, checked by `resolve_device` as the command line is parsed (a bad value is
    the parser's one-line error) and kept as given; absent, it is None."""
    def checked(text: str) -> str:
        try:
            resolve_device(text)
        except AllconvError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text
    parser.add_argument("--device", type=checked, metavar="DEVICE", help=help)


def warning_line(message: str, prog: str | None = None) -> str:
    """``message`` as one line of a warning of ``prog`` (by default the command line running:
    ``replicate: warning: ...``; ``warning: ...`` outside one), for code that writes its own
    lines (beside a progress bar)."""
    prog = prog or _parsed_prog.get()
    return f"{prog + ': ' if prog else ''}warning: {message}".translate(_LINE_BREAKS)


def _warnings_as_lines(prog: Callable[[], str | None]):
    """A ``warnings.showwarning`` that writes each warning as `warning_line` of ``prog()``."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(warning_line(str(message), prog()), file=sys.stderr if file is None else file)
    return show


def command_prog() -> str | None:
    """The name of the command line running (``replicate``), for its worker processes."""
    return _parsed_prog.get()


def speak_as(prog: str | None) -> None:
    """In a worker process of the command ``prog`` (a spawned one inherits no context): its
    warnings, and `warning_line`'s, are one line named as the command's."""
    if prog:
        _parsed_prog.set(prog)
        warnings.showwarning = _warnings_as_lines(_parsed_prog.get)


class Signalled(KeyboardInterrupt):
    """A stop by a signal other than Ctrl-C's (SIGTERM, SIGHUP), raised by a handler as
    KeyboardInterrupt is by Python's for SIGINT: `run_cli` returns 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _signalled(signum, frame):
    raise Signalled(signum)


class _ClosedOutput(io.TextIOBase):
    """Standard output that the command started without (``>&-``; Python's ``sys.stdout`` is
    then None): a write is an OSError, as a write to a closed descriptor is."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def run_command(main: Callable[[list[str] | None], int | None], prog: str) -> NoReturn:
    """A console script's body: `run_cli`, with SIGTERM and SIGHUP (a scheduler's, `timeout`'s,
    a closed terminal's) ending the command as Ctrl-C does: unwound, so that no temporary file
    stays, with a line naming the signal and status 128 + its number. A signal ignored when
    the command starts (nohup's) stays ignored. A closed standard output is an error where the
    command writes to it; a closed standard error takes what would be said there."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _signalled)
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
    if sys.stderr is None:                  # nowhere to say anything: the status says it
        sys.stderr = open(os.devnull, "w")
    status = run_cli(main, prog)
    _leave_on_signals(status)
    sys.exit(status)


def _leave_on_signals(status: int) -> None:
    """The command's work is done: Ctrl-C, SIGTERM or SIGHUP while the interpreter shuts down
    (torch's teardown takes up to a second) ends it at once with the command's own status,
    not with a traceback from an exit handler."""
    def leave(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, leave)


def run_cli(main: Callable[[list[str] | None], int | None], prog: str,
            argv: list[str] | None = None) -> int:
    """Call ``main``; turn AllconvError, OSError and running out of memory into one line on
    stderr and exit status 2, Ctrl-C into exit status 130 (`Signalled`: 128 + its signal's
    number; a closed stdout pipe into a quiet
    141), and every warning into one line ``PROG: warning: ...``; PROG names the subcommand once
    one was parsed (``visualize unit``), as argparse's own errors do. What the parsers noted
    of the command line is forgotten on return (library calls after it warn as themselves)."""
    tokens = _parsed_prog.set(None), _parsed_parser.set(None)

    def shown() -> str:
        parsed = _parsed_prog.get()
        return parsed if parsed and parsed.startswith(prog + " ") else prog

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warnings_as_lines(shown)
            return _run(main, shown, argv)
    finally:
        _parsed_prog.reset(tokens[0])
        _parsed_parser.reset(tokens[1])


def _stdout_gone() -> bool:
    """Whether stdout is a pipe without a reader (poll says POLLERR); then stdout is pointed
    at /dev/null, so that the exit's own flush is quiet too."""
    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        if not any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0)):
            return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return True
    except (OSError, ValueError, AttributeError):   # no real stdout (io.UnsupportedOperation)
        return False


def _run(main, shown: Callable[[], str], argv) -> int:
    try:
        return main(argv) or 0
    except SystemExit as stop:          # argparse: --help (0) or a usage error (2)
        return stop.code if isinstance(stop.code, int) else 2
    except AllconvError as err:      # one line, even when it quotes a name holding a newline
        print(f"{shown()}: error: {err}".translate(_LINE_BREAKS), file=sys.stderr)
    except BrokenPipeError as err:
        if _stdout_gone():           # the reader of stdout went away (| head): quiet, as
            return 128 + signal.SIGPIPE                                   # SIGPIPE is
        print(f"{shown()}: error: {err.strerror or err}", file=sys.stderr)
    except OSError as err:
        where = f" {err.filename}:" if err.filename else ""
        print(f"{shown()}: error:{where} {err.strerror or err}".translate(_LINE_BREAKS),
              file=sys.stderr)
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        print(interrupted_line(shown(), signum), file=sys.stderr)
        return 128 + signum
    except (MemoryError, RuntimeError) as err:
        line = _out_of_memory(err)
        if line is None and not isinstance(err, MemoryError):
            raise
        print(f"{shown()}: error: {line or 'out of memory'}", file=sys.stderr)
    return 2


def _out_of_memory(err: BaseException) -> str | None:
    """One line for an allocation that failed (torch's CPU allocator, CUDA's), or None for any
    other error: the blobs together, not one alone, outgrew the memory or its limit."""
    text = str(err)
    if not ("can't allocate memory" in text or "out of memory" in text.lower()
            or type(err).__name__ == "OutOfMemoryError"):
        return None
    tried = re.search(r"allocate (\d+) bytes", text)
    size = f" of {int(tried.group(1)) / 1e9:.1f} GB" if tried else ""
    device = "the GPU" if "CUDA" in text or "cuda" in text else "this machine"
    return (f"out of memory: an allocation{size} failed on {device} (the net's blobs "
            "together are too large for its memory or the process's limit); a smaller batch "
            "may fit")
