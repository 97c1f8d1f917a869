"""Console-script launcher. A command spends its first seconds importing torch; Ctrl-C, SIGTERM
or SIGHUP then ends it as it does later (``PROG: interrupted``, or ``... by SIGTERM``, exit
status 128 + the signal's number), not with a Python traceback or silently, and not lost:
torch's import swallows a KeyboardInterrupt raised while its C extension imports numpy, and
goes on, so the signal itself is noted too."""
from __future__ import annotations

import importlib
import signal
import sys
from typing import NoReturn

# the signals that stop a command (Ctrl-C, a scheduler's or `timeout`'s, a closed terminal's)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupted_line(prog: str, signum: int) -> str:
    """How a command stopped by ``signum`` says so (its exit status is 128 + ``signum``)."""
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    return f"{prog}: interrupted{by}"


def launch(module: str, prog: str) -> NoReturn:
    """Import ``module`` and call its ``entry_point()``, which owns the command from then on."""
    noted = []

    def note(signum, frame):
        noted.append(signum)
        raise KeyboardInterrupt

    # a signal that the command started ignoring (a background job's SIGINT, nohup's SIGHUP)
    # stays ignored
    defaults = {signum: signal.SIG_DFL for signum in STOP_SIGNALS}
    defaults[signal.SIGINT] = signal.default_int_handler
    watched = [signum for signum, default in defaults.items()
               if signal.getsignal(signum) is default]
    for signum in watched:
        signal.signal(signum, note)
    try:
        entry_point = importlib.import_module(module).entry_point
    except KeyboardInterrupt:
        noted.append(signal.SIGINT)
    finally:
        for signum in watched:
            signal.signal(signum, defaults[signum])
    if noted:
        print(interrupted_line(prog, noted[0]), file=sys.stderr)
        sys.exit(128 + noted[0])
    entry_point()
    sys.exit(0)
