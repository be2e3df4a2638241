"""Cross-site gangs: the ring all-reduce model and the rule 'span only when it finishes
sooner than waiting', with hand-computed times.

Fleet: sites s0 and s1 with two 8-GPU H100 servers each, one 100 Gbit/s link (1.25e10
bytes/s) with 1 ms latency. The spanning job: 16 GPUs, 1,000 s of work, 1.25e10 gradient
bytes per 1 s step. Ring all-reduce on 2 sites (Patarasuk & Yuan 2009):
2 (2-1)/2 x 1.25e10 / 1.25e10 + 2 (2-1) x 0.001 = 1.002 s per step, so a step takes
2.002 s and the run 2,002 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from aifactory.fleet import compile_topology, parse_fleet
from aifactory.fleet.topology import Topology
from aifactory.physics.comm import ring_allreduce_s, span_slowdown
from aifactory.physics.links import Network
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.twin.simulator import Simulation
from aifactory.workload.job import Job
from builders import hgx, make_fleet, tenant


def topo() -> Topology:
    fleet = make_fleet([[[hgx(2)]], [[hgx(2)]]], [tenant("a", {"h100": 32})])
    raw: dict[str, Any] = fleet.model_dump(mode="json")
    raw["links"] = [{"a": "s0", "b": "s1", "gbps": 100.0, "latency_ms": 1.0}]
    return compile_topology(parse_fleet(raw))


def spanner(submit: float = 1.0) -> Job:
    return Job("j", "a", submit, 16, 1000.0, allow_cross_site=True, grad_bytes=1.25e10, step_s=1.0)


def run(jobs: list[Job]) -> dict[str, Job]:
    res = Simulation(topo(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    return {j.id: j for j in res.jobs}


def test_ring_allreduce_time() -> None:
    assert ring_allreduce_s(1.25e10, 2, 1.25e10, 0.001) == pytest.approx(1.002)
    # 4 members: 2 x 3/4 = 1.5 transfers of the buffer, 6 latencies.
    assert ring_allreduce_s(8.0, 4, 2.0, 0.5) == pytest.approx(6.0 + 3.0)
    assert ring_allreduce_s(8.0, 1, 2.0, 0.5) == 0.0
    net = Network(["x", "y", "z"], [("x", "y", 100.0, 1.0)])
    assert span_slowdown(net, [0, 1], 1.25e10, 1.0) == pytest.approx(2.002)
    assert span_slowdown(net, [0], 1.25e10, 1.0) == 1.0
    assert span_slowdown(net, [0, 2], 1.25e10, 1.0) == float("inf")  # no path
    assert span_slowdown(net, [0, 1], 0.0, 1.0) == 1.0  # no gradient size given


def test_spans_when_waiting_is_longer() -> None:
    # Blockers hold 8 GPUs at each site until 5,000 and 10,000: waiting finishes at
    # 5,000 + 1,000 = 6,000; spanning at 1 + 2,002 = 2,003.
    by = run(
        [
            Job("b0", "a", 0.0, 8, 5000.0, site="s0"),
            Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
            spanner(),
        ]
    )
    j = by["j"]
    assert j.level == "cross-site"
    assert j.first_start_s == 1.0
    assert j.slowdown == pytest.approx(2.002)
    assert j.end_s == pytest.approx(2003.0)


def test_waits_when_one_site_frees_sooner() -> None:
    # b0 ends at 500: waiting for s0 finishes at 1,500, before spanning's 2,003.
    by = run(
        [
            Job("b0", "a", 0.0, 8, 500.0, site="s0"),
            Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
            spanner(),
        ]
    )
    j = by["j"]
    assert j.level != "cross-site"
    assert j.first_start_s == 500.0
    assert j.end_s == 1500.0
    assert j.slowdown == 1.0
