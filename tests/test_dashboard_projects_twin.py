"""The dashboard's projects and Twin pages in a real browser (issues #19 and #21 §1), as
tests/test_dashboard_pages.py drives the others: Playwright on Debian's chromium against a
real ``aifactory serve`` with the local executor.

Projects: a project with a granted allocation and a job that ran against it; its page shows
the balance, the burn rate, when it runs out and the job charged; a member of the same
tenant who is not in the project, and a member of another tenant, do not see it.
Twin: a report written by ``aifactory.simulate`` into the service's reports folder opens in
the page's frame (through a ticket, the report sandboxed); a what-if with the policy changed
shows per-tenant and per-job differences; a member is told the page is for admins.
Screenshots go to ``$AIFACTORY_SCREENSHOTS`` (else the test's tmp dir).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

import aifactory
from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.workload.synth import synthesize
from test_dashboard_pages import CHROMIUM, open_page, rows, shots, submit, wait_state
from test_service_crash import Server, free_port

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (.ci/run installs Debian's chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency)")
expect = sync_api.expect
DAY = 86_400.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, dict[str, tuple[int, str]]]]:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    db = Database(url)
    db.upgrade()
    now = time.time()
    tokens = {
        name: create_token(db, tenant=tenant, role=role, now=now)
        for name, tenant, role in (
            ("admin", None, Role.ADMIN),
            ("lab-admin", "lab", Role.TENANT_ADMIN),
            ("alice", "lab", Role.MEMBER),
            ("bob", "lab", Role.MEMBER),
            ("sam", "startup", Role.MEMBER),
        )
    }
    db.dispose()
    # a twin report stored where the service looks: DATA_DIR/reports/NAME
    trace = tmp_path / "w.parquet"
    pq.write_table(synthesize(aifactory.load_fleet("demo"), 0.1, 0.5, 3), trace)
    aifactory.simulate(fleet="demo", trace=trace, seed=1).report(tmp_path / "reports" / "demo-fifo")
    srv = Server(url, free_port(), tmp_path)
    srv.start()
    yield srv, tokens
    srv.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


def call(srv: Server, token: str, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(
        method,
        f"{srv.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.is_success, resp.text
    return resp.json()


def test_project_pages_show_balance_burn_outlook_and_respect_roles(
    server: tuple[Server, dict[str, tuple[int, str]]], browser: Any, tmp_path: Path
) -> None:
    srv, toks = server
    now = time.time()
    secret = {k: v[1] for k, v in toks.items()}
    project = call(
        srv,
        secret["lab-admin"],
        "POST",
        "/v1/projects",
        {
            "name": "kor-llm-7b",
            "title": "A Korean 7B model",
            "pi": "Dr. Kim",
            "start_s": now - DAY,
            "end_s": now + 90 * DAY,
            "members": [toks["alice"][0]],
        },
    )
    pid = project["id"]
    alloc = call(
        srv,
        secret["alice"],
        "POST",
        "/v1/allocations",
        {"project": pid, "gpu_class": "h100", "gpu_hours": 100.0, "justification": "pretrain"},
    )
    call(srv, secret["lab-admin"], "POST", f"/v1/allocations/{alloc['id']}/endorse", {})
    call(srv, secret["admin"], "POST", f"/v1/allocations/{alloc['id']}/approve", {})
    job = submit(
        srv,
        secret["alice"],
        name="tokenizer-run",
        gpus=8,
        gpu_class="h100",
        command="sleep 2",
        project=pid,
    )
    assert wait_state(srv, secret["alice"], job, "completed")["state"] == "completed"

    tab = open_page(browser, srv, secret["alice"], "projects")
    tab.wait_for_selector(f"#projects tr[data-project-id='{pid}']")
    listed = rows(tab, "projects")
    assert [r[0] for r in listed] == ["kor-llm-7b"]
    assert listed[0][5] == "1 / 1"  # one allocation, active
    assert listed[0][6] == "100"
    tab.screenshot(path=str(shots(tmp_path) / "projects.png"), full_page=True)

    tab.click(f"#projects a[href='#project/{pid}']")
    tab.wait_for_selector(f"#project-charges a[href='#job/{job}']")
    field = "#project-fields tr[data-field='{}'] td"
    charged = rows(tab, "project-charges")
    assert charged[0][1] == "tokenizer-run"
    used = float(charged[0][7])
    assert 8 * 2 / 3600 <= used < 1  # 8 GPUs for the job's 2 s and the loop's reaction
    allocs = rows(tab, "project-allocs")
    assert allocs[0][2] == "active"
    assert allocs[0][4] == "100"
    detail = call(srv, secret["alice"], "GET", f"/v1/projects/{pid}")
    shown = tab.inner_text(field.format("balance")).split()[0]
    assert float(shown) == pytest.approx(detail["balance_gpu_hours"], abs=0.005)
    assert detail["balance_gpu_hours"] == pytest.approx(100 - used, abs=0.0001)
    assert "GPU-h/day" in tab.inner_text(field.format("burn rate"))
    # a few GPU-seconds a week will not spend 100 GPU-hours within the 90-day period
    assert tab.inner_text(field.format("runs out")).startswith("not before period end")
    # this month's use a day, one line for h100, and the burn rate dashed
    chart = "#chart-project-use"
    tab.wait_for_selector(f"{chart} polyline.series", state="attached")
    assert tab.locator(f"{chart} polyline.series").get_attribute("data-series") == "h100"
    assert tab.locator(f"{chart} line.limit").count() == 1
    assert "GPU-h" in tab.inner_text(chart)
    tab.screenshot(path=str(shots(tmp_path) / "project.png"), full_page=True)
    assert tab.errors == []

    # bob is in lab but not in the project; sam is in another tenant
    for who in ("bob", "sam"):
        other = open_page(browser, srv, secret[who], "projects")
        assert rows(other, "projects") == []
        other.goto(f"{srv.base}/dashboard#project/{pid}")
        expect(other.locator("#status")).to_have_text(re.compile("not found"), timeout=15_000)
        assert other.inner_text("#project-name") == ""
        assert other.errors == []


def test_twin_page_opens_a_stored_report_and_runs_a_whatif(
    server: tuple[Server, dict[str, tuple[int, str]]], browser: Any, tmp_path: Path
) -> None:
    srv, toks = server
    secret = {k: v[1] for k, v in toks.items()}
    # every h100 taken by one job; two more wait behind it, a long one first
    big = submit(srv, secret["alice"], name="all-h100", gpus=288, gpu_class="h100")
    assert wait_state(srv, secret["alice"], big, "running")["state"] == "running"
    long = submit(
        srv, secret["alice"], name="long", gpus=288, gpu_class="h100", time_limit_s=36_000
    )
    short = submit(srv, secret["alice"], name="short", gpus=8, gpu_class="h100", time_limit_s=600)

    tab = open_page(browser, srv, secret["admin"], "twin")
    tab.wait_for_selector("#reports tr[data-report='demo-fifo']")
    tab.click("#reports tr[data-report='demo-fifo'] button.open-report")
    frame = tab.frame_locator("#report-frame")
    expect(frame.locator("h1").first).to_be_visible(timeout=15_000)
    assert "demo" in frame.locator("body").inner_text()
    assert frame.locator("svg").count() > 0  # the report's charts drawn inside the frame

    tab.select_option("#whatif-policy", "sjf")
    tab.click("#whatif-form button[type=submit]")
    tab.wait_for_selector("body[data-whatif='done']", timeout=60_000)
    assert "fifo/easy (the service) against sjf/easy" in tab.inner_text("#whatif-result")
    tenants = {r[0]: r for r in rows(tab, "whatif-tenants")}
    assert set(tenants) == {"lab"}
    assert tenants["lab"][1] == "2"  # pending
    moved = {r[0]: r for r in rows(tab, "whatif-jobs")}
    assert {str(long), str(short), str(big)} <= set(moved)
    # shortest first: the 10-minute job no longer waits for the 10-hour one to finish
    assert moved[str(short)][6].startswith("-")
    assert moved[str(big)][6] == "0"  # running: its forecast is the same in both
    tab.screenshot(path=str(shots(tmp_path) / "twin.png"), full_page=True)
    assert tab.errors == []

    # a member: the page's calls are refused (the page is never marked loaded), and it says so
    member = browser.new_page(viewport={"width": 1400, "height": 1000})
    member_errors: list[str] = []
    member.on("pageerror", lambda e: member_errors.append(str(e)))
    member.goto(f"{srv.base}/dashboard#token={secret['alice']}&page=twin")
    expect(member.locator("#status")).to_have_text(re.compile("admin only"), timeout=15_000)
    assert rows(member, "reports") == []
    member.screenshot(path=str(shots(tmp_path) / "twin-member.png"), full_page=True)
    assert member_errors == []


def test_twin_page_whatif_with_one_more_server(
    server: tuple[Server, dict[str, tuple[int, str]]], browser: Any, tmp_path: Path
) -> None:
    """Every h100 busy and an 8-GPU job waiting: the form's 'add GPUs' change (one h100
    server in Seoul) forecasts it starting now; an unknown site is refused naming the
    field; a change added to the list is sent too."""
    srv, toks = server
    secret = {k: v[1] for k, v in toks.items()}
    big = submit(srv, secret["alice"], name="all-h100", gpus=288, gpu_class="h100")
    assert wait_state(srv, secret["alice"], big, "running")["state"] == "running"
    waits = submit(srv, secret["alice"], name="waits", gpus=8, gpu_class="h100")

    tab = open_page(browser, srv, secret["admin"], "twin")
    tab.wait_for_selector("#whatif-sites option[value='seoul']", state="attached")
    tab.select_option("#whatif-edit", "add_gpus")
    fields = "#whatif-fleet fieldset[data-edit='add_gpus']"
    assert tab.locator(fields).is_visible()
    assert not tab.locator("#whatif-fleet fieldset[data-edit='set_quota']").is_visible()
    for name, value in (("site", "daegu"), ("model", "h100"), ("owner", "lab"), ("gpus", "8")):
        tab.fill(f"{fields} input[name='{name}']", value)
    tab.click("#whatif-form button[type=submit]")
    tab.wait_for_selector("body[data-whatif='failed']", timeout=60_000)
    assert "edits[0].site: unknown site 'daegu'" in tab.inner_text("#whatif-result")

    tab.fill(f"{fields} input[name='site']", "seoul")
    tab.click("#whatif-form button[type=submit]")
    tab.wait_for_selector("body[data-whatif='done']", timeout=60_000)
    result = tab.inner_text("#whatif-result")
    assert "1 change: h100 288 \u2192 296 GPUs" in result
    moved = {r[0]: r for r in rows(tab, "whatif-jobs")}
    # it waited for the 600-second job's end; with the new server it starts now
    assert moved[str(waits)][6].startswith("-")
    assert moved[str(big)][6] == "0"
    tab.screenshot(path=str(shots(tmp_path) / "twin-add-gpus.png"), full_page=True)

    # the change moved to the list (its fields cleared) is still what the what-if runs
    tab.click("#whatif-add-edit")
    assert tab.locator("#whatif-edits li").all_inner_texts() == [
        "add_gpus site=seoul model=h100 owner=lab gpus=8 remove"
    ]
    assert not tab.locator(fields).is_visible()
    tab.select_option("#whatif-power-cap", "off")
    tab.click("#whatif-form button[type=submit]")
    tab.wait_for_selector("body[data-whatif='done']", timeout=60_000)
    result = tab.inner_text("#whatif-result")
    assert "power caps off; 1 change: h100 288 \u2192 296 GPUs" in result
    assert tab.errors == []


def test_twin_page_whatif_with_the_failure_rate_scaled(
    server: tuple[Server, dict[str, tuple[int, str]]], browser: Any, tmp_path: Path
) -> None:
    """The form's 'scale the failure rate' change (x100, one day ahead), after a link's
    bandwidth put on the list, runs a sampled forecast: the page says so, with its seed and
    the failures expected for the service (the Llama 3 rate on the demo fleet's 1,008 GPUs
    for 24 hours) and for the what-if."""
    from aifactory.physics.failures import load_failure_model  # noqa: PLC0415

    rate = load_failure_model("llama3").rate_per_gpu_hour
    srv, toks = server
    secret = {k: v[1] for k, v in toks.items()}
    # running past the horizon: the forecast has work all day
    big = submit(
        srv, secret["alice"], name="all-h100", gpus=288, gpu_class="h100", time_limit_s=2 * DAY
    )
    assert wait_state(srv, secret["alice"], big, "running")["state"] == "running"
    tab = open_page(browser, srv, secret["admin"], "twin")
    tab.wait_for_selector("#whatif-sites option[value='seoul']", state="attached")
    # a link's bandwidth, by its two sites, goes to the list first
    tab.select_option("#whatif-edit", "link_bandwidth")
    links = "#whatif-fleet fieldset[data-edit='link_bandwidth']"
    for name, value in (("between_a", "seoul"), ("between_b", "busan"), ("factor", "4")):
        tab.fill(f"{links} input[name='{name}']", value)
    tab.click("#whatif-add-edit")
    assert tab.locator("#whatif-edits li").all_inner_texts() == [
        "link_bandwidth factor=4 between=seoul,busan remove"
    ]
    tab.select_option("#whatif-edit", "failure_rate")
    fields = "#whatif-fleet fieldset[data-edit='failure_rate']"
    assert tab.locator(fields).is_visible()
    tab.fill(f"{fields} input[name='multiplier']", "100")
    tab.fill("#whatif-horizon", "1")
    tab.fill("#whatif-samples", "2")
    tab.click("#whatif-form button[type=submit]")
    tab.wait_for_selector("body[data-whatif='done']", timeout=120_000)
    result = tab.inner_text("#whatif-result")
    assert "2 changes: same GPUs; sampled forecast, seed 2030, 2 samples (service / what-if)" in (
        result
    )
    expected = f"llama3 failures expected {rate * 1008 * 24:.1f} / {100 * rate * 1008 * 24:.1f}"
    assert expected in result
    tab.screenshot(path=str(shots(tmp_path) / "twin-failure-rate.png"), full_page=True)
    assert tab.errors == []
