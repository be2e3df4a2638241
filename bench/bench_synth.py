"""Workload synthesis: 30 days of korea-2025 at load 0.9 (issue #5 §1 and §7).

Target: a few seconds for the whole national workload (hundreds of thousands of jobs),
so that synthesis is never the slow part of the main job.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from aifactory.fleet import bundled_fleets, load_fleet
from aifactory.workload.synth import synth_report, synthesize

DAYS = 30.0
LOAD = 0.9
TARGET_S = 5.0


def run() -> list[dict[str, Any]]:
    """Synthesise, write Parquet, and report jobs, wall time and offered-load error."""
    name = "korea-2025" if "korea-2025" in bundled_fleets() else "demo"
    fleet = load_fleet(name)
    t0 = time.perf_counter()
    table = synthesize(fleet, DAYS, LOAD, seed=0)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.parquet"
        pq.write_table(table, path)
        t2 = time.perf_counter()
        size_mb = path.stat().st_size / 1e6
    report = synth_report(table, fleet, DAYS, LOAD, 0)
    worst = max(abs(t.load - LOAD) for t in report.tenants)
    label = f"{name} {DAYS:g} d @ {LOAD:g}"
    return [
        {"name": f"{label}: jobs", "value": table.num_rows, "unit": "jobs"},
        {
            "name": f"{label}: synthesise",
            "value": t1 - t0,
            "unit": "s",
            "target": f"< {TARGET_S:g} s",
            "ok": t1 - t0 < TARGET_S,
        },
        {"name": f"{label}: jobs/s", "value": table.num_rows / (t1 - t0), "unit": "jobs/s"},
        {"name": f"{label}: write Parquet", "value": t2 - t1, "unit": "s"},
        {"name": f"{label}: Parquet size", "value": size_mb, "unit": "MB"},
        {
            "name": f"{label}: worst tenant |load - L|",
            "value": worst,
            "unit": "",
            "target": "< 0.001",
            "ok": worst < 1e-3,
        },
    ]
