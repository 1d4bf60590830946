"""Errors that mean "the user gave us something wrong", as opposed to bugs.

Command-line entry points catch `UserError` and print its message (which names the file, line,
field or key at fault) without a traceback, then exit with status 2.
"""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Bad input, config or environment: the message tells the user what to change."""


def cli_main(fn):
    """Decorate a CLI `main`: a UserError becomes a one-line message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
