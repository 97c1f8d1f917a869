"""The one exception type users see."""


class AllconvError(Exception):
    """A one-line, user-facing error. CLIs print ``error: <msg>`` and exit 2."""


def printable(text: str) -> str:
    """``text`` as a message shows it: its control characters escaped, so that the message
    stays one line."""
    return text if text.isprintable() else repr(text)[1:-1]
