"""Twin reports stored by the service (issue #21 §1, the dashboard's Twin page): which there
are, which file of one may be served, and short-lived tickets that let a browser frame open
one without its bearer token.

A report is a folder directly under the reports folder (``ServiceSettings.reports_path``)
holding ``report.html`` (``aifactory simulate|run --out``) or ``sweep.html`` (``aifactory
sweep --out``). Nothing else is ever served: the folder name must be a plain name, the file
one of those two, and the resolved path must lie inside the reports folder, so neither
``..`` nor a symbolic link reaches anything outside it.

Why tickets: a frame cannot send an ``Authorization`` header, and putting the token itself
in an address would leak a long-lived secret into logs and history. A ticket names one file,
expires within ``TICKET_TTL_S``, and is an HMAC keyed with the issuing token's stored hash:
every replica can check it from the database, and revoking the token voids its tickets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from aifactory.service.auth import Role
from aifactory.service.db import Database
from aifactory.service.tables import tokens

REPORT_FILES = ("report.html", "sweep.html")  # what a report folder may have served
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TICKET = re.compile(r"([0-9]{1,18})\.([0-9]{1,12})\.([0-9a-f]{64})")
TICKET_TTL_S = 60.0
MAX_LISTED = 1000  # report folders listed, newest first
# The served page is a self-contained report (inline styles and SVG, no script): this lets
# exactly that render, in a sandbox (an opaque origin: no access to the dashboard's storage)
# and framed only by this origin's dashboard.
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'self'; sandbox"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class StoredReport:
    """One report folder as listed."""

    name: str
    kind: str  # "run" (report.html) or "sweep" (sweep.html)
    files: tuple[str, ...]
    modified_at: float
    bytes: int


def report_file(root: Path, name: str, file: str) -> Path | None:
    """The path of ``file`` of report ``name`` if it may be served, else None."""
    if file not in REPORT_FILES or not NAME.fullmatch(name) or ".." in name:
        return None
    try:
        base = root.resolve(strict=True)
        path = (root / name / file).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        return None
    if path.parent.parent != base or path.parent.name != name or not path.is_file():
        return None
    return path


def list_reports(root: Path) -> list[StoredReport]:
    """The report folders under ``root``, newest first (none if it does not exist)."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        files = tuple(f for f in REPORT_FILES if report_file(root, entry.name, f) is not None)
        if not files:
            continue
        try:
            stats = [(entry / f).stat() for f in files]
        except OSError:  # removed between the listing and the stat: not a report now
            continue
        found.append(
            StoredReport(
                name=entry.name,
                kind="run" if "report.html" in files else "sweep",
                files=files,
                modified_at=max(s.st_mtime for s in stats),
                bytes=sum(s.st_size for s in stats),
            )
        )
    found.sort(key=lambda r: (-r.modified_at, r.name))
    return found[:MAX_LISTED]


def _signature(token_hash: str, name: str, file: str, expires: int) -> str:
    key = hashlib.sha256(b"aifactory report ticket\0" + token_hash.encode()).digest()
    return hmac.new(key, f"{name}/{file}\0{expires}".encode(), hashlib.sha256).hexdigest()


def _token_hash(db: Database, token_id: int, now: float) -> str | None:
    """The stored hash of a live admin token, else None."""
    with db.read() as conn:
        row = conn.execute(
            select(
                tokens.c.token_hash, tokens.c.role, tokens.c.revoked_at, tokens.c.expires_at
            ).where(tokens.c.id == token_id)
        ).first()
    if row is None or row.role != Role.ADMIN.value or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return str(row.token_hash)


def issue_ticket(db: Database, token_id: int, name: str, file: str, now: float) -> tuple[str, int]:
    """A ticket for one file of one report, and when it expires (epoch s)."""
    token_hash = _token_hash(db, token_id, now)
    if token_hash is None:  # the caller was authenticated just now: revoked in between
        msg = "token no longer valid"
        raise PermissionError(msg)
    expires = int(now + TICKET_TTL_S)
    return f"{token_id}.{expires}.{_signature(token_hash, name, file, expires)}", expires


def check_ticket(db: Database, ticket: str, name: str, file: str, now: float) -> bool:
    """Whether ``ticket`` opens ``file`` of report ``name`` now."""
    m = TICKET.fullmatch(ticket)
    if m is None:
        return False
    token_id, expires = int(m.group(1)), int(m.group(2))
    if not now < expires <= now + TICKET_TTL_S + 1:
        return False
    token_hash = _token_hash(db, token_id, now)
    if token_hash is None:
        return False
    return hmac.compare_digest(m.group(3), _signature(token_hash, name, file, expires))
