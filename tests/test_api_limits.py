"""Issue #14, fairness of access: per-tenant submit rate and pending-jobs limits, per-address
bad-token limits (each a 429 with Retry-After), and token expiry through the API.

Every case here failed before: there were no limits and no expiry at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.fleet import Fleet, load_fleet
from aifactory.fleet.spec import TenantLimits
from aifactory.service.auth import Role, create_token
from aifactory.service.limits import AuthFailures, PendingCounts, SubmitRate, TenantLimit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from api_support import running_api
from test_service_support import DB_PARAMS, database_url


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused(resp: Any, *words: str) -> int:
    """Assert a 429 with a Retry-After of whole seconds and the words; return it."""
    assert resp.status_code == 429, (resp.status_code, resp.text)
    assert all(w in resp.json()["detail"] for w in words), resp.json()
    wait = int(resp.headers["Retry-After"])
    assert wait >= 1
    return wait


def test_a_tenant_past_its_pending_limit_is_refused_and_others_are_not(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path, run_scheduler=False, max_pending_per_tenant=3) as env:
        for _ in range(3):
            assert env.submit("lab").status_code == 201
        refused(env.submit("lab"), "lab", "pending")
        assert env.submit("startup").status_code == 201  # another tenant's own count
        assert env.count(jobs) == 4
        # a pending job cancelled frees a place, seen at the next refresh of the count
        assert env.client.delete("/v1/jobs/1", headers=env.h("lab")).status_code == 202
        env.service.pending.refresh_s = 0.0
        assert env.submit("lab").status_code == 201


def test_the_pending_limit_counts_without_a_query_per_submit(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    with running_api(
        db_url, tmp_path, clock=clock, run_scheduler=False, max_pending_per_tenant=5
    ) as env:
        counted: list[int] = []
        real = env.service.pending._count

        def counting() -> Any:
            counted.append(1)
            return real()

        monkeypatch.setattr(env.service.pending, "_count", counting)
        for _ in range(5):
            assert env.submit("lab").status_code == 201
        refused(env.submit("lab"))
        assert len(counted) <= 1  # one read for all six, within one refresh period
        clock.now += 1.0
        refused(env.submit("lab"))
        assert len(counted) <= 2


def test_a_tenant_past_its_submit_rate_is_refused_with_retry_after(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    with running_api(
        db_url, tmp_path, clock=clock, run_scheduler=False, submit_rate_per_s=0.5, submit_burst=2
    ) as env:
        assert env.submit("lab").status_code == 201
        assert env.submit("lab").status_code == 201
        assert refused(env.submit("lab"), "lab", "submits/s") == 2  # one token per 2 s
        assert env.submit("startup").status_code == 201
        clock.now += 2.0
        assert env.submit("lab").status_code == 201
        assert env.count(jobs) == 4


def test_per_tenant_limits_from_the_fleet_spec_override_the_settings(
    db_url: str, tmp_path: Path
) -> None:
    demo = load_fleet("demo")
    tenants = [
        t.model_copy(update={"limits": TenantLimits(max_pending_jobs=1)})
        if t.name == "startup"
        else t
        for t in demo.tenants
    ]
    fleet = Fleet.model_validate(demo.model_copy(update={"tenants": tenants}).model_dump())
    with running_api(
        db_url, tmp_path, fleet=fleet, run_scheduler=False, max_pending_per_tenant=10
    ) as env:
        assert env.service.tenant_limit("startup").max_pending == 1
        assert env.service.tenant_limit("lab").max_pending == 10
        assert env.submit("startup").status_code == 201
        refused(env.submit("startup"), "startup")
        for _ in range(3):
            assert env.submit("lab").status_code == 201


def test_bad_tokens_from_one_address_are_refused_after_the_limit(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    with running_api(
        db_url,
        tmp_path,
        clock=clock,
        run_scheduler=False,
        auth_failures_per_window=3,
        auth_failure_window_s=60.0,
    ) as env:
        bad = {"Authorization": "Bearer aif_guess"}
        assert env.client.get("/v1/jobs", headers=env.h("lab")).status_code == 200
        for _ in range(3):
            assert env.client.get("/v1/jobs", headers=bad).status_code == 401
        wait = refused(env.client.get("/v1/jobs", headers=bad), "bad tokens")
        assert wait == 60
        # a token this replica knows to be good still works from that address; any other
        # is not even looked up (no database read, no oracle) until the window ends
        assert env.client.get("/v1/jobs", headers=env.h("lab")).status_code == 200
        refused(env.client.get("/v1/jobs", headers=env.h("startup")))
        # even once a revocation has emptied the token cache (found by schemathesis: a
        # revocation then locked every tenant behind the guesser's address out)
        env.service.auth.invalidate()
        env.service.auth._cache.clear()
        assert env.client.get("/v1/jobs", headers=env.h("lab")).status_code == 200
        # a missing token is not a guess, and is answered as before
        assert env.client.get("/v1/jobs").status_code == 401
        clock.now += 60.0
        assert env.client.get("/v1/jobs", headers=bad).status_code == 401


def test_an_expiring_token_made_through_the_api_is_refused_once_expired(
    db_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    with running_api(db_url, tmp_path, clock=clock, run_scheduler=False) as env:
        made = env.client.post(
            "/v1/tokens",
            json={"tenant": "lab", "expires_in_s": 3600},
            headers=env.h("admin"),
        )
        assert made.status_code == 201, made.text
        new = made.json()
        assert new["expires_at"] == pytest.approx(clock.now + 3600)
        theirs = {"Authorization": f"Bearer {new['token']}"}
        assert env.client.get("/v1/jobs", headers=theirs).status_code == 200
        listed = env.client.get("/v1/tokens", headers=env.h("admin")).json()
        shown = next(t for t in listed if t["id"] == new["id"])
        assert shown["expires_at"] == pytest.approx(clock.now + 3600)
        assert next(t for t in listed if t["id"] != new["id"])["expires_at"] is None
        clock.now += 3600
        resp = env.client.get("/v1/jobs", headers=theirs)
        assert resp.status_code == 401
        assert "expired" in resp.json()["detail"]


def test_a_token_expired_in_the_database_is_refused(db_url: str, tmp_path: Path) -> None:
    clock = Clock()
    with running_api(db_url, tmp_path, clock=clock, run_scheduler=False) as env:
        _, token = create_token(
            env.service.db, tenant="lab", role=Role.MEMBER, now=clock.now, expires_at=clock.now + 1
        )
        clock.now += 1
        assert (
            env.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )


def test_the_default_limits_do_not_throttle_a_benchmark_burst() -> None:
    """The bench sends 16 x 510 submits of one tenant as fast as it can (thousands/s): the
    defaults admit all of them (at 20,000/s of a fake clock, i.e. no time passing)."""
    s = ServiceSettings()
    limit = TenantLimit(s.max_pending_per_tenant, s.submit_rate_per_s, s.submit_burst)
    clock = Clock()
    rate = SubmitRate(clock)
    assert all(rate.take("research", limit) == 0.0 for _ in range(16 * 510))
    assert limit.max_pending >= 16 * 510


def test_the_limiters_alone() -> None:
    clock = Clock()
    failures = AuthFailures(2, 10.0, clock)
    failures.failed("a")
    assert failures.blocked("a") == 0.0
    failures.failed("a")
    assert failures.blocked("a") == pytest.approx(10.0)
    assert failures.blocked("b") == 0.0
    clock.now += 10.0
    assert failures.blocked("a") == 0.0
    counts = PendingCounts(lambda: {"lab": 2}, clock, refresh_s=1.0)
    assert counts.claim_refresh()
    assert not counts.claim_refresh()  # one refresh at a time
    counts.refresh()
    counts.add("lab")
    assert counts.pending("lab") == 3
    assert not counts.claim_refresh()  # fresh
    clock.now += 1.0
    assert counts.claim_refresh()
    counts.refresh()
    assert counts.pending("lab") == 2  # the local add was before the refresh: counted there
    unlimited = TenantLimit(0, 0.0, 0)
    assert SubmitRate(clock).take("x", unlimited) == 0.0
