"""What every sub-command shares: the usage error (one line, exit 2) and the parser that raises it.

Its own module so that the sub-commands and ``cli.main`` import it from here and never each other.
"""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as contract §1
        raise UsageError(f"{self.prog}: {message} (see --help)")
