"""``/metrics`` in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

from typing import Any


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
