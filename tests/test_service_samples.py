"""The dashboard's metrics history (issue #21 §1): one sample per 5-minute slot, written by
the leader off the cycle, with bounded retention, read back through ``/v1/metrics/samples``.

Driven on SQLite with a clock the test moves: the service under test is the real one (its
loop, database and router); only the executor is the fake of ``test_service_support``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aifactory.service.samples import SAMPLE_S, Sampler, slot
from aifactory.service.tables import samples
from api_support import Env, running_api

T0 = 1_800_000_000.0  # a slot boundary (divisible by 300)


class Clock:
    """A wall clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sampler_of(env: Env) -> Sampler:
    loop = env.service.loop
    assert loop is not None
    assert loop.sampler is not None
    return loop.sampler


def wait_rows(env: Env, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while env.count(samples) < n:
        assert time.monotonic() < deadline, "sample not written"
        time.sleep(0.02)


def test_the_leader_writes_one_sample_per_slot_with_busy_pending_and_power(
    tmp_path: Path,
) -> None:
    clock = Clock(T0 + 10.0)
    with running_api(f"sqlite:///{tmp_path}/a.db", tmp_path, clock=clock) as env:
        wait_rows(env, 1)  # the first cycle of a new leader samples at once
        running = env.submit("lab", gpus=8, gpu_class="h100", time_limit_s=3600)
        assert running.status_code == 201, running.text
        for _ in range(200):
            job = env.client.get(f"/v1/jobs/{running.json()['id']}", headers=env.h("admin"))
            if job.json()["state"] == "running":
                break
            time.sleep(0.02)
        # Within the same slot no second row is written, however many cycles run.
        time.sleep(0.2)
        assert env.count(samples) == 1
        clock.now = T0 + SAMPLE_S + 1.0
        sampler_of(env)  # the leader has one
        assert env.service.loop is not None
        env.service.loop.wake()
        wait_rows(env, 2)
        sampler_of(env).join()
        got = env.client.get(
            "/v1/metrics/samples",
            params={"start": T0, "end": T0 + 2 * SAMPLE_S},
            headers=env.h("admin"),
        )
        assert got.status_code == 200, got.text
        rows = got.json()
        assert [r["at"] for r in rows] == [T0, T0 + SAMPLE_S]
        last = rows[-1]
        h100 = [c for c in last["gpus"] if c["gpu_class"] == "h100"]
        assert sum(c["busy"] for c in h100) == 8
        assert sum(c["busy"] + c["free"] + c["down"] for c in last["gpus"]) == 1008
        assert sum(c["busy"] for c in rows[0]["gpus"]) == 0  # sampled before any job ran
        sites = {p["site"]: p for p in last["power"]}
        assert sites["seoul"]["cap_kw"] == 2000.0
        assert sites["busan"]["cap_kw"] == 1000.0
        assert all(0 < p["kw"] <= p["cap_kw"] for p in last["power"])
        # busy GPUs draw more than idle ones: the site running the job drew more than before
        before = {p["site"]: p["kw"] for p in rows[0]["power"]}
        assert sum(sites[s]["kw"] for s in sites) > sum(before.values())


def test_members_see_pending_of_their_own_tenant_only(tmp_path: Path) -> None:
    clock = Clock(T0 + 5.0)
    with running_api(
        f"sqlite:///{tmp_path}/a.db", tmp_path, clock=clock, run_scheduler=False
    ) as env:
        assert env.submit("lab", gpus=2, time_limit_s=60).status_code == 201
        assert env.submit("startup", gpus=3, time_limit_s=60).status_code == 201
        Sampler(env.service.db, env.service.topo, env.service.fleet, 0.0).take(clock.now)
        admin = env.client.get("/v1/metrics/samples", headers=env.h("admin")).json()
        member = env.client.get("/v1/metrics/samples", headers=env.h("lab")).json()
        assert admin[0]["pending"] == {"lab": 2, "startup": 3}
        assert member[0]["pending"] == {"lab": 2}
        assert member[0]["gpus"] == admin[0]["gpus"]


def test_retention_drops_old_rows_and_a_written_slot_is_kept(tmp_path: Path) -> None:
    with running_api(f"sqlite:///{tmp_path}/a.db", tmp_path, run_scheduler=False) as env:
        service = env.service
        sampler = Sampler(service.db, service.topo, service.fleet, retention_s=3 * SAMPLE_S)
        assert sampler.take(T0)
        assert not sampler.take(T0 + 299.0)  # same slot: left as written
        for k in range(1, 6):
            assert sampler.take(T0 + k * SAMPLE_S)
        assert env.count(samples) == 4  # the newest slot and the three before it
        got = env.client.get(
            "/v1/metrics/samples",
            params={"start": T0, "end": T0 + 10 * SAMPLE_S, "step": 2 * SAMPLE_S},
            headers=env.h("lab"),
        ).json()
        # buckets of 600 s from T0: [T0+600, T0+1200) holds slots 2 and 3 -> 3 (the last)
        assert [r["at"] for r in got] == [T0 + 3 * SAMPLE_S, T0 + 5 * SAMPLE_S]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"step": 10}, "step"),
        ({"start": -1}, "start"),
        ({"end": "inf"}, "end"),
        ({"start": T0 + 10, "end": T0}, "start"),
        ({"start": 0, "end": T0}, "step"),  # 2,000 points at most
    ],
)
def test_bad_ranges_are_refused_naming_the_field(
    tmp_path: Path, params: dict[str, object], field: str
) -> None:
    with running_api(f"sqlite:///{tmp_path}/a.db", tmp_path, run_scheduler=False) as env:
        got = env.client.get("/v1/metrics/samples", params=params, headers=env.h("lab"))
        assert got.status_code == 422, got.text
        assert field in got.text


def test_slots_are_five_minutes() -> None:
    assert slot(T0 + 299.9) == T0
    assert slot(T0 + 300.0) == T0 + 300.0
