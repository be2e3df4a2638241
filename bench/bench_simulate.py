"""``aifactory simulate`` end to end on the full Philly trace (issue #21 §4).

The whole command as an operator runs it, in a fresh process each time: interpreter and
CLI start, trace import, simulation, summary, ``jobs.parquet``/``timeseries.parquet``/
``summary.json``, ``report.html`` and ``summary.png``. Target: under 1.5 s compiled (the
same command took 3.6 s when the charts were drawn with matplotlib). Median of
:data:`REPEATS` runs (the brief's figure was a median); the best is shown too.

A second child times the phases of the same work in one process, so a regression shows
where it is: import, simulation (trace import included), the results tables and files,
and the report. Row names say which build ran (compiled or pure Python). Skipped (no
rows) when ../shared/traces is absent.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.shared import PHILLY

REPO = Path(__file__).resolve().parents[1]
REPEATS = 5
TARGET_S = 1.5

PHASES = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import aifactory
from aifactory.twin.run import TwinSpec, run_twin
t1 = time.perf_counter()
run = run_twin(TwinSpec(fleet="philly-2017", trace=sys.argv[1], policy="fifo"))
t2 = time.perf_counter()
from aifactory.reports.results import write_results
from aifactory.twin.simulator import no_gc
with no_gc():  # as the CLI's write_outputs does
    jobs, series = run.jobs_table(), run.timeseries_table()
    write_results(Path(sys.argv[2]), run.summary, jobs, series)
    t3 = time.perf_counter()
    from aifactory.reports.report import write_report
    write_report(Path(sys.argv[2]), run.summary, jobs, series)
    t4 = time.perf_counter()
print(json.dumps({"build": aifactory.BUILD, "import": t1 - t0, "simulate": t2 - t1,
                  "results": t3 - t2, "report": t4 - t3}))
"""


def _command(out: Path) -> list[str]:
    return [
        sys.executable, "-m", "aifactory", "simulate", "--fleet", "philly-2017",
        "--trace", str(PHILLY), "--out", str(out), "--json",
    ]  # fmt: skip


def run() -> list[dict[str, Any]]:
    """Rows: end-to-end median and best, and the phases of one in-process run."""
    if not PHILLY.is_file():
        return []
    walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aif-bench-sim-") as tmp:
        for i in range(REPEATS):
            out = Path(tmp) / f"run{i}"
            t0 = time.perf_counter()
            subprocess.run(_command(out), check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        files = sorted(p.name for p in (Path(tmp) / "run0").iterdir())
        done = subprocess.run(
            [sys.executable, "-c", PHASES, str(PHILLY), str(Path(tmp) / "phases")],
            check=True,
            capture_output=True,
            text=True,
        )
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    build = phases.pop("build")
    median = statistics.median(walls)
    rows: list[dict[str, Any]] = [
        {
            "name": f"simulate philly-2017 full trace --out, end to end, median ({build})",
            "value": median,
            "unit": "s",
            "target": f"< {TARGET_S:g} s compiled",
            "ok": median < TARGET_S if build == "compiled" else None,
        },
        {
            "name": f"simulate end to end, best of {REPEATS} ({build})",
            "value": min(walls),
            "unit": "s",
        },
        {"name": "simulate --out writes", "value": ", ".join(files), "unit": ""},
    ]
    rows.extend(
        {"name": f"simulate phase: {name} ({build})", "value": seconds, "unit": "s"}
        for name, seconds in phases.items()
    )
    return rows
