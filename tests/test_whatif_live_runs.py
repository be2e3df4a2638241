"""The live what-if's scenario knobs that change more than the fleet's GPUs (issue #21 §1 with
#20 §2): link bandwidth, failure rate and workload growth, on SQLite and PostgreSQL.

- faster links: a job whose 50 TB are in Seoul and whose GPUs (b200) are all in Busan
  waits for its copy, 50e12 B / 50e9 B/s = 1,000 s over the 400 Gbit/s link; at 4x the
  bandwidth 250 s, at 800 Gbit/s 500 s: its start and end move by exactly the copy time
  saved, and a job without data does not move; a gang spanning both sites is slowed less,
  by exactly the all-reduce time saved per step;
- a failure rate: the forecast is sampled from a seed, the base at the Llama 3 rate and the
  variant at the rate times the multiplier; at x1 the two are the same, at x100 a 288-GPU
  job is interrupted and does not run again within the horizon while one behind it starts,
  and the same request gives the same answer; failures
  are expected (rate x GPUs x hours) only while the forecast has work;
- workload growth: arrivals resample a tenant's submissions of the last days at their rate
  (14 in 7 days: 2 a day); at x1 both forecasts draw the same arrivals, grown they contain
  the base's and a queued low-priority job starts later; drawn arrivals, and every sample's
  jobs, count toward the what-if's job limit;
- every new field is checked at the edge (422 naming it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import aifactory
from aifactory.physics.failures import load_failure_model
from aifactory.service.tables import jobs
from aifactory.whatif.apply import edit_fleet
from aifactory.whatif.model import AddGpus
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url
from test_whatif_live_knobs import H100, NOW, H, job, running, whatif

DAY = 86_400.0
B200 = [("busan/hgx", 42 + k, 144 + k) for k in range(36)]


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def by_id(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {j["id"]: j for j in result["jobs"]}


def seconds(j: dict[str, Any]) -> tuple[float | None, ...]:
    """(base start, variant start, base end, variant end), seconds from now."""
    keys = ("base_start", "variant_start", "base_end", "variant_end")
    return tuple(None if j[k] is None else j[k] - NOW for k in keys)


def test_faster_links_start_a_staged_job_sooner_by_the_copy_time_saved(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        data = {"dataset": "corpus", "dataset_bytes": 50e12, "data_site": "seoul"}
        ask = {"gpus": 8, "gpu_class": "b200", "time_limit_s": H, "tenant": "startup"}
        resp = env.submit("admin", **ask, **data)
        assert resp.status_code == 201, resp.text
        staged = int(resp.json()["id"])
        local = job(env, "startup", 8, "b200", 1)
        four = by_id(whatif(env, {"edits": [{"edit": "link_bandwidth", "factor": 4}]}))
        assert seconds(four[staged]) == (1000.0, 250.0, 1000.0 + H, 250.0 + H)
        assert four[staged]["start_delta_s"] == -750.0
        assert seconds(four[local]) == (0.0, 0.0, H, H)
        assert four[staged]["base_samples"] is None  # nothing sampled
        one = {"edit": "link_bandwidth", "between": [["busan", "seoul"]], "gbps": 800}
        set_ = by_id(whatif(env, {"edits": [one]}))
        assert seconds(set_[staged]) == (1000.0, 500.0, 1000.0 + H, 500.0 + H)


def test_faster_links_shorten_a_gang_that_spans_sites_by_its_all_reduce_time_saved(
    tmp_path: Path,
) -> None:
    """The demo fleet with one b200 server in Seoul too (startup's): a 296-GPU gang spans
    both sites, slowed by a ring all-reduce of its 10 GB of gradients per 1-second step over
    the link, 2(n-1)/n B/bw + 2(n-1) latency = 10e9 / 50e9 + 2 x 4.5 ms = 0.209 s at 400
    Gbit/s, 0.059 s at 4x: its hour of work ends 0.15 x 3,600 = 540 s sooner."""
    seoul_b200 = AddGpus(edit="add_gpus", site="seoul", model="b200", owner="startup", gpus=8)
    fleet, _ = edit_fleet(aifactory.load_fleet("demo"), [seoul_b200])
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=lambda: NOW, run_scheduler=False, fleet=fleet) as env:
        resp = env.submit(
            "admin", tenant="startup", gpus=296, gpu_class="b200", time_limit_s=H,
            allow_cross_site=True, grad_bytes=10e9, step_s=1.0,
        )  # fmt: skip
        assert resp.status_code == 201, resp.text
        gang = int(resp.json()["id"])
        got = by_id(whatif(env, {"edits": [{"edit": "link_bandwidth", "factor": 4}]}))[gang]
        base_start, variant_start, base_end, variant_end = seconds(got)
        assert (base_start, variant_start) == (0.0, 0.0)
        assert base_end == pytest.approx(H * 1.209, abs=1e-6)
        assert variant_end == pytest.approx(H * 1.059, abs=1e-6)
        assert variant_end - base_end == pytest.approx(-540.0, abs=1e-6)


def test_failure_rate_draws_failures_from_one_seed_for_both_forecasts(
    db_url: str, tmp_path: Path
) -> None:
    rate = load_failure_model("llama3").rate_per_gpu_hour
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        big = job(env, "lab", 288, "h100", 72)  # runs past the horizon: work all along
        running(env, big, H100, NOW)
        waits = job(env, "lab", 8, "h100", 1)
        x1 = {"edits": [{"edit": "failure_rate", "multiplier": 1}], "horizon_days": 2}
        same = whatif(env, x1)
        s = same["sampled"]
        assert (s["seed"], s["samples"], s["failure_model"]) == (2030, 1, "llama3")
        # the demo fleet's 1,008 GPUs for 48 hours at the model's rate
        assert s["base"]["expected_failures"] == pytest.approx(rate * 1008 * 48)
        assert s["base"] == s["variant"]
        for j in same["jobs"]:
            assert seconds(j)[0::2] == seconds(j)[1::2]
        x100 = {
            "edits": [{"edit": "failure_rate", "multiplier": 100}],
            "horizon_days": 2,
            "samples": 4,
            "seed": 7,
        }
        r = whatif(env, x100)
        s = r["sampled"]
        assert (s["seed"], s["samples"]) == (7, 4)
        assert s["variant"]["rate_per_gpu_hour"] == pytest.approx(100 * rate)
        assert s["variant"]["expected_failures"] == pytest.approx(100 * rate * 1008 * 48)
        assert len(s["variant"]["failures"]) == len(s["base"]["failures"]) == 4
        assert sum(s["variant"]["failures"]) > sum(s["base"]["failures"])
        assert big in s["interrupted"]
        got = by_id(r)
        assert got[big]["variant_interrupted"] >= 1
        assert got[big]["base_samples"] == 4  # running to its planned end in every sample
        # interrupted in every sample of these seeds, and with a failure in the fleet every
        # 37 minutes or so (100 x the rate), one of its 36 servers or another is always out
        # for repair: the gang does not run again within the two days, while the 8-GPU job
        # behind it starts on a server it left
        assert (got[big]["variant_interrupted"], got[big]["variant_samples"]) == (4, 0)
        assert (got[big]["variant_start"], got[big]["variant_end"]) == (None, None)
        # (in the base, only where a failure at the model's own rate stopped the gang too)
        assert got[waits]["base_samples"] == got[big]["base_interrupted"] == 1
        assert got[waits]["variant_samples"] == 4
        again = whatif(env, x100)
        assert again | {"seconds": 0} == r | {"seconds": 0}  # seeded: the same draws


def test_failures_are_expected_only_while_the_forecast_has_work(tmp_path: Path) -> None:
    """One 1-hour job and nothing after it: failures are drawn, and expected, for that hour
    of the day ahead alone (rate x 1,008 GPUs x 1 h)."""
    rate = load_failure_model("llama3").rate_per_gpu_hour
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        one = job(env, "lab", 8, "h100", 1)
        r = whatif(env, {"edits": [{"edit": "failure_rate", "multiplier": 2}], "horizon_days": 1})
        s = r["sampled"]
        assert s["base"]["expected_failures"] == pytest.approx(rate * 1008 * 1)
        assert s["variant"]["expected_failures"] == pytest.approx(2 * rate * 1008 * 1)
        assert s["variant"]["interrupted"] == [0]
        assert seconds(by_id(r)[one]) == (0.0, 0.0, H, H)


def past(env: Env, job_id: int, at: float, priority: str) -> None:
    """Make a row a finished submission of ``at``."""
    with env.service.db.write() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                state="completed",
                submitted_at=at,
                started_at=at,
                ended_at=at + H,
                priority_class=priority,
            )
        )


def test_workload_growth_draws_arrivals_from_recent_submissions(
    db_url: str, tmp_path: Path
) -> None:
    url_settings = {"clock": lambda: NOW, "run_scheduler": False, "policy": "priority"}
    with running_api(db_url, tmp_path, **url_settings) as env:  # type: ignore[arg-type]
        # startup submitted 14 high-priority 8-GPU jobs in the last 7 days: 2 a day
        for k in range(14):
            past(env, job(env, "startup", 8, "b200", 1), NOW - (k + 0.5) * DAY / 2, "high")
        older = job(env, "startup", 8, "b200", 1)
        past(env, older, NOW - 8 * DAY, "high")  # outside the window
        every = job(env, "startup", 288, "b200", 2)
        running(env, every, B200, NOW)
        resp = env.submit(
            "admin", tenant="startup", gpus=288, gpu_class="b200", time_limit_s=H,
            priority_class="low",
        )  # fmt: skip
        assert resp.status_code == 201, resp.text
        queued = int(resp.json()["id"])
        grow = {"edit": "workload_growth", "tenant": "startup"}
        body = {"horizon_days": 1, "samples": 4}
        same = whatif(env, body | {"edits": [grow | {"factor": 1}]})
        s = same["sampled"]
        assert (s["failure_model"], s["history_days"]) == (None, 7.0)
        assert [a["tenant"] for a in s["arrivals"]] == ["startup"]
        arrivals = s["arrivals"][0]
        assert (arrivals["rate_per_day"], arrivals["growth"]) == (2.0, 1.0)
        assert s["base"]["arrivals"] == s["variant"]["arrivals"]
        assert arrivals["base"] == arrivals["variant"] == sum(s["base"]["arrivals"]) / 4
        for j in same["jobs"]:
            assert seconds(j)[0::2] == seconds(j)[1::2]
        r = whatif(env, body | {"edits": [grow | {"factor": 20}]})
        s = r["sampled"]
        assert s["base"]["arrivals"] == same["sampled"]["base"]["arrivals"]
        assert all(
            v >= b for b, v in zip(s["base"]["arrivals"], s["variant"]["arrivals"], strict=True)
        )
        assert sum(s["variant"]["arrivals"]) > sum(s["base"]["arrivals"])
        got = by_id(r)[queued]
        assert got["base_samples"] == 4
        # 20x the high-priority submissions: the low-priority gang that took Busan's 288
        # GPUs when the running one ended waits longer, or past the horizon
        assert got["base_start"] - NOW == 2 * H
        assert got["variant_samples"] < 4 or got["variant_start"] > got["base_start"]


def test_drawn_arrivals_and_samples_count_toward_the_job_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(
        url, tmp_path, clock=lambda: NOW, run_scheduler=False, whatif_max_jobs=5
    ) as env:
        for k in range(14):
            past(env, job(env, "startup", 8, "b200", 1), NOW - (k + 0.5) * DAY / 2, "normal")
        job(env, "startup", 8, "b200", 1)
        grow = {"edit": "workload_growth", "tenant": "startup", "factor": 20}
        resp = env.client.post(
            "/v1/twin/whatif",
            json={"edits": [grow], "horizon_days": 30},
            headers=env.h("admin"),
        )
        assert resp.status_code == 409, resp.text
        assert "drawn arrivals" in resp.json()["detail"]
        ok = whatif(env, {"edits": [grow | {"factor": 0.05}], "horizon_days": 1})
        assert ok["sampled"]["arrivals"][0]["rate_per_day"] == 2.0
        # each sample forecasts the live job again: 1 x 8 > 5, 1 x 5 is not
        rate = {"edits": [{"edit": "failure_rate", "multiplier": 2}]}
        resp = env.client.post(
            "/v1/twin/whatif", json=rate | {"samples": 8}, headers=env.h("admin")
        )
        assert resp.status_code == 409, resp.text
        assert "1 live jobs x 8 samples" in resp.json()["detail"]
        assert whatif(env, rate | {"samples": 5})["sampled"]["samples"] == 5
        # 2e-3 failures per GPU-hour on 1,008 GPUs for a year: 17,660; on 100,000 more, past
        # the 100,000 a forecast draws
        x100 = [{"edit": "failure_rate", "multiplier": 100}]
        more = {"edit": "add_gpus", "site": "busan", "model": "b200", "owner": "startup"}
        resp = env.client.post(
            "/v1/twin/whatif",
            json={"edits": [*x100, more | {"gpus": 100_000}], "horizon_days": 365},
            headers=env.h("admin"),
        )
        assert resp.status_code == 409, resp.text
        assert "failures expected over the horizon" in resp.json()["detail"]


def test_the_new_knobs_are_checked_at_the_edge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    with running_api(url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        links = {"edit": "link_bandwidth", "factor": 2}
        rate = {"edit": "failure_rate", "multiplier": 2}
        grow = {"edit": "workload_growth", "tenant": "lab", "factor": 2}
        for body, field in (
            ({"edits": [links | {"between": [["seoul", "daegu"]]}]}, "edits[0].between[0]"),
            ({"edits": [rate, links | {"factor": 0}]}, "edits.1.link_bandwidth.factor"),
            ({"edits": [rate | {"multiplier": 101}]}, "edits.0.failure_rate.multiplier"),
            ({"edits": [rate | {"multiplier": 0}]}, "edits.0.failure_rate.multiplier"),
            ({"edits": [rate, grow | {"tenant": "ghost"}]}, "edits[1].tenant"),
            ({"edits": [grow | {"factor": 21}]}, "edits.0.workload_growth.factor"),
            # together past the bounds: a forecast's failures and arrivals grow with them
            ({"edits": [rate | {"multiplier": 100}, rate]}, "edits[1].multiplier"),
            ({"edits": [grow | {"factor": 5}, grow | {"factor": 5}]}, "edits[1].factor"),
            ({"edits": [rate], "samples": 9}, "samples"),
            ({"edits": [rate], "samples": 0}, "samples"),
            ({"edits": [rate], "samples": 2.5}, "samples"),
            ({"edits": [rate], "seed": -1}, "seed"),
            ({"edits": [rate], "seed": 2**31}, "seed"),
            ({"edits": [grow], "history_days": 31}, "history_days"),
            ({"edits": [grow], "history_days": 0.5}, "history_days"),
        ):
            resp = env.client.post("/v1/twin/whatif", json=body, headers=env.h("admin"))
            assert resp.status_code == 422, (body, resp.text)
            fields = [d["field"] for d in resp.json()["detail"]]
            assert field in fields, (field, resp.text)
        for who in ("lab", "lab-admin"):
            resp = env.client.post("/v1/twin/whatif", json={"edits": [rate]}, headers=env.h(who))
            assert resp.status_code == 403, who
