"""Jobs that ask for GPU memory or list acceptable classes, through the real service
(issue #17 §3): the API bounds both fields and refuses an ask no GPU of the fleet meets,
the database keeps them, the loop hands them to the scheduler, and the job views and
``aifactory job submit`` carry them. Runs on SQLite and PostgreSQL.

The demo fleet: lab has 288 gb200 (186 GB each) and 288 h100 (80 GB); startup's b200
have 180 GB.
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
    resp = env.client.get(f"/v1/jobs/{job_id}", headers=env.h("lab"))
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


def classes_of(env: Env, placement: list[dict[str, Any]]) -> set[str]:
    """The GPU classes of a placement's nodes (``pod/d<domain>/n<node>`` names)."""
    topo = env.service.topo
    domains = {int(p["node"].rsplit("/", 2)[-2][1:]) for p in placement}
    return {topo.classes[int(topo.domain_class[d])] for d in domains}


def refusal(resp: Any) -> dict[str, str]:
    assert resp.status_code == 422, (resp.status_code, resp.text)
    return {p["field"]: p["reason"] for p in resp.json()["detail"]}


def test_more_memory_than_any_gpu_has_is_refused_with_the_reason(env: Env) -> None:
    got = refusal(env.submit("lab", gpus=8, hbm_gb_per_gpu=200.0))
    assert "not enough GPU memory" in got["hbm_gb_per_gpu"]
    assert "186 GB" in got["hbm_gb_per_gpu"]  # the most this fleet has (gb200)
    # within the fleet, not within the class asked: named as such
    got = refusal(env.submit("lab", gpus=8, gpu_class="h100", hbm_gb_per_gpu=100.0))
    assert "80 GB, class h100" in got["hbm_gb_per_gpu"]
    got = refusal(env.submit("lab", gpus=500, hbm_gb_per_gpu=150.0))
    assert "432 GPUs" in got["gpus"]  # gb200 holds 432 and b200 288; h100 lacks the memory
    assert env.count(jobs) == 0


def test_memory_picks_the_classes_that_fit(env: Env) -> None:
    """lab may use gb200 and h100; asking 100 GB per GPU leaves only gb200."""
    made = env.submit("lab", gpus=8, hbm_gb_per_gpu=100.0, time_limit_s=600)
    assert made.status_code == 201, made.text
    assert made.json()["hbm_gb_per_gpu"] == 100.0
    wait_for(lambda: job(env, made.json()["id"])["state"] == "running")
    shown = job(env, made.json()["id"])
    assert classes_of(env, shown["placement"]) == {"gb200"}
    assert shown["hbm_gb_per_gpu"] == 100.0


def test_a_job_listing_two_classes_runs_in_one_of_them(env: Env) -> None:
    """With lab's 288 h100 all taken, a job that accepts h100 or gb200 runs on gb200, all
    its GPUs in that one class; the views show what it asked."""
    full = env.submit("lab", gpus=288, gpu_class="h100", time_limit_s=600).json()["id"]
    wait_for(lambda: job(env, full)["state"] == "running")
    made = env.submit("lab", gpus=16, gpu_classes=["h100", "gb200"], time_limit_s=600)
    assert made.status_code == 201, made.text
    wait_for(lambda: job(env, made.json()["id"])["state"] == "running")
    shown = job(env, made.json()["id"])
    assert classes_of(env, shown["placement"]) == {"gb200"}
    assert sum(len(p["gpus"]) for p in shown["placement"]) == 16
    assert (shown["gpu_class"], shown["gpu_classes"]) == (None, ["h100", "gb200"])
    listed = env.client.get("/v1/jobs", headers=env.h("lab")).json()["items"]
    by_id = {j["id"]: j for j in listed}
    assert by_id[shown["id"]]["gpu_classes"] == ["h100", "gb200"]
    assert by_id[full]["gpu_classes"] is None
    assert by_id[full]["hbm_gb_per_gpu"] is None
    # the fleet view counts GPUs where they run, not by the class a job named
    fleet = env.client.get("/v1/fleet", headers=env.h("lab")).json()
    assert {c["gpu_class"]: c["busy"] for c in fleet["classes"]} == {
        "gb200": 16,
        "h100": 288,
        "b200": 0,
    }


def test_two_classes_without_room_in_either_wait_and_start_in_the_first_freed(
    env: Env,
) -> None:
    """Both of lab's classes full: the job waits (reason from the scheduler), then runs in
    the class whose GPUs come free."""
    a = env.submit("lab", gpus=288, gpu_class="h100", time_limit_s=600).json()["id"]
    # gb200: its 288 and the 72 it may borrow from startup (the cohort)
    b = env.submit("lab", gpus=360, gpu_class="gb200", time_limit_s=600).json()["id"]
    wait_for(lambda: job(env, a)["state"] == job(env, b)["state"] == "running")
    waiting = env.submit("lab", gpus=8, gpu_classes=["gb200", "h100"]).json()["id"]
    # (the reasons come from a fork cached for a second: poll until it has this job)
    wait_for(lambda: job(env, waiting)["reason"] is not None)
    assert job(env, waiting)["state"] == "pending"
    assert job(env, waiting)["reason"] == "quota"
    assert env.client.delete(f"/v1/jobs/{a}", headers=env.h("lab")).status_code == 202
    wait_for(lambda: job(env, waiting)["state"] == "running")
    assert classes_of(env, job(env, waiting)["placement"]) == {"h100"}


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"gpu_classes": ["h100"]}, "gpu_classes", "at least 2"),
        ({"gpu_classes": ["h100", "h100"]}, "gpu_classes", "different"),
        ({"gpu_classes": ["h100", "gb200"], "gpu_class": "h100"}, "gpu_classes", "not both"),
        ({"gpu_classes": ["h100", "tpu"]}, "gpu_classes", "unknown GPU class 'tpu'"),
        ({"gpu_classes": ["h100", "x" * 65]}, "gpu_classes.1", "at most 64"),
        ({"gpu_classes": ["h100", "gb\u0000"]}, "gpu_classes.1", ""),
        ({"gpu_classes": [f"c{i}" for i in range(17)]}, "gpu_classes", "at most 16"),
        ({"gpu_classes": "h100,gb200"}, "gpu_classes", ""),
        ({"hbm_gb_per_gpu": 0.0}, "hbm_gb_per_gpu", "greater than 0"),
        ({"hbm_gb_per_gpu": -80.0}, "hbm_gb_per_gpu", "greater than 0"),
        ({"hbm_gb_per_gpu": 1e6}, "hbm_gb_per_gpu", "less than or equal"),
        ({"hbm_gb_per_gpu": "80"}, "hbm_gb_per_gpu", ""),
        ({"hbm_gb_per_gpu": True}, "hbm_gb_per_gpu", ""),
    ],
)
def test_bad_asks_are_a_422_naming_the_field(
    env: Env, body: dict[str, Any], field: str, says: str
) -> None:
    got = refusal(env.submit("lab", **body))
    assert field in got, got
    assert says in got[field]
    assert env.count(jobs) == 0


def test_a_key_reused_with_another_ask_is_a_conflict(env: Env) -> None:
    key = {"Idempotency-Key": "k-asks"}
    first = env.submit("lab", key, gpus=8, hbm_gb_per_gpu=80.0)
    assert first.status_code == 201
    assert env.submit("lab", key, gpus=8, hbm_gb_per_gpu=80.0).status_code == 200
    assert env.submit("lab", key, gpus=8, hbm_gb_per_gpu=100.0).status_code == 409
    assert env.submit("lab", key, gpus=8).status_code == 409
