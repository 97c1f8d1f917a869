"""The one exception type users see."""


class AllconvError(Exception):
    """A one-line, user-facing error. CLIs print ``error: <msg>`` and exit 2."""
