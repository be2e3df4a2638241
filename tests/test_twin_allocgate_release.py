"""The allocation gate's release pass against the rule it implements (issue #20 §4).

``TwinAllocations.released`` asks the ledger only about held jobs that can go; the rule it
must keep is the plain one: offer every held job of a dirty project again, in arrival
order, each release reserving its request before the next is asked about. This replays
seeded random histories (arrivals, charges, ends, top-ups, grant starts, several classes,
class and B200-equivalent grants, overdraft) on the gate and on that plain rule side by
side and asks for the same releases, in the same order, with the same jobs changed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from aifactory.allocations import b200_rates
from aifactory.twin.allocfile import parse_allocations
from aifactory.twin.allocgate import TwinAllocations
from aifactory.workload.job import Job
from builders import make_job

H = 3600.0
RATES = b200_rates({"h100": 989.0, "a100": 312.0})
CLASSES = ("h100", "a100")


class PlainRule(TwinAllocations):
    """The gate with the release pass written as the rule says (one ledger question per
    held job), for comparison only."""

    def released(self, now: float) -> list[Job]:
        out: list[Job] = []
        for name in sorted(self._dirty):
            book = self.books[name]
            if not book.held or not self._any_active(name, now):
                continue
            for job_id, (job, since) in list(book.held.items()):
                if self._try(book, job, now):
                    del book.held[job_id]
                    self.waited[job_id] = self.waited.get(job_id, 0.0) + (now - since)
                    out.append(job)
        self._dirty.clear()
        return out


def random_file(rng: random.Random) -> dict[str, Any]:
    grants: list[dict[str, Any]] = []
    for i in range(rng.randint(1, 3)):
        start = rng.choice([0.0, 0.0, rng.uniform(0, 20)])
        grant: dict[str, Any] = {
            "id": f"g{i}",
            "project": "p",
            "gpu_hours": rng.choice([0.0, rng.uniform(5, 200)]),
            "start_h": start,
            "end_h": start + rng.uniform(10, 60),
            "overdraft": rng.random() < 0.15,
        }
        if rng.random() < 0.6:
            grant["gpu_class"] = rng.choice(CLASSES)
        grants.append(grant)
    topups = [
        {
            "grant": g["id"],
            "at_h": rng.uniform(g["start_h"], g["end_h"] - 1e-3),
            "gpu_hours": rng.uniform(1, 50),
        }
        for g in grants
        if g["gpu_hours"] > 0 and rng.random() < 0.5
    ]
    return {"projects": [{"name": "p", "tenant": "a"}], "grants": grants, "topups": topups}


def random_job(rng: random.Random, n: int, now: float) -> tuple[str, dict[str, Any]]:
    kw: dict[str, Any] = {
        "submit": now,
        "gpus": rng.choice([1, 1, 2, 4, 8]),
        "run": 60.0,
        # few distinct estimates, so equal asks (ties) are common
        "estimate_s": rng.choice([0.25, 0.5, 1.0, 2.0, 4.0, 6.0]) * H,
    }
    pick = rng.random()
    if pick < 0.4:
        kw["gpu_class"] = rng.choice(CLASSES)
    elif pick < 0.55:
        kw["gpu_classes"] = CLASSES  # a tuple, as Job.gpu_classes is
    return f"j{n}", kw


def replay(seed: int) -> int:
    """Replay one random history on both gates; the number of releases compared."""
    rng = random.Random(seed)
    spec = parse_allocations(random_file(rng))
    gates = [
        cls(spec, RATES, {"a": list(CLASSES)}, seed=seed) for cls in (TwinAllocations, PlainRule)
    ]
    timeline = gates[0].timeline()
    jobs: list[dict[str, Job]] = [{}, {}]
    given: list[str] = []  # ids of jobs given to the scheduler and not yet ended
    now, n, compared = 0.0, 0, 0
    for _step in range(400):
        now += rng.expovariate(1 / (0.2 * H))
        while timeline and timeline[0][0] <= now:
            at, index = timeline.pop(0)
            for gate in gates:
                gate.at(index, at)
        roll = rng.random()
        if roll < 0.55:
            job_id, kw = random_job(rng, n, now)
            n += 1
            went = []
            for gate, mine in zip(gates, jobs, strict=True):
                mine[job_id] = make_job(job_id, **kw)
                went.append(gate.offer(mine[job_id], now))
            assert went[0] == went[1]
            if went[0] and job_id in gates[0].project:
                given.append(job_id)
        elif roll < 0.85 and given:
            job_id = given.pop(rng.randrange(len(given)))
            gpu_s = jobs[0][job_id].gpus * rng.uniform(0, 1.5) * jobs[0][job_id].estimate_s
            cls = rng.choice(CLASSES)
            for gate, mine in zip(gates, jobs, strict=True):
                gate.ledger.charge("p", cls, gpu_s, now - 1.0, now, key=job_id)
                gate.dropped(mine[job_id])
        for gate in gates:
            assert gate.pending_release == gates[0].pending_release
        if gates[0].pending_release and rng.random() < 0.8:
            out = [[j.id for j in gate.released(now)] for gate in gates]
            assert out[0] == out[1], (seed, now)
            given += out[0]
            compared += len(out[0])
    book, plain = gates[0].books["p"], gates[1].books["p"]
    assert list(book.held) == list(plain.held)
    assert book.given == plain.given
    assert book.reserved == plain.reserved
    assert book.overdraft_jobs == plain.overdraft_jobs
    assert gates[0].waited == gates[1].waited
    for job_id, job in jobs[0].items():
        other = jobs[1][job_id]
        assert (job.priority, job.preemptible) == (other.priority, other.preemptible)
    assert sorted(k[2] for asks in book.asks.values() for k in asks) == sorted(book.held)
    return compared


@pytest.mark.parametrize("seed", range(40))
def test_the_release_pass_keeps_the_arrival_order_rule(seed: int) -> None:
    replay(seed)


def test_the_random_histories_release_jobs() -> None:
    # the comparison above would be empty if no history released anything after a hold
    assert sum(replay(seed) for seed in range(40)) > 100
