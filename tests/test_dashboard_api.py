"""The API behind the dashboard's project and Twin pages (issues #19 and #21 §1).

- A project's balance, burn rate (GPU-hours a day over the last 7 days) and outlook (runs
  out before its period ends, or not), against figures worked out by hand; its recent
  charged run intervals; who may see them.
- Stored twin reports: listed for admins only, opened only through a ticket that names one
  file, expires, and dies with its token; nothing outside the reports folder is reachable
  (``..``, encoded or not, symbolic links, other file names).
- A what-if from the live state: the service's own forecast against one with the ordering
  policy changed, per job and per tenant, on a queue whose answer is worked out by hand;
  admins only, one at a time, its body bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aifactory.service import whatif_live
from aifactory.service.alloc_schemas import AllocationView
from aifactory.service.alloc_views import BURN_WINDOW_S, DAY_S, burn_and_forecast, outlook
from aifactory.service.auth import Role, create_token, revoke_token
from aifactory.service.tables import charges
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url

H = 3600.0
NOW = 1_795_000_000.0  # 2026-11-18, the service's clock (fixed: the test moves it itself)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def alloc(state: str, balance: float, end_s: float) -> AllocationView:
    return AllocationView(
        id=1,
        project=1,
        tenant="lab",
        gpu_class="h100",
        unit="GPU-hours of h100",
        state=state,
        requested_gpu_hours=1000.0,
        gpu_hours=1000.0,
        used_gpu_hours=1000.0 - balance,
        overrun_gpu_hours=0.0,
        balance_gpu_hours=balance,
        overdraft=False,
        start_s=NOW - 30 * DAY_S,
        end_s=end_s,
        justification="",
        estimate_gpu_hours=None,
        history=[],
    )


# 8 GPUs for the day before yesterday: 192 GPU-h; 4 GPUs from 10 to 6 days ago, of which the
# last day is inside the 7-day window: 96 GPU-h; 600 GPUs a month ago: outside. 288 GPU-h
# over 7 days is 288/7 = 41.142857 GPU-h a day.
CHARGES = [
    {"gpus": 8, "start_s": NOW - 2 * DAY_S, "end_s": NOW - DAY_S},
    {"gpus": 4, "start_s": NOW - 10 * DAY_S, "end_s": NOW - 6 * DAY_S},
    {"gpus": 600, "start_s": NOW - 31 * DAY_S, "end_s": NOW - 30 * DAY_S},
]


def test_burn_rate_and_outlook_by_hand() -> None:
    assert BURN_WINDOW_S == 7 * DAY_S
    # 144 GPU-h left at 288/7 a day lasts 144 * 7 / 288 = 3.5 days.
    active = [alloc("active", 144.0, NOW + 30 * DAY_S), alloc("requested", 5000.0, NOW + DAY_S)]
    burn, out_at = burn_and_forecast(active, CHARGES, NOW)
    assert burn == pytest.approx(288 / 7)
    assert out_at == pytest.approx(NOW + 3.5 * DAY_S)
    assert outlook(active, burn, out_at) == (144.0, NOW + 30 * DAY_S, "runs out")
    # the same balance on an allocation that ends in 2 days: it expires first
    short = [alloc("active", 144.0, NOW + 2 * DAY_S)]
    burn, out_at = burn_and_forecast(short, CHARGES, NOW)
    assert outlook(short, burn, out_at) == (144.0, NOW + 2 * DAY_S, "not before period end")
    # nothing burnt in the window; nothing active
    assert outlook(active, *burn_and_forecast(active, CHARGES[2:], NOW)) == (
        144.0,
        NOW + 30 * DAY_S,
        "no usage",
    )
    assert outlook(active[1:], *burn_and_forecast(active[1:], CHARGES, NOW))[2] == (
        "no active balance"
    )


def make_tokens(env: Env, clock: Clock) -> dict[str, tuple[int, str]]:
    db = env.service.db
    return {
        "alice": create_token(db, tenant="lab", role=Role.MEMBER, now=clock()),
        "bob": create_token(db, tenant="lab", role=Role.MEMBER, now=clock()),
        "sam": create_token(db, tenant="startup", role=Role.MEMBER, now=clock()),
    }


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_project_detail_and_recent_charges(db_url: str, tmp_path: Path) -> None:
    clock = Clock()
    with running_api(db_url, tmp_path, clock=clock, run_scheduler=False) as env:
        toks = make_tokens(env, clock)
        c = env.client
        resp = c.post(
            "/v1/projects",
            json={
                "name": "kor-llm",
                "start_s": NOW - 60 * DAY_S,
                "end_s": NOW + 30 * DAY_S,
                "members": [toks["alice"][0]],
            },
            headers=env.h("lab-admin"),
        )
        assert resp.status_code == 201, resp.text
        pid = resp.json()["id"]
        resp = c.post(
            "/v1/allocations",
            json={"project": pid, "gpu_class": "h100", "gpu_hours": 1200.0},
            headers=auth(toks["alice"][1]),
        )
        aid = resp.json()["id"]
        for step, who in (("endorse", "lab-admin"), ("approve", "admin")):
            done = c.post(f"/v1/allocations/{aid}/{step}", json={}, headers=env.h(who))
            assert done.status_code == 200, done.text
        job_ids = []
        for name in ("eval", "pretrain", "old"):
            resp = env.submit(
                "lab",
                headers=auth(toks["alice"][1]),
                name=name,
                gpus=1,
                gpu_class="h100",
                project=pid,
            )
            assert resp.status_code == 201, resp.text
            job_ids.append(resp.json()["id"])
        with env.service.db.write() as conn:
            conn.execute(
                sa.insert(charges),
                [
                    {"job_id": j, "attempt": 1, "project_id": pid, "gpu_class": "h100"} | ch
                    for j, ch in zip(job_ids, [*CHARGES[:2], CHARGES[1]], strict=True)
                ],
            )
        # 1200 granted; charged whole intervals, 192 + 384 + 384 = 960: 240 left. The burn
        # counts the window's part only, 192 + 96 + 96 = 384 in 7 days; 240 left lasts
        # 240 * 7 / 384 = 4.375 days.
        got = c.get(f"/v1/projects/{pid}", headers=auth(toks["alice"][1])).json()
        assert got["balance_gpu_hours"] == pytest.approx(240.0)
        assert got["burn_gpu_hours_per_day"] == pytest.approx(384 / 7)
        assert got["exhausted_at"] == pytest.approx(NOW + 4.375 * DAY_S)
        assert got["period_end_s"] == pytest.approx(NOW + 30 * DAY_S)
        assert got["outlook"] == "runs out"
        recent = c.get(f"/v1/projects/{pid}/charges", headers=auth(toks["alice"][1]))
        assert recent.status_code == 200, recent.text
        rows = recent.json()
        # latest end first (two end together: the later charge first)
        assert [r["name"] for r in rows] == ["eval", "old", "pretrain"]
        assert [r["gpu_hours"] for r in rows] == pytest.approx([192.0, 384.0, 384.0])
        one = c.get(f"/v1/projects/{pid}/charges", params={"limit": 1}, headers=env.h("admin"))
        assert len(one.json()) == 1
        # neither another member of the tenant nor another tenant sees it; bounds are 422s
        for who in ("bob", "sam"):
            for path in (f"/v1/projects/{pid}", f"/v1/projects/{pid}/charges"):
                assert c.get(path, headers=auth(toks[who][1])).status_code == 404
        assert c.get(f"/v1/projects/{pid}/charges", headers=env.h("lab-admin")).status_code == 200
        for bad in (0, 1001, "x"):
            resp = c.get(
                f"/v1/projects/{pid}/charges", params={"limit": bad}, headers=env.h("admin")
            )
            assert resp.status_code == 422
            assert "limit" in resp.text


# -- stored twin reports ----------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    root = tmp_path / "reports"
    (root / "philly-fifo").mkdir(parents=True)
    (root / "philly-fifo" / "report.html").write_text("<h1>philly fifo</h1>")
    (root / "philly-fifo" / "summary.json").write_text('{"secret": 1}')
    (root / "power-sweep").mkdir()
    (root / "power-sweep" / "sweep.html").write_text("<h1>sweep</h1>")
    (root / "empty").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.html").write_text("<h1>not a stored report</h1>")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "half").mkdir()
    (root / "half" / "report.html").symlink_to(outside / "report.html")
    return root


def ticket(env: Env, who: str, name: str, file: str) -> Any:
    return env.client.post(f"/v1/twin/reports/{name}/{file}/ticket", headers=env.h(who))


def test_reports_are_listed_for_admins_and_opened_by_ticket(tmp_path: Path, reports: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=clock, run_scheduler=False, reports_dir=reports) as env:
        c = env.client
        got = c.get("/v1/twin/reports", headers=env.h("admin"))
        assert got.status_code == 200, got.text
        items = {r["name"]: (r["kind"], r["files"]) for r in got.json()["items"]}
        assert items == {
            "philly-fifo": ("run", ["report.html"]),
            "power-sweep": ("sweep", ["sweep.html"]),
        }
        for who in ("lab", "lab-admin"):
            assert c.get("/v1/twin/reports", headers=env.h(who)).status_code == 403
            assert ticket(env, who, "philly-fifo", "report.html").status_code == 403
        t = ticket(env, "admin", "philly-fifo", "report.html")
        assert t.status_code == 200, t.text
        link = t.json()["url"]
        assert t.json()["expires_at"] == pytest.approx(NOW + 60)
        page = c.get(link)
        assert page.status_code == 200
        assert page.text == "<h1>philly fifo</h1>"
        csp = page.headers["content-security-policy"]
        assert "sandbox" in csp
        assert "script-src" not in csp  # default-src 'none': no script at all
        assert "frame-ancestors 'self'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        # the ticket opens that file only, not without it, not changed, not once expired
        path, _, query = link.partition("?ticket=")
        assert c.get(path).status_code == 404
        assert c.get("/twin/reports/power-sweep/sweep.html?ticket=" + query).status_code == 404
        forged = query[:-1] + ("0" if query[-1] != "0" else "1")
        assert c.get(f"{path}?ticket={forged}").status_code == 404
        longer = query.split(".")
        longer[1] = str(int(longer[1]) + 3600)  # a later expiry invalidates the signature
        assert c.get(f"{path}?ticket={'.'.join(longer)}").status_code == 404
        clock.now += 61
        assert c.get(link).status_code == 404
        # revoking the token voids its tickets at once
        clock.now = NOW
        assert c.get(link).status_code == 200
        admin_id = env.service.auth.resolve(env.tokens["admin"])
        assert admin_id is not None
        revoke_token(env.service.db, admin_id.token_id, now=clock())
        assert c.get(link).status_code == 404


def test_nothing_outside_the_reports_folder_is_reachable(tmp_path: Path, reports: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=clock, run_scheduler=False, reports_dir=reports) as env:
        c = env.client
        # a link out of the folder, a file linked from outside, another file, a missing one
        for name, file in (
            ("linked", "report.html"),
            ("half", "report.html"),
            ("philly-fifo", "sweep.html"),
            ("nothing", "report.html"),
        ):
            assert ticket(env, "admin", name, file).status_code == 404, (name, file)
        for name, file in (("philly-fifo", "summary.json"), ("philly-fifo", "..")):
            assert ticket(env, "admin", name, file).status_code in (404, 422), (name, file)
        for path in (
            "/v1/twin/reports/../outside/report.html/ticket",
            "/v1/twin/reports/%2e%2e/report.html/ticket",
            "/v1/twin/reports/..%2Foutside/report.html/ticket",
            "/v1/twin/reports/.hidden/report.html/ticket",
        ):
            assert c.post(path, headers=env.h("admin")).status_code in (404, 405, 422), path
        good = ticket(env, "admin", "philly-fifo", "report.html").json()["url"]
        query = good.partition("?")[2]
        for path in (
            "/twin/reports/linked/report.html",
            "/twin/reports/%2e%2e/outside/report.html",
            "/twin/reports/..%2Foutside/report.html",
            "/twin/reports/philly-fifo/summary.json",
        ):
            assert c.get(f"{path}?{query}").status_code in (404, 422), path


# -- what-if from the live state ----------------------------------------------------------


def test_whatif_compares_policies_on_the_live_queue(tmp_path: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=clock, run_scheduler=False) as env:
        c = env.client
        # Every h100 of the demo fleet (288) per job: one at a time. FIFO runs them in
        # submission order (10 h, 1 h, 1 h); SJF runs the two short ones first.
        ids = []
        for name, hours in (("long", 10), ("short-a", 1), ("short-b", 1)):
            resp = env.submit("lab", name=name, gpus=288, gpu_class="h100", time_limit_s=hours * H)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        same = c.post("/v1/twin/whatif", json={}, headers=env.h("admin"))
        assert same.status_code == 200, same.text
        assert {j["start_delta_s"] for j in same.json()["jobs"]} == {0.0}
        resp = c.post("/v1/twin/whatif", json={"policy": "sjf"}, headers=env.h("admin"))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["base"]["policy"] == "fifo"
        assert body["variant"]["policy"] == "sjf"
        jobs = {j["id"]: j for j in body["jobs"]}
        base = [jobs[i]["base_start"] - NOW for i in ids]
        variant = [jobs[i]["variant_start"] - NOW for i in ids]
        # starts, in hours from now (each job's start waits for the previous one's end)
        assert [round(b / H, 6) for b in base] == [0, 10, 11]
        assert [round(v / H, 6) for v in variant] == [2, 0, 1]
        (lab,) = body["tenants"]
        assert lab["tenant"] == "lab"
        assert (lab["pending"], lab["compared"]) == (3, 3)
        assert lab["mean_start_delta_s"] == pytest.approx((2 - 10 - 10) / 3 * H)
        assert lab["mean_wait_base_s"] == pytest.approx(7 * H)
        assert lab["mean_wait_variant_s"] == pytest.approx(1 * H)
        # the jobs that moved most come first
        assert [j["id"] for j in body["jobs"]][2] == ids[0]


def test_whatif_is_admin_only_bounded_and_one_at_a_time(tmp_path: Path) -> None:
    clock = Clock()
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=clock, run_scheduler=False) as env:
        c = env.client
        for who in ("lab", "lab-admin", "startup"):
            resp = c.post("/v1/twin/whatif", json={"policy": "sjf"}, headers=env.h(who))
            assert resp.status_code == 403
        for bad, field in (
            ({"policy": "random"}, "policy"),
            ({"backfill": "deep"}, "backfill"),
            ({"horizon_days": 366}, "horizon_days"),
            ({"horizon_days": 0}, "horizon_days"),
            ({"horizon_days": 1e-138}, "horizon_days"),  # the twin samples every horizon
            ({"gpus": 100}, "gpus"),
        ):
            resp = c.post("/v1/twin/whatif", json=bad, headers=env.h("admin"))
            assert resp.status_code == 422, bad
            assert field in resp.text
        assert whatif_live.BUSY.acquire(blocking=False)
        try:
            busy = c.post("/v1/twin/whatif", json={}, headers=env.h("admin"))
        finally:
            whatif_live.BUSY.release()
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "5"
        t0 = time.perf_counter()
        assert c.post("/v1/twin/whatif", json={}, headers=env.h("admin")).status_code == 200
        assert time.perf_counter() - t0 < 30


def test_whatif_refuses_a_queue_past_its_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=Clock(), run_scheduler=False, whatif_max_jobs=2) as env:
        for _ in range(2):
            assert env.submit("lab").status_code == 201
        ok = env.client.post("/v1/twin/whatif", json={}, headers=env.h("admin"))
        assert ok.status_code == 200, ok.text
        assert env.submit("lab").status_code == 201
        refused = env.client.post("/v1/twin/whatif", json={}, headers=env.h("admin"))
        assert refused.status_code == 409
        assert "3 live jobs, more than the 2" in refused.json()["detail"]
