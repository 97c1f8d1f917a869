"""Signals held while files that belong together are written: a Ctrl-C, SIGTERM or SIGHUP that
arrives meanwhile takes effect once the last one is written, so a snapshot's files stay one
set (weights, random state and solver state of one iteration)."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_held() -> Iterator[None]:
    """Run the block with the Python handlers of `HELD` waiting: each signal that arrives is
    passed to its handler after the block, in order (a default or ignored disposition is left
    as it is; signal handlers exist only in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    waiting: list[tuple[int, object]] = []
    handlers = {signum: signal.getsignal(signum) for signum in HELD}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    for signum in handlers:
        signal.signal(signum, lambda signum, frame: waiting.append((signum, frame)))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum, frame in waiting:
            handlers[signum](signum, frame)
