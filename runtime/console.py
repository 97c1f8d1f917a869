"""Console-script launcher. A command spends its first seconds importing torch; Ctrl-C then ends
it as it does later (``PROG: interrupted``, exit status 130), not with a Python traceback."""
from __future__ import annotations

import importlib
import sys
from typing import NoReturn


def launch(module: str, prog: str) -> NoReturn:
    """Import ``module`` and call its ``entry_point()``, which owns the command from then on."""
    try:
        entry_point = importlib.import_module(module).entry_point
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    entry_point()
    sys.exit(0)
