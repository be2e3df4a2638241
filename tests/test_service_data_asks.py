"""A job's data and site fields through the real service (issue #20 §1): the API bounds
them and checks site names against the fleet, the database keeps them (``data_ask``), the
loop hands them to the scheduler (a pinned job runs only at its site), and the job views
show them. Runs on SQLite and PostgreSQL.

The demo fleet: startup owns Busan's 288 b200 and has 72 gb200 of nominal quota in Seoul.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.service.tables import jobs
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url, wait_for


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    with running_api(db_url, tmp_path) as running:
        yield running


def job(env: Env, job_id: int) -> dict[str, Any]:
    resp = env.client.get(f"/v1/jobs/{job_id}", headers=env.h("startup"))
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


def refusal(resp: Any) -> dict[str, str]:
    assert resp.status_code == 422, (resp.status_code, resp.text)
    return {p["field"]: p["reason"] for p in resp.json()["detail"]}


def test_a_pinned_job_runs_at_its_site_and_shows_its_ask(env: Env) -> None:
    # Unpinned, startup's job would go to its own b200 in Busan (most unused nominal).
    made = env.submit(
        "startup",
        gpus=8,
        time_limit_s=600,
        site="seoul",
        dataset="corpus",
        dataset_bytes=1e12,
        data_site="seoul",
        allow_cross_site=False,
        grad_bytes=1.4e11,
        step_s=6.0,
    )
    assert made.status_code == 201, made.text
    wait_for(lambda: job(env, made.json()["id"])["state"] == "running")
    shown = job(env, made.json()["id"])
    assert {p["node"].split("/", 1)[0] for p in shown["placement"]} == {"seoul"}
    assert shown["data_ask"] == {
        "site": "seoul",
        "dataset": "corpus",
        "dataset_bytes": 1e12,
        "data_site": "seoul",
        "grad_bytes": 1.4e11,
        "step_s": 6.0,
    }
    plain = env.submit("startup", gpus=8, time_limit_s=600)
    assert plain.json()["data_ask"] is None


def test_bad_data_asks_are_a_422_naming_the_field(env: Env) -> None:
    assert "unknown site 'jeju'" in refusal(env.submit("startup", gpus=8, site="jeju"))["site"]
    got = refusal(env.submit("startup", gpus=8, dataset_bytes=1e12, data_site="mars"))
    assert "unknown site 'mars'" in got["data_site"]
    assert "data_site" in refusal(env.submit("startup", gpus=8, dataset_bytes=1e12))
    assert "dataset_bytes" in refusal(
        env.submit("startup", gpus=8, dataset_bytes=-1.0, data_site="seoul")
    )
    assert "step_s" in refusal(env.submit("startup", gpus=8, step_s=1e9))
    assert "allow_cross_site" in refusal(env.submit("startup", gpus=8, allow_cross_site="yes"))
    assert env.count(jobs) == 0
