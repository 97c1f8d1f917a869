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


def launch(module: str, prog: str) -> NoReturn:
    """Import ``module`` and call its ``entry_point()``, which owns the command from then on."""
    noted = []

    def note(signum, frame):
        noted.append(signum)
        raise KeyboardInterrupt

    # a signal that the command started ignoring (a background job's SIGINT, nohup's SIGHUP)
    # stays ignored
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}
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
        by = "" if noted[0] == signal.SIGINT else f" by {signal.Signals(noted[0]).name}"
        print(f"{prog}: interrupted{by}", file=sys.stderr)
        sys.exit(128 + noted[0])
    entry_point()
    sys.exit(0)
