"""Caffe's SignalHandler (util/signal_handler.cpp): SIGINT and SIGHUP only set a flag; the
solver asks after each iteration what was requested ("stop", "snapshot" or None) and acts at
that clean point, so a signal never leaves a half-done update or a half-written snapshot."""
from __future__ import annotations

import signal

EFFECTS = ("stop", "snapshot", "none")


class SignalHandler:
    """``with SignalHandler(sigint_effect, sighup_effect) as h: solver.action_function = h``
    (the effects default as caffe.cpp's flags, in `runtime.caffe_flags`)."""

    def __init__(self, sigint_effect: str, sighup_effect: str):
        # CheckForSignals asks about SIGHUP first: with both pending, SIGHUP's effect comes
        # first and SIGINT's at the next check
        self._effects = {signal.SIGHUP: sighup_effect, signal.SIGINT: sigint_effect}
        self._got = {signum: False for signum in self._effects}
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self._got[signum] = True

    def __enter__(self) -> "SignalHandler":
        for signum in self._effects:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> str | None:
        """The requested action, SIGHUP before SIGINT as Caffe checks them; clears the flag of
        the one it answers for (SIGHUP's with effect none answers None, as Caffe's NONE)."""
        for signum, effect in self._effects.items():
            if self._got[signum]:
                self._got[signum] = False
                return None if effect == "none" else effect
        return None
