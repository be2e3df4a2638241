"""Issue #19 end to end on a real database (SQLite and PostgreSQL): a project requests
GPU-hours, its tenant-admin endorses, the platform approves; jobs run and are charged per
run interval; the balance is exhausted (the time limit's overrun recorded, the job never
stopped for its balance); the next job waits with reason ``allocation``; a top-up lets it
start; the statement adds up to the charges. Then every role on every new endpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from aifactory.service.alloc_store import gpu_seconds
from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database, alembic_config
from aifactory.service.tables import charges, job_events
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url, wait_for

H = 3600.0
# The service's clock: real time moved into November 2026, plus jumps the test makes.
BASE = datetime(2026, 11, 10, tzinfo=UTC).timestamp()


@dataclass
class Clock:
    offset: float = field(default_factory=lambda: BASE - time.time())

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


@dataclass
class World:
    env: Env
    clock: Clock
    tokens: dict[str, tuple[int, str]]  # name -> (id, secret)

    def h(self, who: str) -> dict[str, str]:
        if who in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[who][1]}"}
        return self.env.h(who)

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.env.client.post(path, json=body, headers=self.h(who))

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.env.client.get(path, params=params, headers=self.h(who))

    def job(self, job_id: int) -> dict[str, Any]:
        resp = self.get("admin", f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    with running_api(db_url, tmp_path, clock=clock) as env:
        db = env.service.db
        tokens = {
            "alice": create_token(db, tenant="lab", role=Role.MEMBER, now=clock()),  # in A
            "bob": create_token(db, tenant="lab", role=Role.MEMBER, now=clock()),  # in B
            "sam": create_token(db, tenant="startup", role=Role.MEMBER, now=clock()),
            "startup-admin": create_token(
                db, tenant="startup", role=Role.TENANT_ADMIN, now=clock()
            ),
        }
        yield World(env, clock, tokens)


def make_project(w: World, name: str, member: str) -> int:
    resp = w.post(
        "lab-admin",
        "/v1/projects",
        {
            "name": name,
            "title": f"project {name}",
            "pi": "Dr. Kim",
            "start_s": BASE - 86_400,
            "end_s": BASE + 90 * 86_400,
            "members": [w.tokens[member][0]],
        },
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def grant(w: World, project: int, hours: float, who: str = "alice") -> int:
    resp = w.post(
        who,
        "/v1/allocations",
        {"project": project, "gpu_class": "h100", "gpu_hours": hours, "justification": "pretrain"},
    )
    assert resp.status_code == 201, resp.text
    alloc = int(resp.json()["id"])
    assert resp.json()["state"] == "requested"
    assert w.post("lab-admin", f"/v1/allocations/{alloc}/endorse", {}).status_code == 200
    resp = w.post("admin", f"/v1/allocations/{alloc}/approve", {"note": "round 1"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "active"
    return alloc


def submit(w: World, who: str, project: int, limit_s: float, gpus: int = 1) -> int:
    resp = w.env.client.post(
        "/v1/jobs",
        json={
            "gpus": gpus,
            "gpu_class": "h100",
            "command": "true",
            "time_limit_s": limit_s,
            "project": project,
        },
        headers=w.h(who),
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def state_is(w: World, job_id: int, *states: str) -> bool:
    return w.job(job_id)["state"] in states


def test_the_full_cycle(world: World) -> None:
    w = world
    pa = make_project(w, "kor-llm-a", "alice")
    # Before any grant, a job of the project waits with the reason.
    early = submit(w, "alice", pa, H)
    wait_for(lambda: (w.job(early)["reason"] or "").startswith("allocation"))
    assert w.job(early)["state"] == "pending"
    assert w.env.client.delete(f"/v1/jobs/{early}", headers=w.h("alice")).status_code == 202

    alloc = grant(w, pa, 2.0)
    # Job 1 needs 1 GPU x 2 h: exactly the grant. It runs past its limit (the loop stops
    # it for the time limit, not for the balance): the overrun is recorded.
    j1 = submit(w, "alice", pa, 2 * H)
    wait_for(lambda: state_is(w, j1, "running"))
    w.clock.jump(2 * H + 60)
    wait_for(lambda: state_is(w, j1, "failed"))
    view = w.get("alice", f"/v1/allocations/{alloc}").json()
    assert view["state"] == "exhausted"
    assert view["overrun_gpu_hours"] > 0
    assert view["balance_gpu_hours"] == pytest.approx(-view["overrun_gpu_hours"])

    # Job 2 waits on the allocation, with the reason shown.
    j2 = submit(w, "alice", pa, H)
    wait_for(lambda: (w.job(j2)["reason"] or "").startswith("allocation"))
    assert w.job(j2)["state"] == "pending"
    assert any(e["detail"].startswith("waiting: allocation") for e in w.job(j2)["history"])
    # A top-up too small keeps it waiting; a big enough one lets it start.
    resp = w.post("admin", f"/v1/allocations/{alloc}/topup", {"gpu_hours": 0.5})
    assert resp.status_code == 200, resp.text
    time.sleep(0.3)
    assert w.job(j2)["state"] == "pending"
    resp = w.post("admin", f"/v1/allocations/{alloc}/topup", {"gpu_hours": 2.0})
    assert resp.json()["state"] == "active"
    wait_for(lambda: state_is(w, j2, "running"))
    assert w.job(j2)["reason"] is None
    w.clock.jump(H / 2)
    w.env.executor.end(str(j2))
    wait_for(lambda: state_is(w, j2, "completed"))

    # The charges are the recorded run intervals, exactly.
    with w.env.service.db.read() as conn:
        rows = list(conn.execute(sa.select(charges)).mappings())
        events = conn.execute(
            sa.select(job_events.c.job_id, job_events.c.at, job_events.c.state).order_by(
                job_events.c.id
            )
        ).all()
    assert sorted(int(r["job_id"]) for r in rows) == [j1, j2]
    assert math.fsum(gpu_seconds(r) for r in rows) == math.fsum(recorded_gpu_seconds(events))

    month = datetime.fromtimestamp(w.clock(), UTC).strftime("%Y-%m")
    st = w.get("alice", f"/v1/projects/{pa}/statement", month=month)
    assert st.status_code == 200, st.text
    body = st.json()
    total_h = math.fsum(gpu_seconds(r) for r in rows) / H
    assert body["gpu_hours"] == pytest.approx(total_h)
    assert {j["job_id"] for j in body["by_job"]} == {j1, j2}
    assert math.fsum(d["gpu_hours"] for d in body["by_day"]) == pytest.approx(total_h)
    assert body["by_class"] == pytest.approx({"h100": total_h})
    assert {x["job_id"] for x in body["waited"]} == {early, j2}
    assert body["allocations"][0]["used_gpu_hours"] == pytest.approx(total_h)
    detail = w.get("alice", f"/v1/projects/{pa}").json()
    assert detail["burn_gpu_hours_per_day"] == pytest.approx(total_h / 7)
    assert detail["exhausted_at"] is not None
    assert detail["exhausted_at"] > w.clock()
    history = [c["to_state"] for c in w.get("admin", f"/v1/allocations/{alloc}").json()["history"]]
    assert history[:3] == ["requested", "endorsed", "approved"]
    assert "exhausted" in history
    report = w.get("admin", "/v1/allocations/report").json()
    assert [(r["project"], r["idle"]) for r in report] == [("kor-llm-a", False)]


def recorded_gpu_seconds(events: list[Any]) -> list[float]:
    """GPU-seconds of each run interval the job events record (1 GPU per job here)."""
    started: dict[int, float] = {}
    out = []
    for job_id, at, state in events:
        if state == "running":
            started[job_id] = at
        elif job_id in started:
            out.append(at - started.pop(job_id))
    return out


# -- every role on every new endpoint ----------------------------------------------------

# Who may do what. "alice" is a member of project A, "bob" of B (both tenant lab); "lab"
# is a lab member in no project; "sam" and "startup-admin" are of another tenant.
ROLES = ["admin", "lab-admin", "alice", "bob", "lab", "sam", "startup-admin"]
SEES_A = {"admin", "lab-admin", "alice"}
CASES: list[tuple[str, str, str, dict[str, Any] | None, set[str], int]] = [
    # (name, method, path, body, who succeeds, status of the others)
    ("show project", "GET", "/v1/projects/{a}", None, SEES_A, 404),
    ("statement", "GET", "/v1/projects/{a}/statement?month=2026-11", None, SEES_A, 404),
    ("show allocation", "GET", "/v1/allocations/{alloc}", None, SEES_A, 404),
    ("list allocations of A", "GET", "/v1/allocations?project={a}", None, SEES_A, 404),
    (
        "request for A",
        "POST",
        "/v1/allocations",
        {"project": "{a}", "gpu_hours": 1.0, "gpu_class": "h100"},
        SEES_A,
        404,
    ),
    (
        "create a project of lab",
        "POST",
        "/v1/projects",
        {"name": "{fresh}", "tenant": "lab", "start_s": BASE, "end_s": BASE + 1},
        {"admin", "lab-admin"},
        403,
    ),
    ("members of A", "POST", "/v1/projects/{a}/members", {"add": []}, {"admin", "lab-admin"}, 0),
    ("reject a request", "POST", "/v1/allocations/{req}/reject", {}, {"admin", "lab-admin"}, 0),
    ("reject an endorsed one", "POST", "/v1/allocations/{end}/reject", {}, {"admin"}, 0),
    ("endorse", "POST", "/v1/allocations/{req}/endorse", {}, {"admin", "lab-admin"}, 0),
    ("approve", "POST", "/v1/allocations/{end}/approve", {}, {"admin"}, 0),
    ("top-up", "POST", "/v1/allocations/{alloc}/topup", {"gpu_hours": 1.0}, {"admin"}, 0),
    ("extend", "POST", "/v1/allocations/{alloc}/extend", {"end_s": BASE + 1e8}, {"admin"}, 0),
    ("report", "GET", "/v1/allocations/report", None, {"admin"}, 403),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        out = value.format(**ids)
        return int(out) if value.startswith("{") and out.isdigit() else out
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_role_on_every_endpoint(world: World, case: Any) -> None:
    name, method, path, body, allowed, other_status = case
    w = world
    pa = make_project(w, "a", "alice")
    make_project(w, "b", "bob")
    ids: dict[str, Any] = {"a": pa, "alloc": grant(w, pa, 1.0)}
    for n, who in enumerate(ROLES):
        ids["fresh"] = f"new-{n}"
        # a fresh request (and an endorsed one) per caller: a move can be made once
        ids["req"] = w.post(
            "alice", "/v1/allocations", {"project": pa, "gpu_hours": 1.0, "gpu_class": "h100"}
        ).json()["id"]
        ids["end"] = w.post("alice", "/v1/allocations", {"project": pa, "gpu_hours": 1.0}).json()[
            "id"
        ]
        w.post("lab-admin", f"/v1/allocations/{ids['end']}/endorse", {})
        resp = w.env.client.request(
            method, _fill(path, ids), json=_fill(body, ids), headers=w.h(who)
        )
        if who in allowed:
            assert resp.status_code in (200, 201), (name, who, resp.text)
        else:
            # others: 404 where they may not see project A, 403 where they may see it
            # but not act (or the whole endpoint is refused)
            want = other_status or (403 if who in SEES_A else 404)
            assert resp.status_code == want, (name, who, resp.status_code, resp.text)


@pytest.mark.parametrize("who", ROLES)
def test_only_members_charge_a_project(world: World, who: str) -> None:
    """Members of project A cannot charge (submit to) project B; other tenants, neither."""
    w = world
    pa = make_project(w, "a", "alice")
    pb = make_project(w, "b", "bob")
    grant(w, pa, 1.0)
    for project, may in (
        (pa, {"admin", "lab-admin", "alice"}),
        (pb, {"admin", "lab-admin", "bob"}),
    ):
        body = {"gpus": 1, "gpu_class": "h100", "command": "true", "project": project}
        if who == "admin":
            body["tenant"] = "lab"
        resp = w.env.client.post("/v1/jobs", json=body, headers=w.h(who))
        if who in may:
            assert resp.status_code == 201, resp.text
        else:
            assert resp.status_code in (403, 422), resp.text
            if resp.status_code == 422:
                assert resp.json()["detail"][0]["field"] == "project"
    allocs = {a["project"] for a in w.get(who, "/v1/allocations").json()}
    assert allocs == ({pa} if who in {"admin", "lab-admin", "alice"} else set())
    listed = {p["name"] for p in w.get(who, "/v1/projects").json()}
    expected = {
        "admin": {"a", "b"},
        "lab-admin": {"a", "b"},
        "alice": {"a"},
        "bob": {"b"},
    }.get(who, set())
    assert listed == expected


def test_project_needs_a_class_and_refuses_bad_fields(world: World) -> None:
    w = world
    pa = make_project(w, "a", "alice")
    resp = w.env.client.post(
        "/v1/jobs", json={"gpus": 1, "command": "true", "project": pa}, headers=w.h("alice")
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "gpu_class"
    for bad, where in [
        ({"name": "no spaces"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"end_s": 1e12}, "end_s"),
        ({"members": [2**63]}, "members.0"),
        ({"members": [10**6]}, "members"),
    ]:
        body = {"name": "ok", "start_s": BASE, "end_s": BASE + 1} | bad
        resp = w.post("lab-admin", "/v1/projects", body)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["detail"][0]["field"] == where, resp.json()
    resp = w.get("alice", f"/v1/projects/{pa}/statement", month="2026-13")
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "query.month"


def test_overdraft_admits_at_low_priority(world: World) -> None:
    """An allocation that allows overdraft lets a job past the balance start, at low,
    preemptible priority, and says so in its history."""
    w = world
    pa = make_project(w, "a", "alice")
    resp = w.post(
        "alice",
        "/v1/allocations",
        {"project": pa, "gpu_class": "h100", "gpu_hours": 0.5, "overdraft": True},
    )
    alloc = resp.json()["id"]
    w.post("lab-admin", f"/v1/allocations/{alloc}/endorse", {})
    w.post("admin", f"/v1/allocations/{alloc}/approve", {})
    j = submit(w, "alice", pa, H)
    wait_for(lambda: state_is(w, j, "running"))
    job = w.job(j)
    assert job["priority_class"] == "low"
    assert job["preemptible"] is True
    assert any("overdraft" in e["detail"] for e in job["history"])


def test_a_job_never_draws_outside_the_period(world: World) -> None:
    """A grant that starts tomorrow covers nothing today: the job waits, with the reason,
    until the clock reaches the start; a grant that has expired covers nothing either,
    until an extension."""
    w = world
    pa = make_project(w, "a", "alice")
    resp = w.post(
        "alice",
        "/v1/allocations",
        {
            "project": pa,
            "gpu_class": "h100",
            "gpu_hours": 10.0,
            "start_s": w.clock() + 86_400,
            "end_s": w.clock() + 2 * 86_400,
        },
    )
    alloc = resp.json()["id"]
    w.post("lab-admin", f"/v1/allocations/{alloc}/endorse", {})
    assert w.post("admin", f"/v1/allocations/{alloc}/approve", {}).json()["state"] == "approved"
    j = submit(w, "alice", pa, H)
    wait_for(lambda: "no active allocation" in (w.job(j)["reason"] or ""))
    w.clock.jump(86_400)
    wait_for(lambda: state_is(w, j, "running"))
    w.env.executor.end(str(j))
    wait_for(lambda: state_is(w, j, "completed"))
    w.clock.jump(86_400)  # past the end
    late = submit(w, "alice", pa, H)
    wait_for(lambda: (w.job(late)["reason"] or "").startswith("allocation"))
    assert w.get("alice", f"/v1/allocations/{alloc}").json()["state"] == "expired"
    resp = w.post("admin", f"/v1/allocations/{alloc}/extend", {"end_s": w.clock() + 86_400})
    assert resp.json()["state"] == "active"
    wait_for(lambda: state_is(w, late, "running"))


def test_revision_0003_downgrades_and_upgrades(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    cfg = alembic_config()
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
        conn.commit()
    assert db.current_revision() == "0002"
    db.upgrade()
    assert db.current_revision() == "0007"
    db.dispose()


def test_jobs_admitted_together_cannot_overrun_together(world: World) -> None:
    """Each job given to the scheduler reserves its GPUs x time limit until its charge is
    written: of two jobs that each need the whole balance, one runs and one waits; when the
    first ends early, the second starts on what is left."""
    w = world
    pa = make_project(w, "a", "alice")
    grant(w, pa, 2.0)
    first = submit(w, "alice", pa, H)
    second = submit(w, "alice", pa, 2 * H)  # needs 2 GPU-h, with 1 reserved by the first
    wait_for(lambda: state_is(w, first, "running"))
    wait_for(lambda: (w.job(second)["reason"] or "").startswith("allocation"))
    assert w.job(second)["state"] == "pending"
    w.clock.jump(60)
    w.env.executor.end(str(first))
    wait_for(lambda: state_is(w, first, "completed"))
    # 2 h - 60 s left: still not 2 h, so it keeps waiting (the charge was seen)
    time.sleep(0.3)
    assert w.job(second)["state"] == "pending"
    assert "GPU-h of h100" in w.job(second)["reason"]
    w.post("admin", f"/v1/allocations/{grant_id(w, pa)}/topup", {"gpu_hours": 0.1})
    wait_for(lambda: state_is(w, second, "running"))


def grant_id(w: World, project: int) -> int:
    return int(w.get("admin", "/v1/allocations", project=project).json()[0]["id"])
