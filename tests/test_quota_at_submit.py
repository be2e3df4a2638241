"""Quota at submit (issue #21 §2): a job that can never fit its tenant's quota is a 422
naming the limit, not a job accepted and failed a second later; the CLI says so in one line.

The demo fleet: startup holds gb200 nominal 72 with a borrowing limit of 72, so at most 144
gb200 GPUs can ever be its (the class has 432); public's gb200 quota is 72, no borrowing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.fleet import compile_topology, load_fleet
from aifactory.scheduler.scheduler import Scheduler
from aifactory.service.tables import jobs
from api_support import Env, running_api
from builders import make_job
from cli_support import as_user, cli, live_service, make_token
from test_service_support import DB_PARAMS, database_url


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    with running_api(db_url, tmp_path) as running:
        yield running


def test_a_gang_over_the_quota_ceiling_is_a_422_naming_it(env: Env) -> None:
    resp = env.submit("startup", gpus=145, gpu_class="gb200")
    assert resp.status_code == 422, resp.text
    [problem] = resp.json()["detail"]
    assert problem["field"] == "gpus"
    assert "at most 144" in problem["reason"]
    assert "startup" in problem["reason"]
    assert env.count(jobs) == 0  # refused before it was queued


def test_the_ceiling_itself_is_accepted(env: Env) -> None:
    assert env.submit("startup", gpus=144, gpu_class="gb200").status_code == 201


def test_any_class_takes_the_largest_ceiling(env: Env) -> None:
    # startup without a class: b200's 288 is its largest ceiling, within the fleet's 432
    assert env.submit("startup", gpus=288).status_code == 201
    resp = env.submit("startup", gpus=289)
    assert resp.status_code == 422
    assert "at most 288" in resp.json()["detail"][0]["reason"]


def test_an_admin_submitting_for_a_tenant_meets_that_tenants_limit(env: Env) -> None:
    resp = env.submit("admin", gpus=73, gpu_class="gb200", tenant="public")
    assert resp.status_code == 422
    assert "at most 72" in resp.json()["detail"][0]["reason"]
    with env.service.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == 0


def test_the_cli_shows_the_refusal_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/quota.db"
    with live_service(db_url, tmp_path) as (url, _):
        as_user(monkeypatch, url, make_token(db_url, "startup", "member"))
        got = cli("job", "submit", "true", "--gpus", "145", "--gpu-class", "gb200")
    assert got.exit_code == 2
    assert got.stdout == ""
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: 422: gpus: too big: 145 GPUs asked, at most 144")


def test_refusal_is_what_submit_would_say_and_changes_nothing() -> None:
    """The service asks ``Scheduler.refusal`` before it queues; it must agree with submit."""
    sched = Scheduler(compile_topology(load_fleet("demo")))
    cases = [
        make_job("fits", "startup", 0.0, 144, gpu_class="gb200"),
        make_job("big", "startup", 0.0, 145, gpu_class="gb200"),
        make_job("nobody", "nobody", 0.0, 1),
        make_job("bad-class", "lab", 0.0, 1, gpu_class="tpu"),
        make_job("public-big", "public", 0.0, 73, gpu_class="gb200"),
    ]
    said = [sched.refusal(job) for job in cases]
    assert len(sched.seats) == 0
    assert sum(r is not None for r in said) == 4
    for job, reason in zip(cases, said, strict=True):
        assert sched.submit(job, 0.0) == reason
