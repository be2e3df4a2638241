"""The live what-if's fleet and power knobs (issue #21 §1 with #20 §2's scenario edits), on
queues whose answers are worked out by hand, on SQLite and PostgreSQL:

- more GPUs: one more h100 server lets the job waiting for one start now, while a running
  job on a node the new pod renumbers stays where it is (a 288-GPU job still waits for it);
- a quota raise lets a quota-blocked job start now; lending off, or the lender out of the
  cohort, keeps a borrower waiting;
- fewer GPUs: the running job on the removed server is requeued and starts again from
  scratch, the one on a kept server is untouched;
- a site's power cap lowered makes a start wait, and the caps off let it start;
- every knob is checked at the edge (422 naming the field) and members are refused.

The demo fleet's nodes, in order: gb200 0-107 (domains 0-5, 18 nodes of 4 GPUs), h100
108-143 (domains 6-41, one 8-GPU server each), b200 144-179 (domains 42-77), in Busan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import aifactory
from aifactory.fleet.topology import compile_topology
from aifactory.service.tables import jobs
from aifactory.service.whatif_live import node_map
from aifactory.whatif.apply import edit_fleet
from aifactory.whatif.model import AddGpus, RemoveGpus, SetQuota
from api_support import Env, running_api
from test_service_support import DB_PARAMS, database_url

H = 3600.0
NOW = 1_795_000_000.0


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def job(env: Env, tenant: str, gpus: int, gpu_class: str, hours: float) -> int:
    ask = {"gpus": gpus, "gpu_class": gpu_class, "time_limit_s": hours * H}
    # tenants without a token of their own are submitted for by an admin
    resp = (
        env.submit(tenant, **ask)
        if tenant in env.tokens
        else env.submit("admin", **ask, tenant=tenant)
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def running(env: Env, job_id: int, nodes: list[tuple[str, int, int]], since: float) -> None:
    """Mark a pending row running on ``nodes`` ((pod, domain, node) with all their GPUs), as
    the loop's start does."""
    placement = [[f"{pod}/d{d}/n{n}", list(range(8 if "hgx" in pod else 4))] for pod, d, n in nodes]
    with env.service.db.write() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(state="running", started_at=since, placement=placement, attempts=1)
        )


def whatif(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    resp = env.client.post("/v1/twin/whatif", json=body, headers=env.h("admin"))
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def starts(result: dict[str, Any]) -> dict[int, tuple[Any, Any, Any, Any]]:
    """Per job: (base start, variant start, base end, variant end) in hours from now."""

    def h(t: float | None) -> float | None:
        return None if t is None else round((t - NOW) / H, 6)

    return {
        j["id"]: (h(j["base_start"]), h(j["variant_start"]), h(j["base_end"]), h(j["variant_end"]))
        for j in result["jobs"]
    }


H100 = [("seoul/hgx", 6 + k, 108 + k) for k in range(36)]


def test_one_more_server_starts_the_waiting_job_and_keeps_renumbered_nodes(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        every_h100 = job(env, "lab", 288, "h100", 10)
        running(env, every_h100, H100, NOW)
        b200 = job(env, "startup", 8, "b200", 5)
        running(env, b200, [("busan/hgx", 42, 144)], NOW - H)
        waits = job(env, "lab", 8, "h100", 1)
        every_b200 = job(env, "startup", 288, "b200", 1)
        # a new pod in Seoul: Busan's nodes are one further on in the variant
        add = {"edit": "add_gpus", "site": "seoul", "model": "h100", "owner": "lab", "gpus": 8}
        r = whatif(env, {"edits": [add]})
        got = starts(r)
        assert got[waits] == (10, 0, 11, 1)
        assert got[every_h100] == (0, 0, 10, 10)
        # still on its node: ends after its 5 hours, and all of Busan waits for it
        assert got[b200] == (-1, -1, 4, 4)
        assert got[every_b200] == (4, 4, 5, 5)
        assert r["base"]["gpus"]["h100"] == 288
        assert r["variant"]["gpus"]["h100"] == 296
        assert (r["edits"], r["requeued"]) == (1, [])


def test_quota_raise_starts_a_blocked_job_and_lending_off_holds_a_borrower(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        # public may hold 72 gb200 and borrow none: its second rack waits for the first
        first = job(env, "public", 72, "gb200", 2)
        running(env, first, [("seoul/nvl", 0, n) for n in range(18)], NOW)
        second = job(env, "public", 72, "gb200", 1)
        # startup holds 72 gb200 and may borrow 72 more in its cohort: lab's, which lends
        borrower = job(env, "startup", 144, "gb200", 1)
        raise_ = [
            {"edit": "set_quota", "tenant": "lab", "gpu_class": "gb200", "nominal": 216},
            {"edit": "set_quota", "tenant": "public", "gpu_class": "gb200", "nominal": 144},
        ]
        got = starts(whatif(env, {"edits": raise_}))
        assert got[second] == (2, 0, 3, 1)
        assert got[borrower] == (0, 0, 1, 1)
        no_lending = {"edit": "set_quota", "tenant": "lab", "gpu_class": "gb200"}
        got = starts(whatif(env, {"edits": [no_lending | {"lending_limit": 0}]}))
        assert got[borrower] == (0, None, 1, None)
        assert got[second] == (2, 2, 3, 3)
        # lab out of the cohort: it lends to no one either
        alone = {"edit": "set_cohort", "tenant": "lab", "cohort": None}
        assert starts(whatif(env, {"edits": [alone]}))[borrower] == (0, None, 1, None)


def test_removed_server_requeues_its_job(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        kept = job(env, "lab", 8, "h100", 3)
        running(env, kept, [H100[0]], NOW - H)
        last = job(env, "lab", 8, "h100", 2)
        running(env, last, [H100[-1]], NOW - H)
        drain = {
            "edit": "remove_gpus",
            "site": "seoul",
            "gpu_class": "h100",
            "gpus": 8,
            "quota_from": "lab",
        }
        r = whatif(env, {"edits": [drain]})
        got = starts(r)
        assert r["requeued"] == [last]
        assert r["variant"]["gpus"]["h100"] == 280
        # requeued: starts again now on a free server, its whole 2 hours ahead of it
        assert got[last] == (-1, 0, 1, 2)
        assert got[kept] == (-1, -1, 2, 2)
        assert r["tenants"] == []  # the base has no pending job to summarise


def test_power_cap_lowered_holds_a_start_and_caps_off_release_it(
    db_url: str, tmp_path: Path
) -> None:
    with running_api(db_url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        # Busan at 0.1 MW over PUE 1.25: 80 kW for its GPUs. 288 idle b200 draw 72 kW; each
        # busy one 750 W more: 8 (78 kW) fit, 16 (84 kW) do not.
        small = job(env, "startup", 8, "b200", 1)
        big = job(env, "startup", 16, "b200", 1)
        cap = {"edit": "power_cap", "site": "busan", "power_mw": 0.1}
        got = starts(whatif(env, {"edits": [cap]}))
        assert got[small] == (0, 0, 1, 1)
        assert got[big][:2] == (0, None)
        got = starts(whatif(env, {"edits": [cap], "power_cap": False}))
        assert got[big] == (0, 0, 1, 1)
        r = whatif(env, {"power_cap": False})
        assert (r["base"]["power_cap"], r["variant"]["power_cap"]) == (True, False)


def test_knobs_are_checked_at_the_edge_and_members_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/aifactory.db"
    add = {"edit": "add_gpus", "site": "seoul", "model": "h100", "owner": "lab", "gpus": 8}
    with running_api(url, tmp_path, clock=lambda: NOW, run_scheduler=False) as env:
        for who in ("lab", "lab-admin", "startup"):
            resp = env.client.post("/v1/twin/whatif", json={"edits": [add]}, headers=env.h(who))
            assert resp.status_code == 403, who
        for edits, field in (
            ([add | {"site": "daegu"}], "edits[0].site"),
            ([add | {"model": "h900"}], "edits[0].model"),
            ([add | {"owner": "nobody"}], "edits[0].owner"),
            ([add | {"gpus": 12}], "edits[0].gpus"),  # not whole 8-GPU servers
            ([add | {"gpus": 100_008}], "edits[0].gpus"),
            ([add | {"gpus": 60_000}, add | {"gpus": 40_008}], "edits[1].gpus"),
            ([add | {"gpus": -8}], "edits.0.add_gpus.gpus"),
            ([{"edit": "failure_rate", "multiplier": 0}], "edits.0.failure_rate.multiplier"),
            ([{"edit": "set_quota", "tenant": "ghost", "gpu_class": "h100"}], "edits[0].tenant"),
            (
                [{"edit": "set_quota", "tenant": "lab", "gpu_class": "h100", "nominal": 1000}],
                "edits",
            ),
            ([{"edit": "power_cap", "site": "busan", "power_mw": 0}], "edits.0.power_cap.power_mw"),
            ([{"edit": "remove_gpus", "site": "busan", "gpus": 8}], "edits"),  # quota left over
            ([add] * 33, "edits"),
        ):
            resp = env.client.post("/v1/twin/whatif", json={"edits": edits}, headers=env.h("admin"))
            assert resp.status_code == 422, (edits, resp.text)
            fields = [d["field"] for d in resp.json()["detail"]]
            assert field in fields, (field, resp.text)
        resp = env.client.post("/v1/twin/whatif", json={"power_cap": "no"}, headers=env.h("admin"))
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["field"] == "power_cap"


def test_node_map_keeps_every_node_in_its_group() -> None:
    """On the korea-2025 fleet: a quota edit keeps every node's index; ten more b200 servers
    at the first site and ten a100 servers fewer at daejeon move the nodes between them,
    and every kept node maps onto a node of the same pod and size, no two onto one and in
    the same order, while the ten removed map to -1."""
    fleet = aifactory.load_fleet("korea-2025")
    old = compile_topology(fleet)
    quota = SetQuota(edit="set_quota", tenant="research", gpu_class="h100", nominal=37_000)
    same, kept = edit_fleet(fleet, [quota])
    assert np.array_equal(node_map(old, compile_topology(same), kept), np.arange(old.n_nodes))
    more = AddGpus(edit="add_gpus", site="pyeongtaek", model="b200", owner="samsung", gpus=80)
    fewer = RemoveGpus(
        edit="remove_gpus",
        site="daejeon",
        gpu_class="a100-80g",
        gpus=80,
        quota_from="research",
    )
    edited, kept = edit_fleet(fleet, [more, fewer])
    new = compile_topology(edited)
    nodes = node_map(old, new, kept)
    alive = nodes >= 0
    assert int((~alive).sum()) == 10
    assert new.n_nodes == old.n_nodes
    assert len(set(nodes[alive].tolist())) == int(alive.sum())
    assert np.all(np.diff(nodes[alive]) > 0)
    pod_old = np.asarray(old.pods)[old.domain_pod[old.node_domain]]
    pod_new = np.asarray(new.pods)[new.domain_pod[new.node_domain]]
    assert set(pod_old[~alive].tolist()) == {"daejeon/ampere-a"}
    assert np.array_equal(pod_old[alive], pod_new[nodes[alive]])
    assert np.array_equal(old.node_gpus[alive], new.node_gpus[nodes[alive]])
    # the first site's own nodes keep their indices; the ones after its new pod move by ten
    first = int(np.flatnonzero(pod_old == "ulsan/nvl-a")[0])
    assert np.array_equal(nodes[:first], np.arange(first))
    assert int(nodes[first]) == first + 10
