"""The REST API: every endpoint for every role, validation, idempotency, pagination.

Runs on SQLite and PostgreSQL. The scheduler loop runs for real (in a thread) over a
fake executor, so jobs start and end as the test says.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from aifactory.service import auth, batcher
from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import allocations, cancel_requests, jobs, tokens
from test_service_support import DB_PARAMS, FakeExecutor, database_url, wait_for


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@dataclass
class Env:
    client: TestClient
    service: Service
    executor: FakeExecutor
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def submit(self, who: str, **body: Any) -> Any:
        payload = {"gpus": 1, "command": "true"} | body
        return self.client.post("/v1/jobs", json=payload, headers=self.h(who))

    def count(self, table: sa.Table) -> int:
        with self.service.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def job(self, job_id: int) -> Any:
        with self.service.db.read() as conn:
            return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()


ROLES = {
    "admin": (None, Role.ADMIN),
    "lab-admin": ("lab", Role.TENANT_ADMIN),
    "lab": ("lab", Role.MEMBER),
    "startup": ("startup", Role.MEMBER),
}


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setattr(auth, "CACHE_TTL_S", 0.0)  # revocation visible at once
    executor = FakeExecutor()
    settings = ServiceSettings(
        database_url=db_url, fleet="demo", data_dir=tmp_path, tick_s=0.05, lock_retry_s=0.05
    )
    service = Service(settings, executor=executor)
    with TestClient(create_app(service)) as client:
        toks = {
            name: create_token(service.db, tenant=t, role=r, now=time.time())[1]
            for name, (t, r) in ROLES.items()
        }
        yield Env(client, service, executor, toks)


ENDPOINTS = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/1"),
    ("DELETE", "/v1/jobs/1"),
    ("GET", "/v1/jobs/1/forecast"),
    ("GET", "/v1/quotas"),
    ("GET", "/v1/fleet"),
    ("GET", "/metrics"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("DELETE", "/v1/tokens/1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_but_healthz_needs_a_valid_token(env: Env, method: str, path: str) -> None:
    assert env.submit("lab").status_code == 201
    before = env.count(jobs)
    for headers in ({}, {"Authorization": "Bearer aif_not-a-token"}, {"Authorization": "Basic x"}):
        resp = env.client.request(method, path, headers=headers, json={"gpus": 1, "command": "x"})
        assert resp.status_code == 401, (method, path, headers)
    assert env.count(jobs) == before
    assert env.job(1)["state"] in ("pending", "running")


def test_healthz_is_open_and_reports_the_scheduler_role(env: Env) -> None:
    resp = env.client.get("/healthz")
    assert resp.status_code == 200
    wait_for(lambda: env.client.get("/healthz").json()["scheduler"] == "leader")
    assert resp.json()["fleet"] == "demo"


def test_a_member_cannot_submit_read_or_cancel_as_another_tenant(env: Env) -> None:
    theirs = env.submit("startup", gpus=8, gpu_class="b200").json()["id"]
    wait_for(lambda: env.job(theirs)["state"] == "running")
    before_jobs, before_cancels = env.count(jobs), env.count(cancel_requests)

    refused = env.submit("lab", tenant="startup")
    assert refused.status_code == 403
    assert "tenant" in refused.json()["detail"]
    assert env.client.get(f"/v1/jobs/{theirs}", headers=env.h("lab")).status_code == 404
    assert env.client.delete(f"/v1/jobs/{theirs}", headers=env.h("lab")).status_code == 404
    assert env.client.get(f"/v1/jobs/{theirs}/forecast", headers=env.h("lab")).status_code == 404
    assert env.client.get("/v1/jobs?tenant=startup", headers=env.h("lab")).status_code == 403
    listed = env.client.get("/v1/jobs", headers=env.h("lab")).json()["items"]
    assert all(j["tenant"] == "lab" for j in listed)
    # a tenant-admin has the same boundary
    assert env.submit("lab-admin", tenant="startup").status_code == 403
    assert env.client.delete(f"/v1/jobs/{theirs}", headers=env.h("lab-admin")).status_code == 404

    assert env.count(jobs) == before_jobs
    assert env.count(cancel_requests) == before_cancels
    assert env.job(theirs)["state"] == "running"
    assert env.executor.cancelled == []


def test_admins_act_on_every_tenant(env: Env) -> None:
    theirs = env.submit("startup").json()["id"]
    made = env.submit("admin", tenant="startup")
    assert made.status_code == 201
    assert made.json()["tenant"] == "startup"
    missing = env.submit("admin")  # an admin token has no tenant of its own
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["field"] == "tenant"
    assert env.client.get(f"/v1/jobs/{theirs}", headers=env.h("admin")).status_code == 200
    tenants = {
        j["tenant"] for j in env.client.get("/v1/jobs", headers=env.h("admin")).json()["items"]
    }
    assert tenants == {"startup"}
    assert env.client.delete(f"/v1/jobs/{theirs}", headers=env.h("admin")).status_code == 202


@pytest.mark.parametrize("who", ["lab", "lab-admin"])
def test_members_and_tenant_admins_manage_their_own_jobs(env: Env, who: str) -> None:
    created = env.submit(who, gpus=2, gpu_class="h100", name="mine")
    assert created.status_code == 201
    assert created.headers["Location"] == f"/v1/jobs/{created.json()['id']}"
    job_id = created.json()["id"]
    wait_for(lambda: env.job(job_id)["state"] == "running")
    shown = env.client.get(f"/v1/jobs/{job_id}", headers=env.h(who)).json()
    assert [e["state"] for e in shown["history"]] == ["pending", "running"]
    assert len(shown["placement"]) == 1
    assert len(shown["placement"][0]["gpus"]) == 2
    resp = env.client.delete(f"/v1/jobs/{job_id}", headers=env.h(who))
    assert resp.status_code == 202
    wait_for(lambda: env.job(job_id)["state"] == "cancelled")
    assert len(env.executor.cancelled) == 1
    assert env.count(allocations) == 0
    again = env.client.delete(f"/v1/jobs/{job_id}", headers=env.h(who))
    assert again.status_code == 409


def test_pending_cancel_is_immediate(env: Env) -> None:
    full = env.submit("lab", gpus=288, gpu_class="h100").json()["id"]  # all of lab's h100
    wait_for(lambda: env.job(full)["state"] == "running")
    waiting = env.submit("lab", gpus=8, gpu_class="h100").json()["id"]
    time.sleep(0.2)  # a few cycles: it must still wait
    assert env.job(waiting)["state"] == "pending"
    resp = env.client.delete(f"/v1/jobs/{waiting}", headers=env.h("lab"))
    assert resp.status_code == 202
    assert resp.json()["state"] == "cancelled"
    env.executor.end(str(full))
    wait_for(lambda: env.job(full)["state"] == "completed")
    time.sleep(0.2)
    assert env.job(waiting)["state"] == "cancelled"
    assert str(waiting) not in {launch.job_id for launch in env.executor.launches.values()}


def test_job_runs_to_completion_with_its_exit_code(env: Env) -> None:
    ok = env.submit("lab", gpus=4, gpu_class="h100").json()["id"]
    bad = env.submit("lab", gpus=4, gpu_class="h100").json()["id"]
    wait_for(lambda: set(env.executor.running()) == {str(ok), str(bad)})
    env.executor.end(str(ok), 0)
    env.executor.end(str(bad), 3)
    wait_for(lambda: env.job(bad)["state"] == "failed" and env.job(ok)["state"] == "completed")
    assert env.job(bad)["exit_code"] == 3
    assert env.count(allocations) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"gpus": 0, "command": "x"}, "gpus"),
        ({"gpus": "many", "command": "x"}, "gpus"),
        ({"gpus": 1}, "command"),
        ({"gpus": 1, "command": "x", "time_limit_s": -1}, "time_limit_s"),
        ({"gpus": 1, "command": "x", "priority_class": "urgent"}, "priority_class"),
        ({"gpus": 1, "command": "x", "colour": "red"}, "colour"),
        ({"gpus": 1, "command": "x", "gpu_class": "tpu"}, "gpu_class"),
        ({"gpus": 5000, "command": "x"}, "gpus"),
        ({"gpus": 1, "command": "x", "tenant": "nobody"}, "tenant"),
        ({"gpus": 1, "command": "x", "checkpoint_interval_s": 0}, "checkpoint_interval_s"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(env: Env, body: dict[str, Any], field: str) -> None:
    who = "admin" if "tenant" in body else "lab"
    resp = env.client.post("/v1/jobs", json=body, headers=env.h(who))
    assert resp.status_code == 422
    problems = resp.json()["detail"]
    assert any(p["field"] == field and p["reason"] for p in problems), problems
    assert env.count(jobs) == 0


def test_bodies_are_size_limited(env: Env) -> None:
    huge = {"gpus": 1, "command": "x" * 200_000}
    resp = env.client.post("/v1/jobs", json=huge, headers=env.h("lab"))
    assert resp.status_code == 413
    assert "body" in resp.json()["detail"]
    assert env.count(jobs) == 0


def test_idempotency_key_makes_retries_safe(env: Env) -> None:
    key = {"Idempotency-Key": "abc-1"}
    body = {"gpus": 1, "command": "echo 1"}
    first = env.client.post("/v1/jobs", json=body, headers=env.h("lab") | key)
    second = env.client.post("/v1/jobs", json=body, headers=env.h("lab") | key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other_body = env.client.post("/v1/jobs", json=body | {"gpus": 2}, headers=env.h("lab") | key)
    assert other_body.status_code == 409
    other_tenant = env.client.post("/v1/jobs", json=body, headers=env.h("startup") | key)
    assert other_tenant.status_code == 201
    assert env.count(jobs) == 2


def test_concurrent_retries_of_one_key_make_one_job(env: Env) -> None:
    """Retries racing each other (they may land in one group-commit batch or in several):
    one 201, the rest 200 with the same job, one row."""
    key = {"Idempotency-Key": "race-1"}
    body = {"gpus": 1, "command": "echo race"}
    answers: list[tuple[int, int]] = []
    lock = threading.Lock()

    def post() -> None:
        resp = env.client.post("/v1/jobs", json=body, headers=env.h("lab") | key)
        with lock:
            answers.append((resp.status_code, resp.json()["id"]))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(code for code, _ in answers) == [200] * 7 + [201]
    assert len({job_id for _, job_id in answers}) == 1
    assert env.count(jobs) == 1


def test_a_database_outage_during_submit_is_a_503(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def outage(*args: object, **kwargs: object) -> None:
        raise sa.exc.OperationalError("INSERT ...", {}, Exception("connection refused"))

    monkeypatch.setattr(batcher, "submit_batch", outage)
    resp = env.submit("lab")
    assert resp.status_code == 503
    assert "retry" in resp.json()["detail"]
    assert env.count(jobs) == 0


def test_list_filters_and_paginates_newest_first(env: Env) -> None:
    ids = [
        env.submit("lab", name="a" if i % 2 else "b", gpus=100, gpu_class="h100").json()["id"]
        for i in range(7)
    ]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = env.client.get("/v1/jobs", params=params, headers=env.h("lab")).json()
        seen.extend(j["id"] for j in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 3
    named = env.client.get("/v1/jobs", params={"name": "a"}, headers=env.h("lab")).json()
    assert {j["id"] for j in named["items"]} == set(ids[1::2])
    assert env.client.delete(f"/v1/jobs/{ids[0]}", headers=env.h("lab")).status_code == 202
    wait_for(lambda: env.job(ids[0])["state"] == "cancelled")
    by_state = env.client.get(
        "/v1/jobs", params={"state": "cancelled"}, headers=env.h("lab")
    ).json()
    assert [j["id"] for j in by_state["items"]] == [ids[0]]
    bad = env.client.get("/v1/jobs", params={"state": "sleeping"}, headers=env.h("lab"))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"].startswith("query.state")


def test_quotas_are_scoped_to_the_callers_tenant(env: Env) -> None:
    env.submit("lab", gpus=8, gpu_class="h100")
    wait_for(lambda: env.count(allocations) == 8)
    mine = env.client.get("/v1/quotas", headers=env.h("lab")).json()
    assert mine
    assert {r["tenant"] for r in mine} == {"lab"}
    h100 = next(r for r in mine if r["gpu_class"] == "h100")
    assert (h100["nominal"], h100["used"]) == (288, 8)
    everyone = env.client.get("/v1/quotas", headers=env.h("admin")).json()
    assert {r["tenant"] for r in everyone} == {"lab", "startup", "public"}


@pytest.mark.parametrize("who", list(ROLES))
def test_fleet_is_visible_to_every_role(env: Env, who: str) -> None:
    fleet = env.client.get("/v1/fleet", headers=env.h(who)).json()
    assert fleet["name"] == "demo"
    assert sum(c["gpus"] for c in fleet["classes"]) == fleet["gpus"] == 1008


def test_metrics_for_admins_in_prometheus_text(env: Env) -> None:
    env.submit("lab", gpus=2, gpu_class="h100")
    env.submit("startup", gpus=8, gpu_class="gb200", tenant=None)
    wait_for(lambda: env.count(allocations) == 10)
    for who in ("lab", "lab-admin", "startup"):
        assert env.client.get("/metrics", headers=env.h(who)).status_code == 403
    resp = env.client.get("/metrics", headers=env.h("admin"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "aifactory_busy_gpus 10" in text
    assert 'aifactory_running_jobs{tenant="lab"} 1' in text
    assert "aifactory_scheduling_cycle_seconds_count" in text
    assert "# TYPE aifactory_pending_gpus gauge" in text


def test_token_management_by_role(env: Env) -> None:
    def create(who: str, **body: Any) -> Any:
        return env.client.post("/v1/tokens", json=body, headers=env.h(who))

    assert create("lab", role="member").status_code == 403
    assert env.client.get("/v1/tokens", headers=env.h("lab")).status_code == 403
    assert create("lab-admin", role="member", tenant="startup").status_code == 403
    assert create("lab-admin", role="admin").status_code == 403
    made = create("lab-admin", role="member", note="ci")
    assert made.status_code == 201
    new = made.json()
    assert new["tenant"] == "lab"
    listed = env.client.get("/v1/tokens", headers=env.h("lab-admin")).json()
    assert {t["tenant"] for t in listed} == {"lab"}
    assert all("token" not in t and "token_hash" not in t for t in listed)
    with env.service.db.read() as conn:
        stored = [r.token_hash for r in conn.execute(sa.select(tokens.c.token_hash))]
    assert new["token"] not in stored  # only the hash is kept
    assert auth.hash_token(new["token"]) in stored
    their = {"Authorization": f"Bearer {new['token']}"}
    assert env.client.get("/v1/jobs", headers=their).status_code == 200
    startup_admin = create("admin", role="tenant-admin", tenant="startup").json()
    assert (
        env.client.delete(
            f"/v1/tokens/{startup_admin['id']}", headers=env.h("lab-admin")
        ).status_code
        == 404
    )
    assert (
        env.client.delete(f"/v1/tokens/{new['id']}", headers=env.h("lab-admin")).status_code == 204
    )
    assert env.client.get("/v1/jobs", headers=their).status_code == 401
    assert create("admin", role="boss").json()["detail"][0]["field"] == "role"


def test_openapi_describes_the_v1_api(env: Env) -> None:
    schema = env.client.get("/openapi.json").json()
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/forecast",
        "/v1/quotas",
        "/v1/fleet",
    ):
        assert path in schema["paths"]
    assert "JobSubmit" in schema["components"]["schemas"]


def test_openapi_documents_every_error_body_the_api_sends(env: Env) -> None:
    """Issue #14: each operation behind a token documents 401, 429 and 503 as ErrorBody,
    and each with inputs its 422 as the ``{"detail": [{"field", "reason"}]}`` it really
    sends (not FastAPI's default HTTPValidationError)."""
    schema = env.client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert set(components["FieldProblem"]["properties"]) == {"field", "reason"}

    def ref(op: dict[str, Any], code: int) -> str:
        body = op["responses"][str(code)]["content"]["application/json"]["schema"]
        return str(body["$ref"]).rsplit("/", 1)[1]

    checked = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if path in ("/dashboard", "/healthz"):
                continue
            checked += 1
            for code in (401, 429, 503):
                assert ref(op, code) == "ErrorBody", (method, path, code)
            assert "Retry-After" in op["responses"]["429"]["headers"]
            assert ref(op, 422) == "ValidationErrorBody", (method, path)  # unknown query
            for code in (403, 404, 409, 413):
                if str(code) in op["responses"]:
                    assert ref(op, code) == "ErrorBody", (method, path, code)
    # 11, the 14 operations of projects and allocations (#19), fleet status and share (#21),
    # the metrics history and the queue (#21 §1), a project's recent charges (#19), the
    # Twin page's reports, report tickets and what-if (#21 §1)
    assert checked == 33
    bad = env.submit("lab", gpus=0)
    assert set(bad.json()) == {"detail"}
    assert set(bad.json()["detail"][0]) == {"field", "reason"}


def test_forecast_from_a_fork_of_the_live_state(env: Env) -> None:
    full = env.submit("lab", gpus=288, gpu_class="h100", time_limit_s=600).json()["id"]
    wait_for(lambda: env.job(full)["state"] == "running")
    waiting = env.submit("lab", gpus=8, gpu_class="h100", time_limit_s=60).json()["id"]
    resp = env.client.get(f"/v1/jobs/{waiting}/forecast", headers=env.h("lab"))
    if importlib.util.find_spec("aifactory.twin.forecast") is None:
        assert resp.status_code == 503
        assert "forecast" in resp.json()["detail"]
        return
    assert resp.status_code == 200
    got = resp.json()
    started = env.job(full)["started_at"]
    # it can start only when the job holding all of lab's h100 reaches its time limit
    assert got["estimated_start"] >= started + 600 - 1
    assert got["estimated_end"] >= got["estimated_start"] + 60 - 1


def test_a_pending_job_says_why_it_waits(env: Env) -> None:
    """As squeue's REASON column: the scheduler's reason, shown by GET /v1/jobs/{id} and
    in the job list; a running job has none (issue #17 §4)."""
    full = env.submit("lab", gpus=288, gpu_class="h100", time_limit_s=600).json()["id"]
    wait_for(lambda: env.job(full)["state"] == "running")
    waiting = env.submit("lab", gpus=8, gpu_class="h100", time_limit_s=60).json()["id"]
    shown = env.client.get(f"/v1/jobs/{waiting}", headers=env.h("lab")).json()
    assert shown["state"] == "pending"
    assert shown["reason"] == "quota"  # lab's 288 h100 are all in use
    listed = env.client.get("/v1/jobs", headers=env.h("lab")).json()["items"]
    by_id = {j["id"]: j for j in listed}
    assert by_id[waiting]["reason"] == "quota"
    assert by_id[full]["reason"] is None
