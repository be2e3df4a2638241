"""The dashboard's pages in a real browser (issue #21 §1): Playwright for Python driving
Debian's chromium (``executable_path``: no browser is downloaded) against a real
``aifactory serve`` with the local executor.

What a user does: log in with a token, see the overview's charts drawn from the metrics
history, submit a job through the form, find it pending with a reason and an expected
start (its own page and the queue), cancel it; a member sees only its tenant. A
screenshot of each page is written to ``$AIFACTORY_SCREENSHOTS`` (else the test's tmp dir)
as an artefact for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.fleet import load_fleet
from aifactory.fleet.topology import compile_topology
from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.service.samples import SAMPLE_S, Sampler
from test_service_crash import Server, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (.ci/run installs Debian's chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency)")

expect = sync_api.expect

HISTORY_SLOTS = 12  # an hour of 5-minute samples written before the server starts


def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("AIFACTORY_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    db = Database(url)
    db.upgrade()
    now = time.time()
    tokens = {
        "admin": create_token(db, tenant=None, role=Role.ADMIN, now=now)[1],
        "lab": create_token(db, tenant="lab", role=Role.MEMBER, now=now)[1],
        "startup": create_token(db, tenant="startup", role=Role.MEMBER, now=now)[1],
    }
    fleet = load_fleet("demo")
    sampler = Sampler(db, compile_topology(fleet), fleet, 14 * 86_400.0)
    for k in range(HISTORY_SLOTS, 0, -1):  # the history an hour-old service would have
        sampler.take(now - k * SAMPLE_S)
    db.dispose()
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


def open_page(browser: Any, srv: Server, token: str, page: str) -> Any:
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tab.errors = errors
    tab.goto(f"{srv.base}/dashboard#token={token}&page={page}")
    tab.wait_for_selector(f"body[data-page='{page}']", timeout=30_000)
    return tab


def submit(srv: Server, token: str, **body: Any) -> int:
    payload = {"gpus": 1, "command": "sleep 600", "time_limit_s": 600} | body
    auth = {"Authorization": f"Bearer {token}"}
    resp = httpx.post(f"{srv.base}/v1/jobs", json=payload, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def wait_state(srv: Server, token: str, job_id: int, state: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        got: dict[str, Any] = httpx.get(
            f"{srv.base}/v1/jobs/{job_id}", headers=auth, timeout=10
        ).json()
        if got["state"] == state or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_overview_charts_render_the_history(
    server: tuple[Server, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    srv, tokens = server
    tab = open_page(browser, srv, tokens["admin"], "overview")
    assert tab.inner_text("#fleet-name").startswith("demo: 1,008 GPUs")
    for chart in ("busy", "free", "pending", "power"):
        tab.wait_for_selector(f"#chart-{chart} svg")
    # free GPUs per site and class: one line each, through every sample
    free = tab.locator("#chart-free polyline.series")
    assert free.count() == 3  # seoul gb200, seoul h100, busan b200 in the demo fleet
    points = free.first.get_attribute("points") or ""
    assert len(points.split()) >= HISTORY_SLOTS
    # power against the caps: one line per site and one dashed cap per site; axis units
    assert tab.locator("#chart-power polyline.series").count() == 2
    assert tab.locator("#chart-power line.limit").count() == 2
    power_text = tab.inner_text("#chart-power")
    assert "kW" in power_text
    assert "seoul cap" in power_text
    assert "time (UTC)" in power_text
    tab.screenshot(path=str(shots(tmp_path) / "overview.png"), full_page=True)
    assert tab.errors == []


def test_submit_see_pending_with_reason_and_start_then_cancel(
    server: tuple[Server, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    srv, tokens = server
    # lab's whole h100 quota (and every h100 of the fleet) taken: the next h100 job waits
    big = submit(srv, tokens["lab"], name="all-h100", gpus=288, gpu_class="h100")
    assert wait_state(srv, tokens["lab"], big, "running")["state"] == "running"
    tab = open_page(browser, srv, tokens["lab"], "submit")
    tab.wait_for_selector("#submit-class option[value='h100']", state="attached")
    tab.fill("#submit-name", "from-the-form")
    tab.fill("#submit-gpus", "8")
    tab.select_option("#submit-class", "h100")
    tab.fill("#submit-time", "900")
    tab.fill("#submit-command", "sleep 900")
    tab.fill("#submit-grace", "120")  # its own preempt grace (issue #18)
    tab.screenshot(path=str(shots(tmp_path) / "submit.png"), full_page=True)
    tab.click("#submit-form button[type=submit]")
    tab.wait_for_url("**#job/*", timeout=15_000)
    job_id = int(tab.url.rsplit("/", 1)[1])
    tab.wait_for_selector("body[data-page='job'] >> text=from-the-form")
    field = "#job-fields tr[data-field='{}'] td"
    # (no wait_for_function: the page's CSP refuses the eval it needs, as it should)
    expect(tab.locator(field.format("reason"))).to_have_text(re.compile(r"\S"), timeout=15_000)
    assert tab.inner_text(field.format("state")) == "pending"
    assert tab.inner_text(field.format("priority")).endswith(", 120 s to save")
    assert tab.inner_text(field.format("reason")) != ""
    expected = tab.inner_text(field.format("expected start"))
    assert expected != "unknown"
    assert expected[:4].isdigit()  # a UTC date and time
    tab.screenshot(path=str(shots(tmp_path) / "job.png"), full_page=True)

    queue = open_page(browser, srv, tokens["lab"], "queues")
    queue.wait_for_selector(f"#pending a[href='#job/{job_id}']")
    row = queue.locator("#pending tbody tr", has=queue.locator(f"a[href='#job/{job_id}']"))
    cells = row.locator("td").all_inner_texts()
    assert cells[2] == "from-the-form"
    assert cells[7] != ""
    assert cells[8][:4].isdigit()
    assert {r[0] for r in rows(queue, "quotas")} == {"lab"}
    queue.screenshot(path=str(shots(tmp_path) / "queues.png"), full_page=True)

    tab.click("#job-cancel")
    expect(tab.locator(field.format("state"))).to_have_text(
        re.compile("^cancelled"), timeout=15_000
    )
    assert wait_state(srv, tokens["lab"], job_id, "cancelled")["state"] == "cancelled"
    history = [r[1] for r in rows(tab, "job-history")]
    assert history[0] == "pending"
    assert history[-1] == "cancelled"
    assert tab.errors == []
    assert queue.errors == []


def rows(tab: Any, table: str) -> list[list[str]]:
    return [tr.locator("td").all_inner_texts() for tr in tab.locator(f"#{table} tbody tr").all()]


def test_the_jobs_page_filters_sorts_and_a_member_sees_only_its_tenant(
    server: tuple[Server, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    srv, tokens = server
    gang = submit(srv, tokens["lab"], name="gang-of-36", gpus=288, gpu_class="h100")
    submit(srv, tokens["lab"], name="<b>eval</b>", gpus=1, gpu_class="gb200")
    submit(srv, tokens["startup"], name="startup-job", gpus=1, gpu_class="b200")
    assert wait_state(srv, tokens["lab"], gang, "running")["state"] == "running"
    tab = open_page(browser, srv, tokens["lab"], "jobs")
    tab.wait_for_selector("#jobs tbody tr")
    names = {r[2] for r in rows(tab, "jobs")}
    assert names == {"gang-of-36", "<b>eval</b>"}  # no startup job; markup shown as typed
    assert tab.locator("#jobs tbody b").count() == 0
    gang_row = next(r for r in rows(tab, "jobs") if r[2] == "gang-of-36")
    assert "[" in gang_row[7]  # 36 nodes in one compressed list
    assert len(gang_row[7]) < 60
    tab.click("#jobs th[data-key='gpus']")  # ascending by GPUs
    assert [r[3] for r in rows(tab, "jobs")] == ["1", "288"]
    tab.click("#jobs th[data-key='gpus']")
    assert [r[3] for r in rows(tab, "jobs")] == ["288", "1"]
    tab.fill("#filter-name", "gang-of-36")  # the API matches names exactly
    tab.click("#job-filter button[type=submit]")
    expect(tab.locator("#jobs tbody tr")).to_have_count(1)
    tab.screenshot(path=str(shots(tmp_path) / "jobs.png"), full_page=True)
    admin = open_page(browser, srv, tokens["admin"], "jobs")
    admin.wait_for_selector("#jobs tbody tr")
    assert {r[1] for r in rows(admin, "jobs")} == {"lab", "startup"}
    admin.select_option("#filter-tenant", "startup")
    admin.click("#job-filter button[type=submit]")
    expect(admin.locator("#jobs tbody tr")).to_have_count(1)
    assert rows(admin, "jobs")[0][2] == "startup-job"
    assert tab.errors == []
    assert admin.errors == []
