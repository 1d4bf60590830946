"""Errors that mean "the user gave us something wrong", as opposed to bugs.

Command-line entry points catch `UserError` and print its message (which names the file, line,
field or key at fault) without a traceback, then exit with status 2.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path


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


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file whose top level is a mapping (an empty file is {}); UserError naming `path`."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level of a {what} must be a mapping")
    return data
