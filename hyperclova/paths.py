"""Where outputs may go, and where the configs shipped with the package are found.

Shipped configs (`configs/` in a checkout) are installed as package data (`hyperclova/configs/`),
so `find_config("demo")` or `--recipe corpus/korean_default` work from a plain `pip install .` as
well as from a checkout.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable

from hyperclova.errors import UserError

_PACKAGE = Path(__file__).resolve().parent
# Installed: hyperclova/configs (package data). In a checkout: configs/ next to hyperclova/.
CONFIG_DIR = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the shipped YAML configs, e.g. 'demo', '1.3b', 'corpus/korean_default'."""
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))


def find_config(arg: str | os.PathLike, what: str = "config") -> Path:
    """A YAML file by path, else a shipped config by name ('demo', 'configs/demo.yaml', ...)."""
    path = Path(arg)
    if path.is_file():
        return path
    name = str(arg).replace(os.sep, "/").removeprefix("./").removeprefix("configs/")
    for candidate in (name, name + ".yaml"):
        if (CONFIG_DIR / candidate).is_file():
            return CONFIG_DIR / candidate
    raise UserError(f"{what} {arg} not found: neither a file nor a shipped config "
                    f"({', '.join(shipped_configs())})")


def _file_in_the_way(path: Path) -> Path | None:
    for p in [path, *path.parents]:
        if p.exists() and not p.is_dir():
            return p
    return None


def make_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create directory `path` (and parents) or explain, naming `flag`, what is in the way."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _file_in_the_way(path)
        raise UserError(f"{flag} {path}: {blocker} is a file, not a directory") from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserError(f"{flag} {path}: cannot create it ({e.strerror})") from None
        raise
    return path


def make_parent(path: str | os.PathLike, flag: str) -> Path:
    """Create the directory an output file or prefix goes into (see `make_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name or prefix inside it")
    try:
        make_dir(path.parent, flag)
    except UserError as e:
        raise UserError(str(e).replace(f"{flag} {path.parent}:", f"{flag} {path}:", 1)) from None
    return path


def refuse_overwrite(paths: Iterable[str | os.PathLike], label: str) -> None:
    """UserError when any of `paths` exists: tools replace their outputs only with --overwrite.
    `label` names the flag and value the paths come from, e.g. "--output tok/"."""
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        one = len(existing) == 1
        raise UserError(f"{label}: {shown} already exist{'s' if one else ''}; "
                        f"pass --overwrite to replace {'it' if one else 'them'}")
