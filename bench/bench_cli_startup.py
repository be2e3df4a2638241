"""CLI start-up: `aifactory --version` and `aifactory job list --help` (issue #21: < 0.3 s).

Each command runs as a fresh interpreter, as a user starts it; the figure is the median
wall time of several runs (the machine is shared, so one run says little), with the median
CPU time beside it (what the command itself costs, whatever else the machine runs). The command
modules are imported lazily (aifactory/cli/__init__.py), so neither command should load
numpy, polars, pyarrow or the service stack; tests/test_cli_startup.py checks that.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNS = 9
TARGET_S = 0.3
SRC = Path(__file__).resolve().parent.parent / "src"
COMMANDS = {
    "aifactory --version": ["--version"],
    "aifactory job list --help": ["job", "list", "--help"],
}


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _median_s(args: list[str]) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of the command."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    wall, cpu = [], []
    for _ in range(RUNS):
        t0, c0 = time.perf_counter(), _cpu_s()
        subprocess.run(
            [sys.executable, "-m", "aifactory", *args], env=env, check=True, capture_output=True
        )
        wall.append(time.perf_counter() - t0)
        cpu.append(_cpu_s() - c0)
    return statistics.median(wall), statistics.median(cpu)


def run() -> list[dict[str, Any]]:
    """Rows: the median start-up time of each command (wall, and CPU: on a loaded shared
    machine the wall time also counts waiting for a core), and bare Python's for scale."""
    rows: list[dict[str, Any]] = []
    for name, args in COMMANDS.items():
        value, cpu = _median_s(args)
        rows.append({"name": f"{name}, CPU (user+sys), median", "value": cpu, "unit": "s"})
        rows.append(
            {
                "name": f"{name}, median of {RUNS}",
                "value": value,
                "unit": "s",
                "target": f"< {TARGET_S:g} s",
                "ok": value < TARGET_S,
            }
        )
    t = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        t.append(time.perf_counter() - t0)
    rows.append({"name": "python -c pass (for scale)", "value": statistics.median(t), "unit": "s"})
    return rows
