"""Services and per-job preempt graces through the real service (issue #18 §2-§3): the API
bounds both fields, the database keeps them, the loop's scheduler gets them, and the job
views show them. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aifactory.service.tables import jobs
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url, wait_for


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    with running_api(db_url, tmp_path, preempt_grace_s=30.0) as running:
        yield running


def shown(env: Env, job_id: int) -> dict[str, Any]:
    resp = env.client.get(f"/v1/jobs/{job_id}", headers=env.h("lab"))
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


def test_a_service_and_a_grace_are_stored_shown_and_scheduled(env: Env) -> None:
    svc = env.submit("lab", gpus=8, service=True, time_limit_s=7200)
    own = env.submit("lab", gpus=8, preempt_grace_s=120.0)
    plain = env.submit("lab", gpus=8)
    for made in (svc, own, plain):
        assert made.status_code == 201, made.text
    ids = [r.json()["id"] for r in (svc, own, plain)]
    assert [(r.json()["service"], r.json()["preempt_grace_s"]) for r in (svc, own, plain)] == [
        (True, None),
        (False, 120.0),
        (False, None),
    ]
    with env.service.db.read() as conn:
        rows = {
            r.id: (r.service, r.preempt_grace_s)
            for r in conn.execute(sa.select(jobs.c.id, jobs.c.service, jobs.c.preempt_grace_s))
        }
    assert [rows[i] for i in ids] == [(True, None), (False, 120.0), (False, None)]
    loop = env.service.loop
    assert loop is not None
    wait_for(lambda: all(str(i) in loop._known for i in ids))
    sched = loop._sched
    assert sched is not None
    got = [loop._known[str(i)].job for i in ids]
    assert [j.service for j in got] == [True, False, False]
    # What the executor is told on a preemption: none for a service, the job's own grace,
    # else the service's default (--preempt-grace).
    assert [sched.preempt_grace(j) for j in got] == [0.0, 120.0, 30.0]
    wait_for(lambda: shown(env, ids[0])["state"] == "running")
    assert shown(env, ids[0])["service"] is True
    listed = env.client.get("/v1/jobs", headers=env.h("lab")).json()["items"]
    assert {j["id"]: j["preempt_grace_s"] for j in listed}[ids[1]] == 120.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"preempt_grace_s": -1.0}, "preempt_grace_s"),
        ({"preempt_grace_s": 3601.0}, "preempt_grace_s"),
        ({"preempt_grace_s": "60"}, "preempt_grace_s"),
        ({"preempt_grace_s": 1e308 * 10}, "preempt_grace_s"),
        ({"service": "yes"}, "service"),
        ({"service": 1}, "service"),
        # a service stops at once when preempted: a grace asked for it would be dropped
        ({"service": True, "preempt_grace_s": 60.0}, "preempt_grace_s"),
    ],
)
def test_bad_kinds_and_graces_are_a_422_naming_the_field(
    env: Env, body: dict[str, Any], field: str
) -> None:
    if body.get("preempt_grace_s") == float("inf"):
        resp = env.client.post(
            "/v1/jobs",
            content='{"gpus": 1, "command": "true", "preempt_grace_s": 1e999}',
            headers=env.h("lab") | {"Content-Type": "application/json"},
        )
    else:
        resp = env.submit("lab", **body)
    assert resp.status_code == 422, resp.text
    fields = {p["field"] for p in resp.json()["detail"]}
    assert field in fields, resp.text
    assert env.count(jobs) == 0


def test_a_retry_with_another_grace_is_a_conflict(env: Env) -> None:
    key = {"Idempotency-Key": "k-grace"}
    assert env.submit("lab", key, gpus=8, preempt_grace_s=60.0).status_code == 201
    assert env.submit("lab", key, gpus=8, preempt_grace_s=60.0).status_code == 200
    assert env.submit("lab", key, gpus=8, preempt_grace_s=90.0).status_code == 409
    assert env.submit("lab", key, gpus=8, service=True).status_code == 409
