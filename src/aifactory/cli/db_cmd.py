"""`aifactory db`: the control-plane database schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from aifactory.cli.common import fail, out, print_json

if TYPE_CHECKING:
    from aifactory.service.db import Database

app = typer.Typer(help="The control-plane database (schema migrations).", no_args_is_help=True)

DbUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default $AIFACTORY_DATABASE_URL or ./aifactory-data/aifactory.db.",
    ),
]


def open_database(url: str | None) -> Database:
    """Open the database or exit 2 with the reason (imports kept lazy for a fast CLI)."""
    from aifactory.service.db import Database, DatabaseError  # noqa: PLC0415 (lazy import)
    from aifactory.service.settings import default_database_url  # noqa: PLC0415

    try:
        return Database(url or default_database_url())
    except DatabaseError as exc:
        fail(str(exc))


@app.command("upgrade")
def upgrade(database_url: DbUrl = None) -> None:
    """Apply the schema migrations (safe to run again; also done by `aifactory serve`)."""
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415

    db = open_database(database_url)
    try:
        db.upgrade()
        out.print(f"schema at revision {db.current_revision()}")
    except OperationalError as exc:
        fail(f"database: {exc.orig}")
    finally:
        db.dispose()


@app.command("current")
def current(
    database_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"revision": ...}.')] = False,
) -> None:
    """Show the schema revision (none: not migrated yet)."""
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415

    db = open_database(database_url)
    try:
        revision = db.current_revision()
        if as_json:
            print_json({"revision": revision})
        else:
            out.print(revision or "none")
    except OperationalError as exc:
        fail(f"database: {exc.orig}")
    finally:
        db.dispose()
