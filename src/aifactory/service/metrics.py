"""``/metrics`` in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from typing import Any

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class CycleStats:
    """Scheduling-cycle latency histogram and counters, for ``/metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.buckets = [0] * len(LATENCY_BUCKETS_S)
        self.count = 0
        self.sum_s = 0.0
        self.started = 0
        self.preempted = 0
        self.job_errors: dict[str, int] = {}
        self.recent: deque[float] = deque(maxlen=1000)

    def observe(self, seconds: float, started: int, preempted: int) -> None:
        """Record one cycle."""
        with self._lock:
            i = bisect_left(LATENCY_BUCKETS_S, seconds)
            if i < len(self.buckets):
                self.buckets[i] += 1
            self.count += 1
            self.sum_s += seconds
            self.started += started
            self.preempted += preempted
            self.recent.append(seconds)

    def job_error(self, phase: str) -> None:
        """Count one job failed by an error in ``phase`` (admit, decide, commit, launch...)."""
        with self._lock:
            self.job_errors[phase] = self.job_errors.get(phase, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy (cumulative buckets, as Prometheus wants)."""
        with self._lock:
            cum, acc = [], 0
            for b in self.buckets:
                acc += b
                cum.append(acc)
            return {
                "buckets": list(zip(LATENCY_BUCKETS_S, cum, strict=True)),
                "count": self.count,
                "sum": self.sum_s,
                "started": self.started,
                "preempted": self.preempted,
                "job_errors": dict(self.job_errors),
            }


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    *,
    pending: dict[str, tuple[int, int]],
    running: dict[str, tuple[int, int]],
    busy: int,
    total: int,
    cycles: dict[str, Any],
    leading: bool,
) -> str:
    """Pending/running jobs and GPUs per tenant, busy GPUs, scheduling-cycle latency."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("aifactory_pending_jobs", "gauge", "Jobs waiting, per tenant.")
    lines.extend(
        f'aifactory_pending_jobs{{tenant="{_esc(t)}"}} {n}' for t, (n, _) in sorted(pending.items())
    )
    family("aifactory_pending_gpus", "gauge", "GPUs asked by waiting jobs, per tenant.")
    lines.extend(
        f'aifactory_pending_gpus{{tenant="{_esc(t)}"}} {g}' for t, (_, g) in sorted(pending.items())
    )
    family("aifactory_running_jobs", "gauge", "Jobs running, per tenant.")
    lines.extend(
        f'aifactory_running_jobs{{tenant="{_esc(t)}"}} {n}' for t, (n, _) in sorted(running.items())
    )
    family("aifactory_busy_gpus", "gauge", "GPUs allocated to running jobs.")
    lines.append(f"aifactory_busy_gpus {busy}")
    family("aifactory_gpus", "gauge", "GPUs in the fleet.")
    lines.append(f"aifactory_gpus {total}")
    family("aifactory_scheduler_leader", "gauge", "1 if this replica runs the scheduler.")
    lines.append(f"aifactory_scheduler_leader {int(leading)}")
    name = "aifactory_scheduling_cycle_seconds"
    family(name, "histogram", "Time of one scheduling pass (this replica, since start).")
    for bound, count in cycles["buckets"]:
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {cycles["count"]}')
    lines.append(f"{name}_sum {cycles['sum']:.6f}")
    lines.append(f"{name}_count {cycles['count']}")
    family("aifactory_jobs_started_total", "counter", "Jobs started by this replica's scheduler.")
    lines.append(f"aifactory_jobs_started_total {cycles['started']}")
    family(
        "aifactory_jobs_preempted_total", "counter", "Jobs preempted by this replica's scheduler."
    )
    lines.append(f"aifactory_jobs_preempted_total {cycles['preempted']}")
    family(
        "aifactory_job_errors_total",
        "counter",
        "Jobs failed (or set back) by an error in one phase of the scheduler loop.",
    )
    lines.extend(
        f'aifactory_job_errors_total{{phase="{_esc(phase)}"}} {n}'
        for phase, n in sorted(cycles.get("job_errors", {}).items())
    )
    return "\n".join(lines) + "\n"
