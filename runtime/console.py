"""Console-script launcher. A command spends its first seconds importing torch; Ctrl-C then ends
it as it does later (``PROG: interrupted``, exit status 130), not with a Python traceback, and
not lost: torch's import swallows a KeyboardInterrupt raised while its C extension imports
numpy, and goes on, so the signal itself is noted too."""
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

    # a SIGINT a shell's background job ignores stays ignored
    watched = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if watched:
        signal.signal(signal.SIGINT, note)
    try:
        entry_point = importlib.import_module(module).entry_point
    except KeyboardInterrupt:
        noted.append(signal.SIGINT)
    finally:
        if watched:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    entry_point()
    sys.exit(0)
