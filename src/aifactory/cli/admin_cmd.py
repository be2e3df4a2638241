"""`aifactory admin`: tokens, written straight to the database (run where the service runs)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from aifactory.cli.common import fail, out, print_json, user_errors
from aifactory.cli.db_cmd import DbUrl, open_database

app = typer.Typer(help="Administration: API tokens.", no_args_is_help=True)


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
    db = open_database(database_url)
    try:
        db.upgrade()
        token_id, token = create_token(db, tenant=tenant, role=the_role, now=time.time(), note=note)
    finally:
        db.dispose()
    if as_json:
        print_json({"id": token_id, "tenant": tenant, "role": the_role.value, "token": token})
        return
    out.print(f"token {token_id} ({the_role.value}, tenant {tenant or '*'}); shown only once:")
    out.print(token, markup=False)


@app.command("list-tokens")
def list_tokens_cmd(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    database_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (ids, tenants, roles; never the secrets)."""
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
    table = Table("id", "tenant", "role", "note", "revoked")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["tenant"] or "*"),
            str(r["role"]),
            str(r["note"]),
            "yes" if r["revoked_at"] else "",
        )
    out.print(table)


@app.command("revoke-token")
def revoke_token_cmd(
    token_id: Annotated[int, typer.Argument(help="Token id (from list-tokens).")],
    database_url: DbUrl = None,
) -> None:
    """Revoke a token (replicas stop accepting it within seconds)."""
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
