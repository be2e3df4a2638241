"""The web dashboard, rendered by a real headless Chromium against a real ``aifactory serve``.

The page is static and holds no data; its script fetches fleet, quotas and jobs with the
token the user gives it. Checked here: what the browser actually rendered (Chromium's
``--dump-dom`` after the script ran), that user-supplied names are shown as text and
never interpreted as HTML, that a page without a token shows no data, and the headers
the static files are served with.
"""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from test_service_crash import Server, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (.ci/run installs Debian's chromium)"
)


class Rendered(HTMLParser):
    """Text of every table cell by table id and row, plus any tag found inside a cell."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: dict[str, str] = {}
        self.tags_in_cells: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table" and attr.get("id"):
            self._table = attr["id"]
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in {"td", "th"} and self._table is not None:
            self._cell = []
        elif self._cell is not None and tag not in {"button", "a"}:  # our own links, buttons
            self.tags_in_cells.append(tag)
        if attr.get("id") in {"status", "fleet-name"}:
            self._id = attr["id"]
            self.ids[self._id or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._id is not None:
            self.ids[self._id] += data


def render(url: str, profile: Path) -> Rendered:
    """The DOM after the page's script ran (virtual time waits for its fetches)."""
    assert CHROMIUM is not None
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=4000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    page = Rendered()
    page.feed(out.stdout)
    return page


@pytest.fixture
def server(tmp_path: Path) -> tuple[Server, str]:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    db = Database(url)
    db.upgrade()
    _, token = create_token(db, tenant="lab", role=Role.MEMBER, now=time.time())
    db.dispose()
    srv = Server(url, free_port(), tmp_path)
    srv.start()
    yield srv, token
    srv.stop()


@needs_chromium
def test_the_dashboard_shows_the_tokens_jobs_quotas_and_fleet(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    srv, token = server
    auth = {"Authorization": f"Bearer {token}"}
    names = ["train <b>llm</b> & co", "eval-7"]
    ids = []
    for name in names:
        body = {"name": name, "gpus": 1, "command": "sleep 30", "time_limit_s": 600}
        resp = httpx.post(f"{srv.base}/v1/jobs", json=body, headers=auth, timeout=10)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    # one page at a time (issue #21 §1): jobs, then queues and quotas, then the overview
    page = render(f"{srv.base}/dashboard#token={token}&page=jobs", tmp_path / "chromium")
    assert page.ids["status"].startswith("updated"), page.ids
    assert page.ids["fleet-name"].startswith("demo: ")
    jobs = {row[0]: row for row in page.tables["jobs"][1:]}
    assert set(jobs) == {str(i) for i in ids}
    assert {jobs[str(i)][2] for i in ids} == set(names)  # shown as typed, markup included
    assert page.tags_in_cells == []  # ... and never interpreted as HTML
    assert all(jobs[str(i)][1] == "lab" for i in ids)
    assert {jobs[str(i)][4] for i in ids} <= {"pending", "running"}
    page = render(f"{srv.base}/dashboard#token={token}&page=queues", tmp_path / "chromium")
    quota_tenants = {row[0] for row in page.tables["quotas"][1:]}
    assert quota_tenants == {"lab"}  # a member sees its own tenant's quota only
    page = render(f"{srv.base}/dashboard#token={token}", tmp_path / "chromium")
    fleet_classes = [row[0] for row in page.tables["fleet"][1:]]
    fleet = httpx.get(f"{srv.base}/v1/fleet", headers=auth, timeout=10).json()
    assert fleet_classes == [c["gpu_class"] for c in fleet["classes"]]


@needs_chromium
def test_without_a_token_the_page_shows_no_data(server: tuple[Server, str], tmp_path: Path) -> None:
    srv, token = server
    body = {"name": "hidden", "gpus": 1, "command": "sleep 30", "time_limit_s": 600}
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{srv.base}/v1/jobs", json=body, headers=auth, timeout=10).is_success
    page = render(f"{srv.base}/dashboard", tmp_path / "chromium")
    assert page.ids["status"].startswith("paste a token")
    assert page.tables["jobs"][1:] == []
    assert page.tables["quotas"][1:] == []


def test_the_static_files_carry_no_data_and_a_strict_policy(
    server: tuple[Server, str],
) -> None:
    srv, _token = server
    root = httpx.get(f"{srv.base}/", timeout=10)
    assert root.status_code == 307
    assert root.headers["location"] == "/dashboard"
    for path, kind in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/charts.js", "text/javascript"),
        ("/dashboard/pages.js", "text/javascript"),
    ]:
        resp = httpx.get(f"{srv.base}{path}", timeout=10)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith(kind)
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        name = "index.html" if path == "/dashboard" else path.rsplit("/", 1)[1]
        packaged = (importlib.resources.files("aifactory.service.dashboard") / name).read_text()
        assert resp.text == packaged  # the files as shipped: nothing of anyone's data in them
    assert httpx.get(f"{srv.base}/dashboard/secret.py", timeout=10).status_code == 404
