"""Sweep throughput: runs per hour with 1 and 2 workers, on the local pool and on Ray.

The sweep is 4 runs (base + 3 variations) x 6 seeds on the demo fleet over 20 simulated
days, about a CPU-second of twin per run, so that the runs, not the engines' start-up
(a worker interpreter's imports, about half a second), set the wall time, and 24 runs
leave the last worker's tail small beside the whole. The same task list goes to every
engine and worker count. The issue's target is >= 1.8x the runs
per hour with 2 workers than with 1 on this 2-core machine. Each engine's start-up (spawning
interpreters, starting a Ray head) is inside the timed wall, as a user would see it.

The machine is shared: each row gives the 1-minute load average before it ran, since 2
workers can only be 2x as fast when both cores are free.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aifactory.whatif.engines import run_local, run_ray
from aifactory.whatif.model import Scenario
from aifactory.whatif.runner import tasks_for

TARGET = 1.8
SEEDS = 6

SCENARIO: dict[str, Any] = {
    "name": "bench-sweep",
    "base": {"fleet": "demo", "days": 20, "load": 0.9, "failures": "llama3", "seed": 1},
    "variations": [
        {
            "name": "more-b200",
            "edits": [
                {
                    "edit": "add_gpus",
                    "site": "busan",
                    "model": "b200",
                    "owner": "startup",
                    "gpus": 144,
                }
            ],
        },
        {"name": "failures-2x", "edits": [{"edit": "failure_rate", "multiplier": 2}]},
        {"name": "sjf", "edits": [{"edit": "policy", "policy": "sjf"}]},
    ],
}


def _rate(engine: str, workers: int) -> tuple[float, float, float]:
    load = os.getloadavg()[0]
    tasks = tasks_for(Scenario.model_validate(SCENARIO), Path.cwd(), SEEDS)
    t0 = time.perf_counter()
    rows = run_ray(tasks, workers) if engine == "ray" else run_local(tasks, workers)
    wall = time.perf_counter() - t0
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        msg = f"{engine}: {len(bad)} run(s) failed: {bad[0]['error']}"
        raise RuntimeError(msg)
    return len(tasks) * 3600.0 / wall, wall, load


def run() -> list[dict[str, Any]]:
    """Rows: runs/hour with 1 and 2 workers per engine, and the speed-up."""
    rows: list[dict[str, Any]] = []
    engines = ["local"]
    try:
        import ray  # noqa: F401, PLC0415 (optional extra)

        engines.append("ray")
    except ImportError:
        rows.append({"name": "ray engine", "value": "not installed", "unit": ""})
    for engine in engines:
        one, wall1, load1 = _rate(engine, 1)
        two, wall2, load2 = _rate(engine, 2)
        rows += [
            {
                "name": f"{engine}: 1 worker",
                "value": one,
                "unit": f"runs/h ({wall1:.0f} s, load avg {load1:.1f})",
            },
            {
                "name": f"{engine}: 2 workers",
                "value": two,
                "unit": f"runs/h ({wall2:.0f} s, load avg {load2:.1f})",
            },
            {
                "name": f"{engine}: speed-up with 2 workers",
                "value": two / one,
                "unit": "x",
                "target": f">= {TARGET:g}x",
                "ok": two / one >= TARGET,
            },
        ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
