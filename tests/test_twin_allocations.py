"""Allocations in the twin (issue #19 §4): the file, the gate, charging, and a funding round.

Hand cases on a two-server H100 fleet (16 GPUs, tenant 'a', one project 'p' taking all of
its jobs) with grants in H100 GPU-hours, so every figure can be worked out by hand; then a
funding round drawn on korea-2025 and replayed with failures and preemptions, where the
charges must add up exactly to the GPU-seconds of the jobs' run intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from aifactory.allocations import AllocState, b200_rates
from aifactory.cli import app
from aifactory.fleet import load_fleet
from aifactory.fleet.errors import SpecError
from aifactory.twin.allocfile import (
    load_allocations,
    parse_allocations,
    project_of,
    shares_by_tenant,
)
from aifactory.twin.allocgate import TwinAllocations
from aifactory.twin.failures import FailureInjector
from aifactory.twin.funding import funding_round
from aifactory.twin.inputs import CheckpointPolicy
from aifactory.twin.results import jobs_table, used_gpu_s
from aifactory.twin.run import TwinSpec, run_twin
from aifactory.twin.simulator import SimResult, Simulation, TwinConfig
from aifactory.workload.job import Job, JobState
from aifactory.workload.schema import TRACE_SCHEMA
from aifactory.workload.traces import write_trace
from builders import hgx_topo, make_job, tenant

H = 3600.0
RATES = b200_rates({"h100": 989.0})


def gate_for(raw: dict[str, Any], seed: int = 0) -> TwinAllocations:
    """The gate of a hand case: tenant 'a' has H100 quota only."""
    return TwinAllocations(parse_allocations(raw), RATES, {"a": ["h100"]}, seed=seed)


def one_project(*grants: dict[str, Any], topups: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "projects": [{"name": "p", "tenant": "a"}],
        "grants": list(grants),
        "topups": list(topups),
    }


def run(jobs: list[Job], gate: TwinAllocations) -> SimResult:
    return Simulation(hgx_topo(2), jobs, allocations=gate).run()


def charged_by_job(gate: TwinAllocations) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in gate.ledger.charges():
        job_id = c.key.split(":")[0]
        out[job_id] = out.get(job_id, 0.0) + c.gpu_seconds
    return out


# ------------------------------------------------------------------ the file
BAD_FILES = [
    ("period", one_project({"id": "g", "project": "p", "gpu_hours": 1, "end_h": 0}), "grants[0]"),
    (
        "unknown project",
        one_project({"id": "g", "project": "q", "gpu_hours": 1, "end_h": 1}),
        "grants[0].project",
    ),
    (
        "negative grant",
        one_project({"id": "g", "project": "p", "gpu_hours": -1, "end_h": 1}),
        "grants[0].gpu_hours",
    ),
    (
        "unknown field",
        one_project({"id": "g", "project": "p", "gpu_hours": 1, "end_h": 1, "colour": "red"}),
        "grants[0].colour",
    ),
    (
        "top-up outside the period",
        one_project(
            {"id": "g", "project": "p", "gpu_hours": 1, "end_h": 1},
            topups=({"grant": "g", "at_h": 2, "gpu_hours": 1},),
        ),
        "topups[0].at_h",
    ),
    (
        "shares past one",
        {
            "projects": [
                {"name": "p", "tenant": "a", "share": 0.7},
                {"name": "q", "tenant": "a", "share": 0.4},
            ]
        },
        "projects.share",
    ),
    (
        "infinite hours",
        one_project({"id": "g", "project": "p", "gpu_hours": float("inf"), "end_h": 1}),
        "grants[0].gpu_hours",
    ),
    ("bad name", {"projects": [{"name": "../etc", "tenant": "a"}]}, "projects[0].name"),
]


@pytest.mark.parametrize(("case", "raw", "field"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_allocations_file_is_refused_naming_the_field(
    case: str, raw: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_allocations(raw, "grants.yaml")
    assert field in str(err.value), case


def test_a_file_that_is_not_a_mapping_or_too_big_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SpecError, match="document: must be a mapping"):
        load_allocations(listed)
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate((64 << 20) + 1)
    with pytest.raises(SpecError, match="larger than 64 MiB"):
        load_allocations(big)
    with pytest.raises(SpecError, match="no file or bundled allocations"):
        load_allocations(tmp_path / "missing.yaml")


def test_a_project_of_a_tenant_the_fleet_lacks_is_refused() -> None:
    spec = parse_allocations({"projects": [{"name": "p", "tenant": "nobody"}]})
    with pytest.raises(SpecError, match=r"projects\[0\].tenant: no tenant 'nobody'"):
        spec.check_tenants(["a", "b"])


def test_jobs_go_to_projects_by_share_deterministically() -> None:
    spec = parse_allocations(
        {
            "projects": [
                {"name": "p", "tenant": "a", "share": 0.25},
                {"name": "q", "tenant": "a", "share": 0.5},
            ]
        }
    )
    shares = shares_by_tenant(spec)
    ids = [f"job-{i}" for i in range(4000)]
    got = [project_of(shares, 7, "a", i) for i in ids]
    assert got == [project_of(shares, 7, "a", i) for i in reversed(ids)][::-1]  # order-free
    counts = {k: got.count(k) for k in ("p", "q", None)}
    # binomial: 4,000 draws, sd of the count at p=0.5 is ~32; 5 sd either side
    assert abs(counts["p"] - 1000) < 160
    assert abs(counts["q"] - 2000) < 160
    assert abs(counts[None] - 1000) < 160
    assert project_of(shares, 7, "b", "job-1") is None  # a tenant without projects
    assert got != [project_of(shares, 8, "a", i) for i in ids]  # the seed matters


def test_the_bundled_korea_allocations_load_and_fit_the_fleet() -> None:
    """Every consortium's projects are leaves of its tree, and each month they are granted
    the consortium's share together: 11,000 B200-eq (9,000 GB200 at 2500/2250, 1,000
    B200) x 720 h."""
    spec = load_allocations("korea-2025")
    fleet = load_fleet("korea-2025")
    rows = list(fleet.iter_tenants())
    tenants = [t.name for t, _p, _c in rows]
    parents = [t.name for t, _p, _c in rows if t.children]
    spec.check_tenants(tenants, parents=parents)
    consortium = {}
    for t, p, _c in rows:
        if t.name.startswith("sovereign-"):
            consortium[t.name] = t.name
        elif p is not None and p.name in consortium:
            consortium[t.name] = p.name
    leaves = {t.name for t, _p, _c in rows if not t.children}
    assert sorted(p.tenant for p in spec.projects) == sorted(set(consortium) & leaves)
    project_tenant = {p.name: p.tenant for p in spec.projects}
    monthly: dict[tuple[str, float], float] = {}
    for g in spec.grants:
        key = (consortium[project_tenant[g.project]], g.start_h)
        monthly[key] = monthly.get(key, 0.0) + g.gpu_hours
    assert len(monthly) == 5 * 12
    assert all(v == 9000 * 2500 / 2250 * 720 + 1000 * 720 for v in monthly.values())


def test_a_project_of_a_tenant_with_children_is_refused() -> None:
    """Its jobs would never come: jobs run in leaves (the LG consortium has two)."""
    rows = list(load_fleet("korea-2025").iter_tenants())
    spec = parse_allocations(
        {"projects": [{"name": "lg-all", "tenant": "sovereign-lg"}], "grants": []}
    )
    with pytest.raises(SpecError) as info:
        spec.check_tenants(
            [t.name for t, _p, _c in rows], parents=[t.name for t, _p, _c in rows if t.children]
        )
    assert "projects[0].tenant: 'sovereign-lg' has children" in str(info.value)


# ------------------------------------------------------------------ hand cases
def test_exhaust_then_wait_with_the_reason_then_top_up_and_resume() -> None:
    # 8 GPU-hours granted. j1 (8 GPUs x 1 h) takes all of it; j2 (8 x 0.5 h) arrives while j1
    # reserves the whole balance: held, although 8 GPUs are free. j1's end leaves the balance
    # at 0 (exhausted): still held. The top-up of 4 GPU-hours at 2 h releases it at once.
    # j3 (1 GPU-hour) arrives after j2 has drawn the top-up: held to the end.
    gate = gate_for(
        one_project(
            {"id": "g", "project": "p", "gpu_class": "h100", "gpu_hours": 8, "end_h": 100},
            topups=({"grant": "g", "at_h": 2, "gpu_hours": 4},),
        )
    )
    jobs = [
        make_job("j1", submit=0, gpus=8, run=H),
        make_job("j2", submit=100, gpus=8, run=H / 2),
        make_job("j3", submit=3 * H, gpus=1, run=H),
    ]
    result = run(jobs, gate)
    j1, j2, j3 = result.jobs
    assert j1.first_start_s == 0
    assert j2.first_start_s == 2 * H
    assert gate.waited["j2"] == 2 * H - 100
    assert j3.state is JobState.PENDING
    assert j3.first_start_s is None
    assert gate.is_held(j3)
    assert gate.waited["j3"] == result.end_s - 3 * H
    assert gate.ledger.balance("g") == 0
    assert gate.ledger.state("g", 1.5 * H) is AllocState.EXHAUSTED
    assert gate.ledger.state("g", 3 * H) is AllocState.EXHAUSTED
    topped = gate.ledger.allocation("g")
    assert topped.gpu_hours == 12
    # its history (the twin settles a grant when it changes it, here at the top-up): the
    # clock's moves to active and exhausted, the top-up, and back to active
    assert [(c.kind.value, c.to_state.value, c.at) for c in topped.history] == [
        ("move", "active", 2 * H),
        ("move", "exhausted", 2 * H),
        ("topup", "exhausted", 2 * H),
        ("move", "active", 2 * H),
    ]
    assert charged_by_job(gate) == {"j1": 8 * H, "j2": 4 * H}
    table = jobs_table(result).to_pylist()
    rows = {r["job_id"]: r for r in table}
    assert rows["j2"]["wait_allocation_s"] == 2 * H - 100
    assert rows["j2"]["queue_s"] == 2 * H - 100
    assert rows["j3"]["pending_reason"] == "allocation"
    assert rows["j3"]["state"] == "pending"
    assert rows["j1"]["wait_allocation_s"] == 0.0
    assert rows["j1"]["project"] == "p"


def test_period_start_and_expiry_are_honoured() -> None:
    # The grant runs from 1 h to 2 h with 8 GPU-hours. a (8 GPUs x 0.5 h) arrives at 0 and
    # waits for the period to start; b (8 GPUs, estimate 0.5 h, really 1.5 h) starts with it
    # and runs past the end of the period: its first hour draws the 4 GPU-hours left and
    # overruns 4 on the grant, its last half hour lies outside every period (unallocated);
    # nothing is drawn on the grant after its end. c arrives after the expiry: held.
    gate = gate_for(
        one_project(
            {
                "id": "g",
                "project": "p",
                "gpu_class": "h100",
                "gpu_hours": 8,
                "start_h": 1,
                "end_h": 2,
            },
        )
    )
    jobs = [
        make_job("a", submit=0, gpus=8, run=H / 2),
        make_job("b", submit=10, gpus=8, run=1.5 * H, estimate_s=H / 2),
        make_job("c", submit=2.5 * H, gpus=8, run=H / 2),
    ]
    result = run(jobs, gate)
    a, b, c = result.jobs
    assert a.first_start_s == H
    assert b.first_start_s == H
    assert gate.waited["a"] == H
    assert gate.waited["b"] == H - 10
    assert c.first_start_s is None
    assert gate.is_held(c)
    charge_b = next(ch for ch in gate.ledger.charges() if ch.key.startswith("b:"))
    assert charge_b.gpu_seconds == 8 * 1.5 * H
    assert charge_b.unallocated_gpu_seconds == pytest.approx(8 * 0.5 * H)
    assert charge_b.overrun_gpu_seconds == pytest.approx(4 * H + 8 * 0.5 * H)
    assert gate.ledger.overrun("g") == pytest.approx(4 * H)
    assert gate.ledger.used("g") == pytest.approx(12 * H)  # 8 granted + 4 overrun, no more
    assert gate.ledger.state("g", 3 * H) is AllocState.EXPIRED


def test_overdraft_lets_a_job_start_at_low_priority() -> None:
    gate = gate_for(
        one_project(
            {
                "id": "g",
                "project": "p",
                "gpu_class": "h100",
                "gpu_hours": 1,
                "end_h": 10,
                "overdraft": True,
            },
        )
    )
    jobs = [make_job("big", submit=0, gpus=8, run=H)]
    result = run(jobs, gate)
    big = result.jobs[0]
    assert big.state is JobState.COMPLETED
    assert big.first_start_s == 0
    assert big.priority == -100
    assert big.preemptible
    assert gate.books["p"].overdraft_jobs == 1
    assert gate.ledger.overrun("g") == pytest.approx(7 * H)


def test_a_rejected_grant_covers_nothing_and_jobs_outside_projects_run() -> None:
    raw = {
        "projects": [{"name": "p", "tenant": "a", "share": 0.5}],
        "grants": [{"id": "g", "project": "p", "gpu_hours": 0, "end_h": 10}],
    }
    gate = gate_for(raw, seed=3)
    jobs = [make_job(f"j{i}", submit=float(i), gpus=1, run=60.0) for i in range(40)]
    result = run(jobs, gate)
    mine = [j for j in result.jobs if j.id in gate.project]
    others = [j for j in result.jobs if j.id not in gate.project]
    assert mine
    assert others
    assert all(j.first_start_s is None for j in mine)
    assert all(j.state is JobState.COMPLETED for j in others)
    assert gate.ledger.charges() == []


@dataclass(frozen=True)
class _Cause:
    name: str
    scope: str

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        return 50.0


@dataclass(frozen=True)
class _Failures:
    """One failure per GPU-hour: on 16 GPUs, one about every 225 s."""

    rate_per_gpu_hour: float = 1.0

    def sample_cause(self, rng: np.random.Generator) -> Any:
        return _Cause("node", "node")


def test_charges_are_the_run_intervals_through_preemption_and_failure() -> None:
    # Tenants a and b share a cohort (8 GPUs each). a's 16-GPU gang borrows b's 8; b's job at
    # 600 s reclaims them, so a's run is cut and charged, then runs again. Failures strike
    # every few minutes. Each job's charges must add up to exactly the GPU-seconds it held.
    topo = hgx_topo(2, [tenant("a", {"h100": 8}, cohort="c"), tenant("b", {"h100": 8}, cohort="c")])
    raw = {
        "projects": [{"name": "pa", "tenant": "a"}, {"name": "pb", "tenant": "b"}],
        "grants": [
            {"id": "ga", "project": "pa", "gpu_class": "h100", "gpu_hours": 1000, "end_h": 100},
            {"id": "gb", "project": "pb", "gpu_class": "h100", "gpu_hours": 1000, "end_h": 100},
        ],
    }
    gate = TwinAllocations(parse_allocations(raw), RATES, {"a": ["h100"], "b": ["h100"]}, seed=0)
    jobs = [
        make_job("a1", "a", submit=0, gpus=16, run=3000.0, checkpoint_s=300.0),
        make_job("b1", "b", submit=600, gpus=8, run=1200.0, checkpoint_s=300.0),
        *(make_job(f"b{i}", "b", submit=700.0 * i, gpus=4, run=900.0) for i in range(2, 8)),
    ]
    sim = Simulation(
        topo, jobs, None, TwinConfig(seed=5), FailureInjector(_Failures()), allocations=gate
    )
    result = sim.run()
    a1 = result.jobs[0]
    assert a1.preemptions >= 1
    assert sum(j.failures for j in result.jobs) > 0
    used = used_gpu_s(result)
    for i, job in enumerate(result.jobs):
        assert gate.charged[job.id] == used[i] == job.attained
    runs = [c for c in gate.ledger.charges() if c.key.startswith("a1:")]
    assert len(runs) == 1 + a1.preemptions + a1.failures
    assert sum(c.gpu_seconds for c in gate.ledger.charges()) == pytest.approx(sum(used))
    assert gate.ledger.used("ga") + gate.ledger.used("gb") == pytest.approx(sum(used))


def test_the_summary_and_tables_without_allocations_say_nothing_of_them() -> None:
    result = Simulation(hgx_topo(1), [make_job("j", run=60.0)]).run()
    row = jobs_table(result).to_pylist()[0]
    assert row["project"] is None
    assert row["wait_allocation_s"] is None
    assert result.allocations is None


# ------------------------------------------------------------------ korea-2025 runs
def korea_run(hours: float, allocations: str) -> Any:
    """``hours`` of the main job's workload (aifactory run: load 0.85, llama3 failures,
    checkpoints, 30 s backfill interval) with an allocations file."""
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    fleet = load_fleet("korea-2025")
    days = hours / 24
    table = synthesize(fleet, days, 0.85, 2025)
    spec = TwinSpec(
        fleet="korea-2025",
        trace="synth",
        seed=2025,
        failures="llama3",
        checkpoint=CheckpointPolicy.TRACE,
        checkpoint_write_s=60.0,
        until_s=days * 86400,
        backfill_interval_s=30.0,
        allocations=allocations,
    )
    return run_twin(spec, table=table, fleet=fleet, keep_jobs=True)  # (reads every job)


@pytest.fixture(scope="module")
def round_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """Three hours of korea-2025; the research tenant's jobs are a drawn round of 12
    applicants' (a grant period of 2 hours, so that the run sees grants expire; asks of 3x
    their shares on median, so that the panel's budget runs out and it rejects some)."""
    drawn = funding_round(load_fleet("korea-2025"), 12, seed=11, days=2 / 24, ask=3.0)
    path = tmp_path_factory.mktemp("round") / "round.yaml"
    path.write_text(drawn.to_yaml(), encoding="utf-8")
    return korea_run(3.0, str(path)), path


@pytest.fixture(scope="module")
def consortia_run() -> Any:
    """Two hours of the main job with its bundled allocations (the five consortia, whose
    cohort borrows and reclaims: preemptions among the charged jobs)."""
    return korea_run(2.0, "korea-2025")


def check_exact_charges(twin: Any) -> int:
    """Every job of a project is charged exactly the GPU-seconds of its run intervals (its
    ``attained`` plus a run open at the end, as used_gpu_s counts them); returns how many
    runs of those jobs ended early (preempted or failed)."""
    result = twin.result
    gate = result.allocations
    assert gate is not None
    used = used_gpu_s(result)
    project_jobs = [i for i, j in enumerate(result.jobs) if j.id in gate.project]
    assert len(project_jobs) > 1000
    for i in project_jobs:
        assert gate.charged.get(result.jobs[i].id, 0.0) == used[i]
    by_job = charged_by_job(gate)
    assert sum(by_job.values()) == pytest.approx(sum(used[i] for i in project_jobs), rel=1e-12)
    for ch in gate.ledger.charges():
        drawn = sum(d.gpu_seconds for d in ch.draws) + ch.unallocated_gpu_seconds
        assert drawn == pytest.approx(ch.gpu_seconds, rel=1e-9, abs=1e-6)
    return sum(result.jobs[i].preemptions + result.jobs[i].failures for i in project_jobs)


def test_the_main_jobs_consortia_are_charged_exactly_through_preemptions(
    consortia_run: Any,
) -> None:
    assert check_exact_charges(consortia_run) > 0
    projects = consortia_run.summary["projects"]
    assert len(projects) == 7  # five consortia, two of them with two projects
    spec = load_allocations("korea-2025")
    first = {g.project: g.gpu_hours for g in spec.grants if g.start_h == 0}
    for name, p in projects.items():
        assert p["granted_b200h"] == pytest.approx(first[name])  # the first month's grant only
        assert p["future_b200h"] == pytest.approx(11 * first[name])
        assert p["used_b200h"] > 0


def test_a_funding_round_is_the_same_for_the_same_seed(round_run: tuple[Any, Path]) -> None:
    _run, path = round_run
    fleet = load_fleet("korea-2025")
    again = funding_round(fleet, 12, seed=11, days=2 / 24, ask=3.0)
    assert again.to_yaml() == path.read_text(encoding="utf-8")
    assert load_allocations(path) == again  # the file reads back to the same round
    assert funding_round(fleet, 12, seed=12, days=2 / 24, ask=3.0) != again
    asked = [g.requested_gpu_hours for g in again.grants]
    assert all(a is not None and g.gpu_hours <= a for g, a in zip(again.grants, asked, strict=True))


def test_a_funding_round_replays_granted_used_wasted_denied(round_run: tuple[Any, Path]) -> None:
    twin, _path = round_run
    check_exact_charges(twin)
    projects = twin.summary["projects"]
    assert len(projects) == 12
    for p in projects.values():
        assert p["used_b200h"] <= p["granted_b200h"] + p["overrun_b200h"] + 1e-6
    rejected = [p for p in projects.values() if p["granted_b200h"] == 0]
    assert rejected
    assert all(p["jobs_held_at_end"] == p["jobs"] for p in rejected)
    assert any(p["wasted_b200h"] > 0 for p in projects.values())  # the period ended at 2 h
    assert sum(p["denied_job_hours"] for p in projects.values()) > 0
    table = twin.projects_table()
    assert table is not None
    assert table.num_rows == 12


def test_cli_synth_writes_a_round_and_simulate_refuses_a_bad_file(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "round.yaml"
    res = runner.invoke(
        app, ["alloc", "synth", "--applicants", "5", "--seed", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert len(load_allocations(out).projects) == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "projects: [{name: p, tenant: a}]\ngrants: [{id: g, project: p, "
        "gpu_hours: 1, start_h: 5, end_h: 1}]\n",
        encoding="utf-8",
    )
    trace = tmp_path / "t.parquet"  # 20 one-hour jobs of the research tenant, 10 min apart
    n = 20
    write_trace(
        pa.table(
            {
                "job_id": [f"j{i}" for i in range(n)],
                "tenant": ["research"] * n,
                "submit_s": [600.0 * i for i in range(n)],
                "duration_s": [H] * n,
                "gpus": [8] * n,
                "gpu_class": [None] * n,
                "estimate_s": [None] * n,
                "priority": [0] * n,
                "observed_start_s": [None] * n,
                "status": [None] * n,
            },
            schema=TRACE_SCHEMA,
        ),
        trace,
    )
    res = runner.invoke(
        app,
        [
            "simulate",
            "--fleet",
            "korea-2025",
            "--trace",
            str(trace),
            "--allocations",
            str(bad),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "grants[0]" in res.output
    assert "end_h" in res.output
    # the round itself replays: projects.parquet and the projects table come out
    results = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--fleet",
            "korea-2025",
            "--trace",
            str(trace),
            "--allocations",
            str(out),
            "--out",
            str(results),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Per project" in res.output
    projects = pq.read_table(results / "projects.parquet")
    assert projects.column("project").to_pylist() == [
        p.name for p in load_allocations(out).projects
    ]
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["projects"]) == set(projects.column("project").to_pylist())
