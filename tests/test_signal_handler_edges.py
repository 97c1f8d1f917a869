"""SignalHandler (runtime/signal_handler.py): edges a mutation round found untested.
Caffe's behaviour: BVLC util/signal_handler.cpp, CheckForSignals."""
import os
import signal

from runtime.signal_handler import SignalHandler


def _send(*signums):
    for signum in signums:
        os.kill(os.getpid(), signum)


def test_each_signal_has_its_own_effect_and_is_acted_on_once():
    with SignalHandler("snapshot", "stop") as requested:
        assert requested() is None
        _send(signal.SIGINT)
        assert requested() == "snapshot"
        assert requested() is None        # the flag is cleared by the check
        _send(signal.SIGHUP)
        assert requested() == "stop"
        assert requested() is None


def test_the_effect_none_is_no_request():
    with SignalHandler("none", "none") as requested:
        _send(signal.SIGINT, signal.SIGHUP)
        assert [requested(), requested(), requested()] == [None, None, None]


def test_the_previous_handlers_come_back_and_sigterm_is_not_taken():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)}
    with SignalHandler("stop", "snapshot"):
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


def test_sighup_is_checked_before_sigint_as_caffe():
    """CheckForSignals asks GotSIGHUP() first: with both pending, SIGHUP's effect, then
    SIGINT's at the next check; SIGHUP's none leaves SIGINT's for the next check too."""
    with SignalHandler("stop", "none") as requested:
        _send(signal.SIGINT, signal.SIGHUP)
        assert [requested(), requested(), requested()] == [None, "stop", None]
    with SignalHandler("stop", "snapshot") as requested:
        _send(signal.SIGINT, signal.SIGHUP)
        assert [requested(), requested(), requested()] == ["snapshot", "stop", None]
