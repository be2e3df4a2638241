"""Limits at the API's edge, so that no one caller can crowd out the others (issue #14).

- :class:`BodySizeLimit`: request bodies, as ASGI middleware before any parsing. A declared
  ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
  streams and cut off when it passes the limit. Either way: 413, nothing stored.
- :class:`SubmitRate`: submissions per second per tenant, a token bucket (429).
- :class:`PendingCounts`: pending jobs per tenant, from a count cached per tenant (429).
- :class:`AuthFailures`: bad-token attempts per client address in a fixed window (429).

Every limit here is per replica and in memory: the rate and failure counts are this
process's own, so N replicas admit up to N times the rate; the pending count is the
database's, read at most every ``refresh_s`` and advanced by this replica's own submits in
between, so replicas together can overshoot it by what the others submitted within one
refresh period. Each answers "how long until it is worth retrying" for ``Retry-After``.
They are called from the event loop; the one database read,
:meth:`PendingCounts.refresh`, runs in a thread, so that class alone takes a lock (held
for dict updates only, never during the query).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_TRACKED = 100_000  # tenants or addresses remembered; past it the oldest state is dropped


class BodyTooLargeError(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit."""


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _too_large(send, "body: invalid Content-Length", 400)
                    return
                if declared > self.max_bytes:
                    await _too_large(send, self._reason())
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await _too_large(send, self._reason())

    def _reason(self) -> str:
        return f"body: larger than the limit of {self.max_bytes} bytes"


async def _too_large(send: Send, reason: str, status: int = 413) -> None:
    body: Any = json.dumps({"detail": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class TenantLimit:
    """One tenant's limits (0: none of that kind)."""

    max_pending: int
    rate_per_s: float
    burst: int


class SubmitRate:
    """Submissions per second per tenant: a token bucket of ``burst`` that refills at
    ``rate_per_s``. The clock is injected (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def take(self, tenant: str, limit: TenantLimit) -> float:
        """Take one submit from ``tenant``'s bucket: 0.0 if allowed, else seconds to wait."""
        if limit.rate_per_s <= 0:
            return 0.0
        now = self._clock()
        burst = float(max(1, limit.burst))
        tokens, at = self._buckets.get(tenant, (burst, now))
        tokens = min(burst, tokens + (now - at) * limit.rate_per_s)
        if tokens < 1.0:
            self._buckets[tenant] = (tokens, now)
            return (1.0 - tokens) / limit.rate_per_s
        if len(self._buckets) >= MAX_TRACKED and tenant not in self._buckets:
            self._buckets.clear()  # tenants come from the fleet, so this is a safety net only
        self._buckets[tenant] = (tokens - 1.0, now)
        return 0.0


class PendingCounts:
    """Pending jobs per tenant, without a count query per submit.

    ``count`` (one GROUP BY over the pending-state index) runs at most every ``refresh_s``;
    in between, this replica's own accepted submits are added to the cached figure, so a
    burst from one replica cannot pass the limit by more than a refresh period of the other
    replicas' submits. Jobs that leave pending are seen at the next refresh (so the count
    errs high, towards refusing, for at most ``refresh_s``).
    """

    def __init__(
        self,
        count: Callable[[], Mapping[str, int]],
        clock: Callable[[], float],
        refresh_s: float = 1.0,
    ) -> None:
        self._count = count
        self._clock = clock
        self.refresh_s = refresh_s
        self._counts: Mapping[str, int] = {}
        self._added: dict[str, int] = {}
        self._read_at = -math.inf
        self._refreshing = False
        self._lock = threading.Lock()

    def claim_refresh(self) -> bool:
        """Whether a refresh is due and none is running; if so the caller must then call
        :meth:`refresh` (and no one else will until it ends)."""
        with self._lock:
            if self._refreshing or self._clock() - self._read_at < self.refresh_s:
                return False
            self._refreshing = True
            return True

    def refresh(self) -> None:
        """Read the counts (blocking: call it in a thread, after :meth:`claim_refresh`)."""
        try:
            started = self._clock()
            with self._lock:
                added_before = dict(self._added)
            counts = dict(self._count())
            with self._lock:
                # What was added while the query ran may or may not be in it: keep it (the
                # count errs high, and the next refresh settles it).
                self._added = {
                    t: n - added_before.get(t, 0)
                    for t, n in self._added.items()
                    if n > added_before.get(t, 0)
                }
                self._counts = counts
                self._read_at = started
        finally:
            self._refreshing = False

    def pending(self, tenant: str) -> int:
        """The best figure this replica has for ``tenant``'s pending jobs."""
        with self._lock:
            return self._counts.get(tenant, 0) + self._added.get(tenant, 0)

    def add(self, tenant: str) -> None:
        """One more pending job of ``tenant`` was committed by this replica."""
        with self._lock:
            self._added[tenant] = self._added.get(tenant, 0) + 1


class AuthFailures:
    """Bad-token attempts per client address: past ``limit`` in one window of
    ``window_s``, the address is refused (429) until the window ends. A fixed window, not
    a sliding one: one timestamp and one count per address."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window start, count)

    def blocked(self, address: str) -> float:
        """0.0 if ``address`` may try a token, else seconds until it may."""
        if self.limit <= 0:
            return 0.0
        got = self._windows.get(address)
        if got is None:
            return 0.0
        start, count = got
        left = start + self.window_s - self._clock()
        if left <= 0:
            del self._windows[address]
            return 0.0
        return left if count >= self.limit else 0.0

    def failed(self, address: str) -> None:
        """Record one bad token from ``address``."""
        if self.limit <= 0:
            return
        now = self._clock()
        start, count = self._windows.get(address, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        if len(self._windows) >= MAX_TRACKED and address not in self._windows:
            self._expire(now)
        self._windows[address] = (start, count + 1)

    def _expire(self, now: float) -> None:
        self._windows = {
            a: (s, c) for a, (s, c) in self._windows.items() if now - s < self.window_s
        }
        if len(self._windows) >= MAX_TRACKED:  # a flood of live addresses: forget them all
            self._windows.clear()
