"""Tenancy and bearer tokens.

A token is 32 random bytes shown once; the database keeps only its SHA-256. A plain (not
salted, not slow) hash is right here: the secret has 256 bits of entropy, so there is
nothing to brute-force, and lookup must be one indexed equality per request.

Roles (what each may do is decided in :mod:`aifactory.service.api`):

- ``member``: submits to, sees and cancels jobs of its own tenant;
- ``tenant-admin``: the same, and manages its tenant's tokens;
- ``admin``: everything, on every tenant.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import insert, select, update

from aifactory.service.db import Database
from aifactory.service.tables import tokens

TOKEN_PREFIX = "aif_"  # noqa: S105 (a public prefix that makes leaked tokens greppable)
# How long a replica may keep answering from its token cache: a revoked token can still
# be accepted for up to this long after the revocation commits (then it is refused), and
# a new token's first use costs one database read per replica per this period.
CACHE_TTL_S = 5.0


class Role(StrEnum):
    """What a token may do."""

    MEMBER = "member"
    TENANT_ADMIN = "tenant-admin"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, tenant (None for a global admin) and role."""

    token_id: int
    tenant: str | None
    role: Role

    def can_act_on(self, tenant: str) -> bool:
        """Whether this caller may see or change jobs of ``tenant``."""
        return self.role is Role.ADMIN or self.tenant == tenant


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    db: Database, *, tenant: str | None, role: Role, now: float, note: str = ""
) -> tuple[int, str]:
    """Store a new token's hash; return its id and the token (the only time it exists)."""
    if role is not Role.ADMIN and not tenant:
        msg = f"tenant: required for role '{role.value}'"
        raise ValueError(msg)
    token = new_token()
    with db.write() as conn:
        row = conn.execute(
            insert(tokens)
            .values(
                token_hash=hash_token(token),
                tenant=tenant,
                role=role.value,
                note=note,
                created_at=now,
            )
            .returning(tokens.c.id)
        ).one()
    return int(row.id), token


def revoke_token(db: Database, token_id: int, *, now: float, tenant: str | None = None) -> bool:
    """Revoke a token (only within ``tenant`` when given); False if there is no such token."""
    stmt = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
    if tenant is not None:
        stmt = stmt.where(tokens.c.tenant == tenant)
    with db.write() as conn:
        return conn.execute(stmt.values(revoked_at=now)).rowcount == 1


def list_tokens(db: Database, tenant: str | None = None) -> list[dict[str, object]]:
    """Every token's metadata (never the secret), optionally of one tenant."""
    stmt = select(
        tokens.c.id,
        tokens.c.tenant,
        tokens.c.role,
        tokens.c.note,
        tokens.c.created_at,
        tokens.c.revoked_at,
    ).order_by(tokens.c.id)
    if tenant is not None:
        stmt = stmt.where(tokens.c.tenant == tenant)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


class Authenticator:
    """Resolves bearer tokens, with a short cache so each request is not a database read."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, what :meth:`resolve` would answer) if the cache knows; (False, None) if not.

        Never touches the database, so the async submit path can call it on the event loop.
        """
        hit = self._cache.get(hash_token(token))  # one dict read: atomic under the GIL
        if hit is not None and self._clock() - hit[0] < CACHE_TTL_S:
            return True, hit[1]
        return False, None

    def resolve(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise."""
        digest = hash_token(token)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        with self._db.read() as conn:
            row = conn.execute(
                select(tokens.c.id, tokens.c.tenant, tokens.c.role).where(
                    tokens.c.token_hash == digest, tokens.c.revoked_at.is_(None)
                )
            ).one_or_none()
        principal = None if row is None else Principal(int(row.id), row.tenant, Role(str(row.role)))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal
