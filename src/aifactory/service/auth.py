"""Tenancy and bearer tokens.

A token is 32 random bytes shown once; the database keeps only its SHA-256. A plain (not
salted, not slow) hash is right here: the secret has 256 bits of entropy, so there is
nothing to brute-force, and lookup must be one indexed equality per request.

Roles (what each may do is decided in :mod:`aifactory.service.api`):

- ``member``: submits to, sees and cancels jobs of its own tenant;
- ``tenant-admin``: the same, and manages its tenant's tokens; where tenants form a tree
  (organisation -> consortium -> project, issue #17 §2), it also sees and cancels the jobs
  of every tenant below its own, sees their quotas and manages their tokens (as a Slurm
  account coordinator's rights cover the sub-accounts): a consortium's admin looks after
  its projects, a project's admin sees neither its parent nor its siblings;
- ``admin``: everything, on every tenant.

Projects (issue #19): a member token sees and charges only the projects that name it as a
member; a tenant-admin, every project of its tenant (and endorses their requests); an
admin (the platform) approves, rejects, tops up and extends allocations.

A token may carry an expiry (``expires_at``), after which it is refused like a revoked one.
Revocation reaches every replica through the database: each revocation increments a
counter row in the same transaction, and each replica reads that counter at most every
``CACHE_TTL_S`` before trusting its cache (see :class:`Authenticator`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, insert, select, update

from aifactory.service.db import Database
from aifactory.service.tables import auth_state, tokens

TOKEN_PREFIX = "aif_"  # noqa: S105 (a public prefix that makes leaked tokens greppable)
# How long a replica answers from its token cache without reading the revocation counter:
# a revoked token is refused by every replica at most this long after the revocation
# commits, and the cache's cost is one small read per replica per period (a thread hop on
# the request that does it), whatever the number of tokens in use.
CACHE_TTL_S = 0.5
MAX_CACHED = 10_000  # tokens remembered per replica (refusals included); then it restarts
# A token accepted here within this long is "vouched for": an address locked out for bad
# tokens may still present it (it is then checked as usual), so a tenant behind the same
# NAT as a guesser keeps working, while a guesser, who knows no such token, gets nothing.
VOUCH_S = 3600.0
REVOCATIONS = "tokens"  # the auth_state row counting revocations


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

    def can_act_on(
        self, tenant: str, descendants: Mapping[str, Collection[str]] | None = None
    ) -> bool:
        """Whether this caller may see or change jobs of ``tenant``: its own tenant; with
        the tenant tree given (``descendants``: tenant -> every tenant below it), for a
        tenant-admin also a tenant below its own (see :meth:`reach`)."""
        if self.role is Role.ADMIN or self.tenant == tenant:
            return True
        if descendants is None or self.role is not Role.TENANT_ADMIN or self.tenant is None:
            return False
        return tenant in descendants.get(self.tenant, ())

    def reach(self, descendants: Mapping[str, Collection[str]]) -> frozenset[str] | None:
        """The tenants whose jobs and quotas this caller sees: None (every one) for an
        admin; its tenant and every tenant below it for a tenant-admin; its tenant alone
        for a member (a member of a consortium is not an admin of its projects)."""
        if self.role is Role.ADMIN:
            return None
        if self.tenant is None:
            return frozenset()
        if self.role is Role.TENANT_ADMIN:
            return frozenset((self.tenant, *descendants.get(self.tenant, ())))
        return frozenset((self.tenant,))

    def can_see_project(
        self,
        tenant: str,
        members: Collection[int],
        descendants: Mapping[str, Collection[str]] | None = None,
    ) -> bool:
        """Whether this caller may see (and manage, or charge) a project of ``tenant``: an
        admin; the tenant-admins of the tenant and, with the tenant tree given, of a tenant
        above it (the subtree rule of jobs and quotas, :meth:`can_act_on`); and the member
        tokens named in ``members`` (issue #19). A member never sees a project that does
        not name it, not even of its own tenant."""
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.TENANT_ADMIN:
            return self.can_act_on(tenant, descendants)
        return self.tenant == tenant and self.token_id in members


def descendants_of(parents: Iterable[tuple[str, str | None]]) -> dict[str, frozenset[str]]:
    """Every tenant below each tenant of a tree given as (tenant, its parent or None)
    pairs: children, their children, and so on. A leaf maps to the empty set."""
    children: dict[str, list[str]] = {}
    for name, parent in parents:
        children.setdefault(name, [])
        if parent is not None:
            children.setdefault(parent, []).append(name)

    def below(name: str) -> frozenset[str]:
        found: set[str] = set()
        stack = list(children.get(name, ()))
        while stack:
            kid = stack.pop()
            if kid not in found:  # (a spec's tree has no cycle; this only guards)
                found.add(kid)
                stack.extend(children.get(kid, ()))
        return frozenset(found)

    return {name: below(name) for name in children}


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    db: Database,
    *,
    tenant: str | None,
    role: Role,
    now: float,
    note: str = "",
    expires_at: float | None = None,
) -> tuple[int, str]:
    """Store a new token's hash; return its id and the token (the only time it exists).

    ``expires_at`` (epoch seconds) is when it stops being accepted; None: never.
    """
    if role is not Role.ADMIN and not tenant:
        msg = f"tenant: required for role '{role.value}'"
        raise ValueError(msg)
    if expires_at is not None and expires_at <= now:
        msg = "expires_at: must be in the future"
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
                expires_at=expires_at,
            )
            .returning(tokens.c.id)
        ).one()
    return int(row.id), token


def revoke_token(
    db: Database,
    token_id: int,
    *,
    now: float,
    tenant: str | None = None,
    within: Collection[str] | None = None,
) -> bool:
    """Revoke a token (only of ``tenant``, or of one of the tenants ``within``, when
    given); False if there is no such token.

    The revocation counter moves in the same transaction, so no replica can see the
    counter's new value and still read the token as valid.
    """
    stmt = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
    if tenant is not None:
        stmt = stmt.where(tokens.c.tenant == tenant)
    if within is not None:
        stmt = stmt.where(tokens.c.tenant.in_(sorted(within)))
    with db.write() as conn:
        if conn.execute(stmt.values(revoked_at=now)).rowcount != 1:
            return False
        bumped = conn.execute(
            update(auth_state)
            .where(auth_state.c.name == REVOCATIONS)
            .values(version=auth_state.c.version + 1)
        ).rowcount
        if bumped == 0:  # the row was deleted by hand: put it back, past any value seen
            conn.execute(insert(auth_state).values(name=REVOCATIONS, version=1))
        return True


def revocation_version(conn: Connection) -> int:
    """The revocation counter (0 where the row is missing)."""
    got = conn.execute(
        select(auth_state.c.version).where(auth_state.c.name == REVOCATIONS)
    ).scalar_one_or_none()
    return int(got or 0)


def list_tokens(
    db: Database, tenant: str | None = None, *, within: Collection[str] | None = None
) -> list[dict[str, object]]:
    """Every token's metadata (never the secret), optionally of one tenant, or of the
    tenants ``within``."""
    stmt = select(
        tokens.c.id,
        tokens.c.tenant,
        tokens.c.role,
        tokens.c.note,
        tokens.c.created_at,
        tokens.c.revoked_at,
        tokens.c.expires_at,
    ).order_by(tokens.c.id)
    if tenant is not None:
        stmt = stmt.where(tokens.c.tenant == tenant)
    if within is not None:
        stmt = stmt.where(tokens.c.tenant.in_(sorted(within)))
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the cache knows of one token: who it is (None: refused) and until when."""

    principal: Principal | None
    expires_at: float | None

    def answer(self, now: float) -> Principal | None:
        if self.expires_at is not None and now >= self.expires_at:
            return None
        return self.principal


class Authenticator:
    """Resolves bearer tokens, with a cache so that a request is not a database read.

    Invariant: an entry is trusted only while the revocation counter was read less than
    ``CACHE_TTL_S`` ago, and every entry was read at (or after) the counter value the
    cache holds; a new counter value empties the cache. So a revocation, which moves the
    counter in its own transaction, is seen by every replica within ``CACHE_TTL_S``.
    Expiry needs no counter: each entry keeps its ``expires_at`` and is checked at each use.
    """

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._vouched: dict[str, float] = {}  # digest -> when last accepted (kept on clears)
        self._version = -1  # the counter value the entries were read under (-1: none yet)
        self._checked_at = float("-inf")  # clock time just before that counter was read
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, what :meth:`resolve` would answer) if the cache knows; (False, None) if not.

        Never touches the database, so the async submit path can call it on the event loop.
        """
        now = self._clock()
        if now - self._checked_at >= CACHE_TTL_S:
            return False, None
        hit = self._cache.get(hash_token(token))  # one dict read: atomic under the GIL
        if hit is None:
            return False, None
        return True, hit.answer(now)

    def vouched(self, token: str) -> bool:
        """Whether this replica accepted ``token`` within ``VOUCH_S`` (no database read)."""
        seen = self._vouched.get(hash_token(token))
        return seen is not None and self._clock() - seen < VOUCH_S

    def invalidate(self) -> None:
        """Trust nothing cached until the counter is read again (after a local revoke)."""
        with self._lock:
            self._checked_at = float("-inf")

    def resolve(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked, unexpired token; None otherwise."""
        digest = hash_token(token)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and now - self._checked_at < CACHE_TTL_S:
                return hit.answer(now)
        with self._db.read() as conn:
            # The counter first: on PostgreSQL each statement sees what was committed
            # before it began, so a token read after the counter is at least as new.
            version = revocation_version(conn)
            row = conn.execute(
                select(
                    tokens.c.id,
                    tokens.c.tenant,
                    tokens.c.role,
                    tokens.c.revoked_at,
                    tokens.c.expires_at,
                ).where(tokens.c.token_hash == digest)
            ).one_or_none()
        if row is None or row.revoked_at is not None:
            entry = _Entry(None, None)
        else:
            entry = _Entry(Principal(int(row.id), row.tenant, Role(str(row.role))), row.expires_at)
        with self._lock:
            if version > self._version:  # revocations since: nothing cached can be trusted
                self._cache.clear()
                self._version = version
            if version == self._version:  # (an older read, racing a newer one, is not kept)
                self._checked_at = max(self._checked_at, now)
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[digest] = entry
            answer = entry.answer(now)
            if answer is not None:
                if len(self._vouched) >= MAX_CACHED:
                    self._vouched.clear()
                self._vouched[digest] = now
        return answer
