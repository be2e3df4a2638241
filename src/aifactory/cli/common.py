"""Shared CLI plumbing: consoles, and turning user errors into exit code 2 without a traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from aifactory.fleet.errors import SpecError


def _width(stream: Any) -> int | None:
    """Rich falls back to 80 columns off a terminal, which cuts the per-tenant tables in a
    log or a pipe; use 120 there unless COLUMNS says otherwise."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return 120


out = Console(highlight=False, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, width=_width(sys.stderr))

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Exit 2 now if ``path`` cannot become an output directory, before any long work:
    it is a file, lies under a file, or its nearest existing parent is not writable."""
    if path.exists() and not path.is_dir():
        fail(f"{option}: {path} exists and is not a directory")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        fail(f"{option}: cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{option}: cannot create {path}: {parent} is not writable")


@contextmanager
def user_errors() -> Iterator[None]:
    """Report :class:`SpecError` (and other documented input errors) as clean messages;
    an :class:`OSError` (a file that cannot be read or written) as one line, exit 2."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
    except SpecError as exc:
        where = f"{exc.source}: " if exc.source else ""
        if len(exc.problems) == 1:
            fail(f"{where}{exc.problems[0]}")
        err.print(f"[bold red]error:[/] {where}{len(exc.problems)} problems", soft_wrap=True)
        for p in exc.problems:
            err.print(f"  - {p}", soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_USAGE) from None


def print_json(data: Any) -> None:
    """Write JSON to stdout (plain, so it can be piped into other tools)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n")


def _default(obj: Any) -> Any:
    to_list: Callable[[], Any] | None = getattr(obj, "tolist", None)
    if to_list is not None:
        return to_list()
    msg = f"not JSON serialisable: {type(obj).__name__}"
    raise TypeError(msg)
