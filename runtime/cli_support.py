"""What every allconv command line shares: one-line errors, exit status 2, Ctrl-C."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from runtime.errors import AllconvError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_cli(main: Callable[[list[str] | None], int | None], prog: str,
            argv: list[str] | None = None) -> int:
    """Call ``main``; turn AllconvError and OSError into one line on stderr and exit status 2."""
    try:
        return main(argv) or 0
    except SystemExit as stop:          # argparse: --help (0) or a usage error (2)
        return stop.code if isinstance(stop.code, int) else 2
    except AllconvError as err:      # one line, even when it quotes a name holding a newline
        print(f"{prog}: error: {err}".replace("\n", "\\n"), file=sys.stderr)
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"{prog}: error:{where}: {err.strerror or err}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 2
