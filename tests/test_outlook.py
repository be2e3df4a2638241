"""The queue's outlook (service/outlook.py) and ``GET /v1/queue`` (issue #21 §1): the
reasons and expected starts are computed at most once per state change and refresh
interval, a costly computation is never waited for once there is an outlook, and the
queue comes a page at a time with the total. The API part runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.service.outlook import Outlook, OutlookCache
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Maker:
    """Outlooks of a state whose version the test sets, each costing ``cost_s``."""

    def __init__(self, clock: Clock, cost_s: float) -> None:
        self.clock, self.cost_s = clock, cost_s
        self.version = 1
        self.made = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, now: float) -> Outlook:
        self.gate.wait(10)
        self.made += 1
        return Outlook(self.version, now, {"1": (now, now + 1)}, {}, self.cost_s)


def test_a_cheap_outlook_is_redone_once_per_change_and_interval() -> None:
    clock = Clock()
    make = Maker(clock, cost_s=0.01)
    cache = OutlookCache(make, lambda: make.version, clock, refresh_s=1.0, max_age_s=60.0)
    assert cache.get().version == 1
    assert make.made == 1
    clock.now += 5.0  # unchanged state: kept
    assert cache.get().at == 100.0
    make.version = 2
    clock.now += 0.3  # (the version is read at most every VERSION_CHECK_S)
    assert cache.get().version == 2  # changed and older than the interval: redone, waited for
    make.version = 3
    clock.now += 0.5
    assert cache.get().version == 2  # changed, but within the interval of the last one
    clock.now += 0.6
    assert cache.get().version == 3
    clock.now += 61.0
    assert cache.get().at == clock.now  # unchanged but old: redone
    assert make.made == 4


def test_a_costly_outlook_is_answered_at_once_and_redone_in_the_background() -> None:
    clock = Clock()
    make = Maker(clock, cost_s=2.0)
    cache = OutlookCache(make, lambda: make.version, clock, refresh_s=1.0, max_age_s=60.0)
    assert cache.get().version == 1  # the first caller waits: there is nothing to answer
    make.version = 2
    clock.now += 5.0  # under 5x its cost: not yet
    assert cache.get().version == 1
    assert make.made == 1
    make.gate.clear()  # the next computation blocks until the test lets it go
    clock.now += 6.0
    for _ in range(3):  # answered from the last outlook while one computation runs
        assert cache.get().version == 1
    make.gate.set()
    wait_for(lambda: cache.get().version == 2)
    assert make.made == 2


@pytest.fixture(params=DB_PARAMS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    for url in database_url(request.param, tmp_path):
        with running_api(url, tmp_path) as running:
            yield running


def page(env: Env, who: str, **params: Any) -> dict[str, Any]:
    got = env.client.get("/v1/queue", params=params, headers=env.h(who))
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_the_queue_comes_a_page_at_a_time_with_reasons_and_starts(env: Env) -> None:
    # More than lab's 288 h100 can run: the rest wait, with a reason.
    ids = []
    for _ in range(45):
        made = env.submit("lab", gpus=8, gpu_class="h100", time_limit_s=3600)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    env.submit("startup", gpus=8, gpu_class="b200")
    wait_for(lambda: page(env, "lab")["total"] == 45 - 36)
    first = page(env, "lab", limit=4)
    assert first["total"] == 9
    assert len(first["items"]) == 4
    seen = [j["id"] for j in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        more = page(env, "lab", limit=4, cursor=cursor)
        assert more["total"] == 9
        seen += [j["id"] for j in more["items"]]
        cursor = more["next_cursor"]
    assert seen == ids[36:]  # oldest first, each once, only lab's (a member's view)
    wait_for(lambda: all(j["reason"] for j in page(env, "lab")["items"]))
    assert all(j["estimated_start"] is not None for j in page(env, "lab")["items"])
    assert page(env, "admin")["total"] == 9  # startup's job runs


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 5001}, {"cursor": -1}])
def test_bad_pages_are_a_422(env: Env, params: dict[str, int]) -> None:
    assert env.client.get("/v1/queue", params=params, headers=env.h("lab")).status_code == 422
