"""Golden per-job results: the behaviour pinned before code moves (issue #15 §1; style §14).

Each case replays a fixed, seeded workload in the twin and reduces every job to one line
``id, first start, end, state, preemptions`` (the jobs table's ``job_id``, ``start_s``,
``end_s``, ``state``, ``preemptions``; floats as ``repr``, so bit-exact). The lines, sorted
by id, are hashed with SHA-256 and compared with the digest committed in
``tests/golden/golden.json``, which also keeps each case's parameters and a few counts.
``tests/golden/<case>.jobhash`` holds one byte of each line's own SHA-256 (in the same id
order): on a mismatch the test counts the jobs that differ and shows the earliest of them
as they come out now (a 1-byte hash misses about 1 differing job in 256; the full rows,
1 MB a case, are not committed).

The cases: a slice of the real Philly trace (days 20-39, where long jobs pile up) at 4x
its load (submit times x 0.25) on ``philly-2017`` under fifo, sjf, las and fair with EASY
backfill and fifo without backfill; and six hours of the synthesised korea-2025 national
workload (load 0.85, Llama 3 failures, checkpoints), as the main job runs it. Each also
asserts that it is not trivial: preemptions where the case has them, and (EASY) jobs that
started while a job ahead of them in their tenant's queue was still waiting.

The same digests hold in the compiled build and as pure Python (``make test`` runs this
file in both); the messages name the build that ran, and with ``AIFACTORY_EXPECT_BUILD``
set (``make test`` sets it for each run) a session that imports another build fails.

A deliberate change of behaviour updates the goldens: run
``AIFACTORY_GOLDEN_UPDATE=1 .venv/bin/pytest tests/test_golden.py`` and commit
``tests/golden/`` in a commit of its own that says why the results changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import aifactory
from aifactory.fleet import load_fleet
from aifactory.twin.inputs import CheckpointPolicy
from aifactory.twin.run import (
    NATIONAL_MAX_JOB_TEST,
    NATIONAL_QUEUE_DEPTH,
    TwinRun,
    TwinSpec,
    run_twin,
)
from aifactory.workload.job import Job

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_JSON = GOLDEN / "golden.json"
UPDATE_ENV = "AIFACTORY_GOLDEN_UPDATE"
EXPECT_ENV = "AIFACTORY_EXPECT_BUILD"
UPDATE = os.environ.get(UPDATE_ENV, "") not in {"", "0"}
SHOWN = 8  # differing jobs shown in a failure message
DAY = 86400.0
# TwinSpec's backfill type, wherever the scheduler package defines it.
BackfillMode = type(next(f.default for f in dataclasses.fields(TwinSpec) if f.name == "backfill"))


@dataclass(frozen=True)
class Case:
    """One golden run; ``params`` are committed next to its digest."""

    name: str
    workload: str  # "philly" | "national"
    policy: str
    backfill: str = "easy"
    params: dict[str, Any] = field(default_factory=dict)
    min_preemptions: int = 0  # the case is trivial below these
    min_jumped: int = 0


# Philly days 20-39: 27,674 jobs; from day ~28 weeks-long jobs hold much of the cluster and
# at 4x the queues grow (fifo: mean wait ~3 min, p99 ~50 min, ~300 preemptions by quota
# reclaim; EASY starts ~60 jobs past a waiting one). A slice that starts later lacks those
# long jobs and never queues. (Without backfill one job still starts past another: a start
# withdrawn in its pass for a reclaiming job, scheduler/state.py's _withdraw.)
PHILLY = {"days": [20.0, 39.0], "time_scale": 0.25, "seed": 2017, "fleet": "philly-2017"}
# Six hours of the main job's workload (aifactory run: load 0.85, llama3, checkpoints,
# 30 s backfill interval): ~34,000 jobs, ~4,000 preemptions, ~40 failures.
NATIONAL = {"hours": 6.0, "load": 0.85, "seed": 2025, "fleet": "korea-2025", "failures": "llama3"}

CASES = [
    Case("philly-fifo-easy", "philly", "fifo", params=PHILLY, min_preemptions=1, min_jumped=1),
    Case("philly-sjf-easy", "philly", "sjf", params=PHILLY, min_preemptions=1, min_jumped=1),
    Case("philly-las-easy", "philly", "las", params=PHILLY, min_preemptions=1, min_jumped=1),
    Case("philly-fair-easy", "philly", "fair", params=PHILLY, min_preemptions=1, min_jumped=1),
    Case("philly-fifo-none", "philly", "fifo", "none", params=PHILLY, min_preemptions=1),
    Case("national-fifo-easy", "national", "fifo", params=NATIONAL, min_preemptions=1),
]


# ------------------------------------------------------------------ running a case
@pytest.fixture(scope="module")
def philly_table(shared_dir: Path) -> pa.Table:
    """The Philly rows submitted in ``PHILLY["days"]`` (the trace is read once)."""
    from aifactory.workload.traces import read_trace  # noqa: PLC0415 (only where it is needed)

    table = read_trace(shared_dir / "traces" / "philly" / "philly.csv").table
    lo, hi = PHILLY["days"]
    submit = table.column("submit_s")
    keep = pc.and_(pc.greater_equal(submit, lo * DAY), pc.less(submit, hi * DAY))
    return table.filter(keep)


def run_case(case: Case, request: pytest.FixtureRequest) -> TwinRun:
    """Run the case's twin (fresh fleet and inputs: nothing is shared between runs)."""
    p = case.params
    fleet = load_fleet(p["fleet"])
    backfill = BackfillMode(case.backfill)
    if case.workload == "philly":
        table = request.getfixturevalue("philly_table")
        spec = TwinSpec(
            fleet=p["fleet"],
            trace="philly.csv",
            policy=case.policy,
            backfill=backfill,
            time_scale=p["time_scale"],
            seed=p["seed"],
        )
        return run_twin(spec, table=table, fleet=fleet, keep_jobs=True)
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    days = p["hours"] / 24.0
    table = synthesize(fleet, days, p["load"], seed=p["seed"])
    spec = TwinSpec(  # as `aifactory run` builds it (cli/run_cmd.py)
        fleet=p["fleet"],
        trace="synth-national",
        policy=case.policy,
        backfill=backfill,
        seed=p["seed"],
        failures=p["failures"],
        checkpoint=CheckpointPolicy.TRACE,
        checkpoint_write_s=60.0,
        until_s=days * DAY,
        backfill_interval_s=30.0,
        queue_depth=NATIONAL_QUEUE_DEPTH,
        max_job_test=NATIONAL_MAX_JOB_TEST,
    )
    return run_twin(spec, table=table, fleet=fleet, keep_jobs=True)


# ------------------------------------------------------------------ digests
def job_lines(run: TwinRun) -> list[str]:
    """One canonical line per job, sorted by id; floats (and None) as ``repr``."""
    cols = run.jobs_table().select(["job_id", "start_s", "end_s", "state", "preemptions"])
    rows = zip(*(cols.column(i).to_pylist() for i in range(5)), strict=True)
    return [f"{i}\t{s!r}\t{e!r}\t{st}\t{p}\n" for i, s, e, st, p in sorted(rows)]


def inputs_digest(run: TwinRun) -> str:
    """A digest of what each job asked for (id, tenant, submit, GPUs, duration, class): tells
    a changed workload from a changed schedule."""
    h = hashlib.sha256()
    for j in sorted(run.result.jobs, key=lambda j: j.id):
        h.update(f"{j.id}\t{j.tenant}\t{j.submit_s!r}\t{j.gpus}\t{j.duration_s!r}\t".encode())
        h.update(f"{j.gpu_class}\t{j.checkpoint_s!r}\t{j.priority}\n".encode())
    return h.hexdigest()


def digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
    return h.hexdigest()


def job_hashes(lines: list[str]) -> bytes:
    """One byte of each line's SHA-256: enough to count and name the jobs that differ."""
    return bytes(hashlib.sha256(line.encode()).digest()[0] for line in lines)


def ids_digest(lines: list[str]) -> str:
    return digest([line.split("\t", 1)[0] + "\n" for line in lines])


def jumped_starts(jobs: list[Job], key: Callable[[Job], tuple[float, ...]]) -> int:
    """Jobs that first started while a job ahead of them in their tenant's queue (by the
    policy's key at submit; ties by arrival) was waiting for its first start: backfill's
    out-of-order starts (0 in a strict FIFO queue)."""
    events: list[tuple[float, int, int]] = []  # (time, 0 submit | 1 first start, index)
    for i, j in enumerate(jobs):
        events.append((j.submit_s, 0, i))
        if j.first_start_s is not None:
            events.append((j.first_start_s, 1, i))
    events.sort()
    waiting: dict[str, list[tuple[tuple[float, ...], int]]] = {}
    started = [False] * len(jobs)
    jumped = 0
    k = 0
    while k < len(events):
        now = events[k][0]
        starts = []
        while k < len(events) and events[k][0] == now:
            _, what, i = events[k]
            if what == 0:
                heapq.heappush(waiting.setdefault(jobs[i].tenant, []), ((*key(jobs[i]), i), i))
            else:
                started[i] = True
                starts.append(i)
            k += 1
        for i in starts:
            heap = waiting[jobs[i].tenant]
            while heap and started[heap[0][1]]:
                heapq.heappop(heap)
            if heap and heap[0][0] < (*key(jobs[i]), i):
                jumped += 1
    return jumped


def queue_key(policy: str) -> Callable[[Job], tuple[float, ...]]:
    """The tenant-queue order of a job that has not yet run (scheduler/policies/)."""
    if policy == "sjf":
        return lambda j: (j.estimate_s, j.submit_s)
    return lambda j: (j.submit_s,)  # fifo, fair; las: every new job is in queue 0


def stats(case: Case, run: TwinRun) -> dict[str, int]:
    s = run.summary
    return {
        "jobs": int(s["jobs"]),
        "completed": int(s["completed"]),
        "unfinished": int(s["unfinished"]),
        "rejected": int(s["rejected"]),
        "preemptions": int(s["preemptions"]),
        "failures": int(run.result.failures),
        "jumped_starts": jumped_starts(run.result.jobs, queue_key(case.policy)),
    }


# ------------------------------------------------------------------ the goldens file
def load_golden() -> dict[str, Any]:
    if not GOLDEN_JSON.exists():
        return {"cases": {}}
    data: dict[str, Any] = json.loads(GOLDEN_JSON.read_text())
    return data


def write_golden(case: Case, entry: dict[str, Any], hashes: bytes) -> None:
    data = load_golden()
    data["about"] = (
        "Golden per-job results of tests/test_golden.py (see its docstring). Regenerate only "
        f"for a deliberate behaviour change: {UPDATE_ENV}=1 .venv/bin/pytest tests/test_golden.py"
    )
    data["cases"][case.name] = entry
    GOLDEN.mkdir(exist_ok=True)
    GOLDEN_JSON.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (GOLDEN / f"{case.name}.jobhash").write_bytes(hashes)


def environment() -> dict[str, str]:
    """The versions a run's numbers may depend on (the national case's synthesised workload
    and failures are drawn with NumPy; traces and tables go through PyArrow). Recorded with
    each golden so that a digest that changes with no change of code says what else did."""
    from importlib.metadata import version  # noqa: PLC0415

    env = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("numpy", "pyarrow", "pydantic", "pydantic-core", "PyYAML", "polars"):
        env[dist] = version(dist)
    return env


def explain(case: Case, want: dict[str, Any], lines: list[str], now: dict[str, Any]) -> str:
    """How many jobs differ and the earliest of them (as they come out now)."""
    head = f"golden '{case.name}' changed ({aifactory.BUILD} build): "
    env_then = want.get("env", {})
    drift = ", ".join(
        f"{k} {env_then.get(k, '?')} -> {v}" for k, v in now["env"].items() if env_then.get(k) != v
    )
    if want.get("inputs") is not None and want["inputs"] != now["inputs"]:
        head += "its input workload differs (the run's inputs, before any scheduling); "
    if drift:
        head += f"(environment since it was written: {drift}) "
    how = (
        f"\nIf the change is deliberate, rerun with {UPDATE_ENV}=1 (rewrites tests/golden/) and "
        "commit tests/golden/ on its own, saying why the results changed."
    )
    counts = "".join(
        f"\n  {k}: {want['stats'].get(k)} -> {v}"
        for k, v in now["stats"].items()
        if want["stats"].get(k) != v
    )
    if want["ids"] != now["ids"]:
        return f"{head}the set of jobs differs ({want['jobs']} -> {len(lines)} jobs){counts}{how}"
    old = (GOLDEN / f"{case.name}.jobhash").read_bytes()
    new = job_hashes(lines)
    differ = [lines[i] for i in range(len(lines)) if old[i] != new[i]]

    def first_start(line: str) -> float:
        start = line.split("\t")[1]
        return float("inf") if start == "None" else float(start)

    shown = "".join(f"\n  {line.rstrip()}" for line in sorted(differ, key=first_start)[:SHOWN])
    return (
        f"{head}{len(differ)} of {len(lines)} jobs differ (by a 1-byte hash per job, so about "
        f"1 in 256 differing jobs is not counted).\nCounts that changed:{counts or ' none'}\n"
        f"Earliest differing jobs by first start, as they are now (id, first start, end, "
        f"state, preemptions):{shown}{how}"
    )


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case, request: pytest.FixtureRequest) -> None:
    run = run_case(case, request)
    lines = job_lines(run)
    now: dict[str, Any] = {
        "params": {
            **case.params,
            "policy": case.policy,
            "backfill": case.backfill,
            "workload": case.workload,
        },
        "jobs": len(lines),
        "digest": digest(lines),
        "ids": ids_digest(lines),
        "stats": stats(case, run),
        "written_by": f"{aifactory.BUILD} build",
        "env": environment(),
        "inputs": inputs_digest(run),
    }
    got = now["stats"]
    assert got["preemptions"] >= case.min_preemptions, f"{case.name}: trivial: {got}"
    assert got["jumped_starts"] >= case.min_jumped, f"{case.name}: backfill idle: {got}"
    if UPDATE:
        write_golden(case, now, job_hashes(lines))
        return
    want = load_golden()["cases"].get(case.name)
    assert want is not None, f"no golden for '{case.name}': run with {UPDATE_ENV}=1 once"
    assert want["params"] == now["params"], (
        f"'{case.name}': its parameters changed since the golden was written "
        f"({want['params']} -> {now['params']}); regenerate with {UPDATE_ENV}=1"
    )
    if want["digest"] != now["digest"]:
        pytest.fail(explain(case, want, lines, now), pytrace=False)


def test_the_session_runs_the_expected_build() -> None:
    """``make test`` says which build each pytest run must import (a compiled build older
    than its sources silently runs as pure Python, with only a RuntimeWarning)."""
    expected = os.environ.get(EXPECT_ENV)
    if not expected:
        pytest.skip(f"this session runs the {aifactory.BUILD} build ({EXPECT_ENV} not set)")
    build = aifactory.BUILD
    assert build == expected, (
        f"this session runs the {build} build, not {expected}: "
        "`make native` rebuilds a stale or partial build"
    )
