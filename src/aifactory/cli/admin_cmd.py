"""`aifactory admin`: tokens, written straight to the database (run where the service runs)."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Annotated

import typer

from aifactory.cli.common import fail, out, print_json, user_errors
from aifactory.cli.db_cmd import DbUrl, open_database

app = typer.Typer(help="Administration: API tokens.", no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
MAX_EXPIRY_S = 10 * 365 * 86_400  # as the API's TokenCreate.expires_in_s


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` (or a bare number of seconds)."""
    got = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if got is None:
        msg = f"'{text}' is not a duration (use e.g. 3600s, 90m, 12h, 30d, 2w)"
        raise ValueError(msg)
    seconds = float(got.group(1)) * _UNITS[got.group(2) or "s"]
    if not 60 <= seconds <= MAX_EXPIRY_S:
        msg = f"'{text}' is outside 60 s .. 10 years"
        raise ValueError(msg)
    return seconds


def _when(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@app.command("create-token")
def create_token_cmd(
    *,
    role: Annotated[str, typer.Option("--role", help="member, tenant-admin or admin.")] = "member",
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Tenant (from the fleet spec).")
    ] = None,
    fleet: Annotated[
        str | None, typer.Option("--fleet", help="Fleet whose tenants are valid; default demo.")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Who or what the token is for.")] = "",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="Lifetime, e.g. 12h, 30d, 2w (then it is refused); default never."
        ),
    ] = None,
    database_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    from aifactory.fleet import load_fleet  # noqa: PLC0415 (lazy imports keep the CLI fast)
    from aifactory.service.auth import Role, create_token  # noqa: PLC0415
    from aifactory.service.settings import default_fleet  # noqa: PLC0415

    try:
        the_role = Role(role)
    except ValueError:
        fail(f"--role: unknown role '{role}' (use {', '.join(r.value for r in Role)})")
    with user_errors():
        spec = load_fleet(fleet or default_fleet())
    names = [t.name for t, _, _ in spec.iter_tenants()]
    if tenant is None and the_role is not Role.ADMIN:
        fail(f"--tenant: required for role '{the_role.value}'")
    if tenant is not None and tenant not in names:
        fail(f"--tenant: unknown tenant '{tenant}' (fleet {spec.name} has: {', '.join(names)})")
    if "\x00" in note or len(note) > 200:
        fail("--note: at most 200 characters, no NUL")
    now = time.time()
    expires_at = None
    if expires is not None:
        try:
            expires_at = now + parse_duration(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
    db = open_database(database_url)
    try:
        db.upgrade()
        token_id, token = create_token(
            db, tenant=tenant, role=the_role, now=now, note=note, expires_at=expires_at
        )
    finally:
        db.dispose()
    if as_json:
        print_json(
            {
                "id": token_id,
                "tenant": tenant,
                "role": the_role.value,
                "token": token,
                "expires_at": expires_at,
            }
        )
        return
    until = f", expires {_when(expires_at)}" if expires_at is not None else ""
    out.print(
        f"token {token_id} ({the_role.value}, tenant {tenant or '*'}{until}); shown only once:"
    )
    out.print(token, markup=False)


@app.command("list-tokens")
def list_tokens_cmd(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    database_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (ids, tenants, roles, expiry; never the secrets)."""
    from rich.table import Table  # noqa: PLC0415

    from aifactory.service.auth import list_tokens  # noqa: PLC0415

    db = open_database(database_url)
    try:
        db.upgrade()
        rows = list_tokens(db, tenant)
    finally:
        db.dispose()
    if as_json:
        print_json(rows)
        return
    now = time.time()
    table = Table("id", "tenant", "role", "note", "expires", "revoked")
    for r in rows:
        expiry = r["expires_at"]
        gone = isinstance(expiry, int | float) and expiry <= now
        table.add_row(
            str(r["id"]),
            str(r["tenant"] or "*"),
            str(r["role"]),
            str(r["note"]),
            (_when(expiry) + (" (expired)" if gone else "")) if expiry is not None else "never",
            "yes" if r["revoked_at"] else "",
        )
    out.print(table)


@app.command("revoke-token")
def revoke_token_cmd(
    token_id: Annotated[
        int, typer.Argument(min=1, max=2**63 - 1, help="Token id (from list-tokens).")
    ],
    database_url: DbUrl = None,
) -> None:
    """Revoke a token (every replica refuses it within a second)."""
    from aifactory.service.auth import revoke_token  # noqa: PLC0415

    db = open_database(database_url)
    try:
        db.upgrade()
        done = revoke_token(db, token_id, now=time.time())
    finally:
        db.dispose()
    if not done:
        fail(f"token {token_id}: no such active token")
    out.print(f"token {token_id} revoked")
