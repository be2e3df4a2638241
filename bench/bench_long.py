"""A long horizon: 180 days of korea-2025 at load 0.9 with failures (issue #20 §4).

Optional and long (tens of minutes in the pure build): ``make bench`` runs it only with
``AIFACTORY_BENCH_LONG=1`` (``AIFACTORY_BENCH_LONG_DAYS`` shortens it). The case runs in a
child process so that its peak RSS is its own. It runs what ``aifactory run --days 180
--load 0.9`` runs (synthesis, the twin with Llama 3's failures, checkpoints, the bundled
allocations and 30 s deep backfill scans, the summary and jobs.parquet) and reports wall
time, peak RSS, and events per second around day 10 and in the last day, from the same
run: the cost of an event must not grow with the backlog. The target is judged on events
per CPU second of the process (the wall clock of a shared machine counts others' work);
events per wall second are reported beside them.

Targets: < 15 minutes, < 4 GB peak RSS, events/s of the last day within 20% of day 10's.

``AIFACTORY_BENCH_LONG_ALLOCATIONS=none`` runs it without the bundled allocations, to
tell the allocation gate's cost (twin/allocgate.py ``released``) from the scheduler's.
Also ``python -m bench.bench_long [DAYS [none]]`` prints the figures as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAYS = 180.0
LOAD = 0.9
SEED = 2025
TARGET_S = 15 * 60.0
TARGET_RSS_GB = 4.0
TARGET_DRIFT = 0.20
DAY_S = 86_400.0


def _rate_at(marks: list[tuple[float, float, int]], day: float) -> float:
    """Events per second over the progress marks around simulated ``day`` (a day's span
    centred on it, clipped to the run): marks are (clock s, simulated s, events)."""
    lo_t, hi_t = (day - 0.5) * DAY_S, (day + 0.5) * DAY_S
    inside = [m for m in marks if lo_t <= m[1] <= hi_t]
    if len(inside) < 2:  # marks sparser than a day: the two around the day
        before = [m for m in marks if m[1] <= day * DAY_S]
        after = [m for m in marks if m[1] > day * DAY_S]
        inside = [before[-1] if before else marks[0], after[0] if after else marks[-1]]
    first, last = inside[0], inside[-1]
    wall = last[0] - first[0]
    return (last[2] - first[2]) / wall if wall > 0 else 0.0


def case(days: float, allocations: str | None = "korea-2025") -> dict[str, Any]:
    """Run the long case in this process and return its figures (``allocations``: the
    bundled grants ``aifactory run`` enforces, or None)."""
    import aifactory  # noqa: PLC0415
    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.twin.run import national_spec, run_twin  # noqa: PLC0415
    from aifactory.twin.simulator import Simulation, no_gc  # noqa: PLC0415
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    t0 = time.perf_counter()
    fleet = load_fleet("korea-2025")
    marks: list[tuple[float, float, int]] = []  # by wall clock
    cpu_marks: list[tuple[float, float, int]] = []  # by this process's CPU time
    watched: list[Simulation] = []
    # AIFACTORY_BENCH_LONG_MARKS=1: each progress mark also goes to stderr as it is taken
    # (CPU s, simulated day, events), to tell which events a profile's window covers.
    show = os.environ.get("AIFACTORY_BENCH_LONG_MARKS") == "1"

    def progress(_fraction: float) -> None:
        kernel = watched[0].kernel
        marks.append((time.perf_counter(), kernel.now, kernel.processed))
        cpu_marks.append((time.process_time(), kernel.now, kernel.processed))
        if show:
            cpu, now, done = cpu_marks[-1]
            pre = watched[0].sched.preemption
            print(
                f"mark cpu={cpu:.2f} day={now / DAY_S:.3f} events={done}"
                f" searches={pre.searches} priced={pre.priced}",
                file=sys.stderr,
            )

    with no_gc():
        table = synthesize(fleet, days, LOAD, SEED)
        jobs = table.num_rows
        spec = national_spec("korea-2025", days, LOAD, SEED, allocations=allocations)
        t1 = time.perf_counter()
        run = run_twin(spec, table=table, fleet=fleet, progress=progress, watch=watched.append)
        del table
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run.write_jobs(Path(tmp) / "jobs.parquet")
    t3 = time.perf_counter()
    summary = run.summary
    last = days - 0.5 if days > 1 else days / 2
    early = min(10.0, days / 2)
    early_rate = _rate_at(marks, early)
    late_rate = _rate_at(marks, last)
    # On a shared machine the wall clock counts others' work too; CPU time does not.
    early_cpu = _rate_at(cpu_marks, early)
    late_cpu = _rate_at(cpu_marks, last)
    pending = summary["stability"]["total"]["end_gpu_h"]
    return {
        "build": aifactory.BUILD,
        "days": days,
        "jobs": jobs,
        "allocations": allocations,
        "events": summary["events"],
        "twin_s": summary["wall_s"],
        "twin_and_summary_s": t2 - t1,
        "total_s": t3 - t0,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "events_per_s_early": early_rate,
        "early_day": early,
        "events_per_s_late": late_rate,
        "late_day": last,
        "events_per_cpu_s_early": early_cpu,
        "events_per_cpu_s_late": late_cpu,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "pending_jobs_at_end": int(summary["unfinished"]),
        "pending_gpu_h_at_end": pending,
        "stability": summary["stability"]["verdict"],
        "preemptions": summary["preemptions"],
    }


def run() -> list[dict[str, Any]]:
    """The long case in a child process, when ``AIFACTORY_BENCH_LONG=1``."""
    if os.environ.get("AIFACTORY_BENCH_LONG") != "1":
        return [
            {
                "name": "long horizon (korea-2025 180 d @ 0.9)",
                "value": "skipped",
                "unit": "",
                "target": "set AIFACTORY_BENCH_LONG=1",
            }
        ]
    days = float(os.environ.get("AIFACTORY_BENCH_LONG_DAYS", DAYS))
    grants = os.environ.get("AIFACTORY_BENCH_LONG_ALLOCATIONS", "korea-2025")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_long", str(days), grants],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    label = f"korea-2025 {days:g} d @ {LOAD:g} ({got['build']}, allocations {grants})"
    early, late = got["events_per_cpu_s_early"], got["events_per_cpu_s_late"]
    drift = abs(late - early) / early if early > 0 else float("inf")
    return [
        {"name": f"{label}: jobs", "value": got["jobs"], "unit": "jobs"},
        {
            "name": f"{label}: wall (synthesis to jobs.parquet)",
            "value": got["total_s"],
            "unit": "s",
            "target": f"< {TARGET_S:g} s",
            "ok": got["total_s"] < TARGET_S,
        },
        {
            "name": f"{label}: peak RSS",
            "value": got["peak_rss_gb"],
            "unit": "GB",
            "target": f"< {TARGET_RSS_GB:g} GB",
            "ok": got["peak_rss_gb"] < TARGET_RSS_GB,
        },
        {
            "name": f"{label}: events/s (wall) at day {got['early_day']:g}",
            "value": got["events_per_s_early"],
            "unit": "events/s",
        },
        {
            "name": f"{label}: events/s (wall) at day {got['late_day']:g}",
            "value": got["events_per_s_late"],
            "unit": "events/s",
        },
        {
            "name": f"{label}: events per CPU s at day {got['early_day']:g}",
            "value": early,
            "unit": "events/s",
        },
        {
            "name": f"{label}: events per CPU s at day {got['late_day']:g}",
            "value": late,
            "unit": "events/s",
            "target": f"within {TARGET_DRIFT:.0%} of day {got['early_day']:g}",
            "ok": drift <= TARGET_DRIFT,
        },
        {"name": f"{label}: stability", "value": got["stability"], "unit": ""},
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    grants_arg = sys.argv[2] if len(sys.argv) > 2 else "korea-2025"
    print(
        json.dumps(
            case(
                float(sys.argv[1]) if len(sys.argv) > 1 else DAYS,
                None if grants_arg == "none" else grants_arg,
            )
        )
    )
