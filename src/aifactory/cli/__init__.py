"""The `aifactory` command line: one Typer app, one module per command group.

The command modules are imported only when their command runs (``LazyGroup``): most of
them pull in numpy, polars, pyarrow or the service stack, and ``aifactory --version`` or
``aifactory job list --help`` must not pay for that (issue #21: under 0.3 s).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
from typing import Annotated, Any

import typer
from typer._click import Command, Context  # Typer's own Click, the one TyperGroup extends
from typer.core import TyperGroup

import aifactory

# name -> (module under aifactory.cli, attribute, whether the attribute is a Typer sub-app
# or a single command function); in the order `aifactory --help` lists them.
LAZY: dict[str, tuple[str, str, bool]] = {
    "fleet": ("fleet_cmd", "app", True),
    "run": ("run_cmd", "run_cmd", False),
    "simulate": ("simulate_cmd", "simulate", False),
    "compare": ("simulate_cmd", "compare", False),
    "plan": ("plan_cmd", "app", True),
    "scenario": ("scenario_cmd", "app", True),
    "sweep": ("sweep_cmd", "sweep", False),
    "workload": ("workload_cmd", "app", True),
    "trace": ("trace_cmd", "app", True),
    "job": ("job_cmd", "app", True),
    "quota": ("job_cmd", "quota", False),
    "share": ("job_cmd", "share", False),
    "project": ("project_cmd", "app", True),
    "twin": ("twin_cmd", "app", True),
    "alloc": ("alloc_cmd", "app", True),
    "serve": ("serve_cmd", "serve", False),
    "admin": ("admin_cmd", "app", True),
    "db": ("db_cmd", "app", True),
    "export": ("export_cmd", "app", True),
    "import": ("import_cmd", "app", True),
}


def load_command(name: str) -> Command:
    """Import the module behind one top-level command and build its Click command."""
    module_name, attr, is_app = LAZY[name]
    target: Any = getattr(importlib.import_module(f"aifactory.cli.{module_name}"), attr)
    if is_app:
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer()
    single.command(name)(target)
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """The root group: lists every command, imports a command's module only to run it."""

    def list_commands(self, ctx: Context) -> list[str]:
        """Every command, without importing any."""
        return [*super().list_commands(ctx), *LAZY]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The named command, its module imported now (once: Python caches modules)."""
        if cmd_name in LAZY:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="aifactory",
    cls=LazyGroup,
    help="Control plane and digital twin for national-scale GPU AI factories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aifactory {aifactory.__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Control plane and digital twin for national-scale GPU AI factories."""


class _Teardown:
    """Whether the command that ran asked :func:`main` to leave without the interpreter's
    teardown (see :func:`skip_teardown`), and whether :func:`main` runs it (the process
    ends when the command returns)."""

    skip = False
    in_main = False


TEARDOWN = _Teardown()


def skip_teardown() -> None:
    """Ask :func:`main` to end the process at once once the command has returned.

    A twin command ends holding its whole run (82,247 jobs with their histories, seats,
    heaps and tables on the full Philly trace), and a normal exit frees all of it object
    by object before the process goes: 0.3 s of CPU after ``simulate --out`` on that
    trace, a sixth of the command. Only a command whose every file is written and closed,
    and whose worker threads and processes are joined, when it returns may ask. Called
    in-process (the Typer app, as tests do) it changes nothing: only :func:`main` reads it.
    """
    TEARDOWN.skip = True


def pause_collector() -> None:
    """Turn CPython's cyclic collector off for the rest of a one-shot twin command.

    The twin pauses the collector while it runs (``twin.simulator.no_gc``), but the
    collector counts the objects made meanwhile, and the first allocation after it is
    turned back on walks all of them: 50-60 ms after ``simulate`` on the full Philly
    trace, spent finding nothing (the twin makes no reference cycles). A command that
    ends its process when it returns loses nothing by never collecting: reference
    counting still frees every acyclic object at once. Called in-process (the Typer app,
    as tests do) it changes nothing: only a command run by :func:`main` ends its process.
    """
    if TEARDOWN.in_main:
        gc.disable()


def _leave(code: int) -> None:
    """End the process with ``code`` after the exit handlers ran and the standard streams
    were flushed, without freeing the interpreter's objects (the OS takes the memory)."""
    atexit._run_exitfuncs()  # the handlers a normal exit would run
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def main() -> None:
    """Console-script entry point: as ``app()``, but a usage error (a bad option value, a
    missing argument) is one line ``error: ...`` and exit 2, like every other user error."""
    from typer._click.exceptions import ClickException  # noqa: PLC0415

    TEARDOWN.in_main = True
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help, already formatted
            exc.show()
            raise SystemExit(exc.exit_code) from None
        report_usage_error(exc)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(1) from None
    status = code if isinstance(code, int) else 0
    if TEARDOWN.skip:
        _leave(status)
    raise SystemExit(status)


def report_usage_error(exc: Exception) -> None:
    """``error: MESSAGE (see 'aifactory CMD --help')`` on stderr, one line."""
    from rich.markup import escape  # noqa: PLC0415

    from aifactory.cli.common import err  # noqa: PLC0415

    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    line = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(line + hint)}", soft_wrap=True)
