"""One run of a sweep: a variation and a seed in, one flat row of metrics out.

:func:`run_one` is what every engine calls, in a worker process or a Ray task, so it takes
and returns plain picklable values and drives the twin only through its public entry
points: :func:`aifactory.workload.synth.synthesize` for the national workload and
:func:`aifactory.twin.run.run_twin` for the run (the same calls as ``aifactory run``).

Seeds: run ``i`` of a variation uses :func:`derive_seed` of the scenario seed, the
variation's name (or ``""`` when the scenario is paired, so every variation sees the same
workload draws at seed ``i``) and ``i``. A run that raises fails its own row only
(``status = "error"``), never the sweep.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aifactory.whatif.apply import RunPlan, plan_run
from aifactory.whatif.model import NATIONAL, Scenario

#: Columns that measure the machine, not the model: left out when runs are compared.
TIMING_COLUMNS = ("wall_s", "run_wall_s")

#: Top-level summary metrics copied into a row.
_SCALARS = (
    "jobs",
    "completed",
    "unfinished",
    "rejected",
    "avg_jct_s",
    "p50_jct_s",
    "p99_jct_s",
    "avg_queue_s",
    "p50_queue_s",
    "p99_queue_s",
    "makespan_s",
    "utilization",
    "preemptions",
    "failures",
    "events",
    "fleet_gpus",
    "wall_s",
)

#: Per-tenant summary metrics, as ``tenant.<name>.<metric>`` columns.
TENANT_METRICS = (
    "jobs",
    "gpu_hours",
    "quota_gpus",
    "utilization_of_quota",
    "avg_queue_s",
    "avg_jct_s",
    "ettr",
    "gpu_hours_borrowed",
    "energy_mwh",
    "gpu_hours_lost_failure",
    "gpu_hours_lost_preemption",
)

#: Per-site metrics, as ``site.<name>.<metric>`` columns (what the twin reports per site).
SITE_METRICS = ("energy_mwh", "peak_mw", "capacity_mw")


@dataclass(frozen=True, slots=True)
class RunTask:
    """One run to do; plain data so that it pickles for a process pool and for Ray."""

    scenario: dict[str, Any]
    where: str
    variation: str
    seed_index: int
    seed: int
    keep_dir: str | None = None


def derive_seed(scenario_seed: int, variation: str, index: int) -> int:
    """A run's seed from the scenario's, a variation name ('' when paired) and the index."""
    digest = hashlib.blake2b(f"{scenario_seed}/{variation}/{index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % (2**31 - 1)


def tasks_for(
    scenario: Scenario, where: Path, seeds: int, keep_dir: Path | None = None
) -> list[RunTask]:
    """Every variation (the base first) x seed, in a fixed order."""
    doc = scenario.model_dump(mode="json")
    out: list[RunTask] = []
    for name in scenario.run_names:
        for i in range(seeds):
            key = "" if scenario.paired else name
            keep = str(keep_dir / f"{name}-seed{i}") if keep_dir is not None else None
            out.append(
                RunTask(doc, str(where), name, i, derive_seed(scenario.base.seed, key, i), keep)
            )
    return out


def run_one(task: RunTask) -> dict[str, Any]:
    """Do one run; the row has ``variation``, ``seed_index``, ``seed``, ``status``, ``error``
    and every metric (NaN where the twin reports none)."""
    started = time.perf_counter()
    head: dict[str, Any] = {
        "variation": task.variation,
        "seed_index": task.seed_index,
        "seed": task.seed,
    }
    try:
        scenario = Scenario.model_validate(task.scenario)
        plan = plan_run(scenario, task.variation, Path(task.where))
        row = _run(plan, task)
    except Exception as exc:  # noqa: BLE001 (one run's failure is that run's row, not the sweep's)
        return {**head, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    row.update(head)
    row["status"] = "ok"
    row["error"] = ""
    row["run_wall_s"] = time.perf_counter() - started
    return row


def workload_table(plan: RunPlan, seed: int) -> Any:
    """The run's workload: the national synthetic one (with per-tenant growth), or a trace."""
    import pyarrow as pa  # noqa: PLC0415 (heavy; only in workers)
    import pyarrow.compute as pc  # noqa: PLC0415

    from aifactory.twin.run import load_table  # noqa: PLC0415
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    if plan.workload != NATIONAL:
        return load_table(plan.workload, None)[0]
    table = synthesize(plan.workload_fleet, plan.days, plan.load, seed)
    if not plan.growth:
        return table
    # A tenant's rows are drawn from its own generator (seed, tenant, class), so the rows of
    # a grown tenant come from a synthesis at load x factor, and everyone else's are unchanged.
    grown = sorted(set(plan.growth))
    parts = [table.filter(pc.invert(pc.is_in(table["tenant"], pa.array(grown))))]
    for factor in sorted(set(plan.growth.values())):
        names = pa.array([t for t in grown if plan.growth[t] == factor])
        more = synthesize(plan.workload_fleet, plan.days, plan.load * factor, seed)
        parts.append(more.filter(pc.is_in(more["tenant"], names)))
    merged = pa.concat_tables(parts)
    return merged.take(
        pc.sort_indices(merged, [("submit_s", "ascending"), ("job_id", "ascending")])
    )


def _run(plan: RunPlan, task: RunTask) -> dict[str, Any]:
    from aifactory.twin.inputs import CheckpointPolicy  # noqa: PLC0415
    from aifactory.twin.run import TwinSpec, run_twin  # noqa: PLC0415

    table = workload_table(plan, task.seed)
    with tempfile.TemporaryDirectory(prefix="aifactory-sweep-") as tmp:
        failures = plan.failures
        if failures != "off" and plan.failure_multiplier != 1.0:
            from aifactory.physics.failures import load_failure_model  # noqa: PLC0415

            model = load_failure_model(failures)
            scaled = model.with_rate(model.rate_per_gpu_hour * plan.failure_multiplier)
            failures = str(Path(tmp) / "failures.yaml")
            Path(failures).write_text(yaml.safe_dump(scaled.model_dump(mode="json")), "utf-8")
        spec = TwinSpec(
            fleet=plan.fleet.name,
            trace=f"{plan.workload}-{plan.days:g}d-load{plan.load:g}",
            policy=plan.policy,
            backfill=plan.backfill,
            seed=task.seed,
            failures=failures,
            checkpoint=CheckpointPolicy.TRACE,
            checkpoint_write_s=plan.checkpoint_write_s,
            until_s=plan.days * 86400.0,
            preemption=plan.preemption,
            backfill_interval_s=plan.backfill_interval_s,
            queue_depth=plan.queue_depth,
            max_job_test=plan.max_job_test,
        )
        run = run_twin(spec, table=table, fleet=plan.fleet)
    if task.keep_dir is not None:
        from aifactory.cli.simulate_cmd import write_outputs  # noqa: PLC0415

        write_outputs(run, Path(task.keep_dir))
    energy = run.result.observer.energy_mwh_by_site
    return flatten(run.summary, [float(x) for x in energy])


def flatten(summary: dict[str, Any], site_energy_mwh: list[float]) -> dict[str, Any]:
    """One flat row of a run summary: scalars, ``tenant.<t>.<m>`` and ``site.<s>.<m>``."""
    row: dict[str, Any] = {k: _num(summary.get(k)) for k in _SCALARS}
    row["energy_total_mwh"] = _num(summary["energy"]["total_mwh"])
    row["energy_idle_mwh"] = _num(summary["energy"]["idle_mwh"])
    for tenant, values in summary["per_tenant"].items():
        for m in TENANT_METRICS:
            row[f"tenant.{tenant}.{m}"] = _num(values.get(m))
    peak = summary["energy"]["peak_mw_by_site"]
    cap = summary["energy"]["site_capacity_mw"]
    for i, site in enumerate(cap):
        row[f"site.{site}.energy_mwh"] = (
            site_energy_mwh[i] if i < len(site_energy_mwh) else math.nan
        )
        row[f"site.{site}.peak_mw"] = _num(peak.get(site))
        row[f"site.{site}.capacity_mw"] = _num(cap[site])
    row.update(network_row(summary))
    return row


def network_row(summary: dict[str, Any]) -> dict[str, float]:
    """The links, staging and spanning figures (twin.netreport) as flat columns: totals
    (``tb_copied``: the copies' sizes, each once however many links it crossed),
    ``tenant.<t>.staging_hours`` and ``link.<a-b>.tb_moved`` / ``.avg_utilization``."""
    net = summary.get("network") or {}
    links = net.get("links") or {}
    staging = net.get("staging") or {}
    cross = net.get("cross_site") or {}
    row = {
        "tb_copied": _num(staging.get("tb_copied", 0.0)),
        "jobs_staged": _num(staging.get("jobs_staged", 0)),
        "staging_hours": _num(staging.get("staging_hours", 0.0)),
        "cross_site_jobs": _num(cross.get("jobs", 0)),
        "cross_site_gpu_hours": _num(cross.get("gpu_hours", 0.0)),
        "cross_site_slowdown": _num(cross.get("avg_slowdown", 1.0)),
        "cross_site_gpu_hours_slowdown": _num(cross.get("gpu_hours_slowdown", 0.0)),
    }
    hours = staging.get("staging_hours_by_tenant") or {}
    for tenant in summary.get("per_tenant") or {}:
        row[f"tenant.{tenant}.staging_hours"] = _num(hours.get(tenant, 0.0))
    for name, v in links.items():
        row[f"link.{name}.tb_moved"] = _num(v.get("tb_moved"))
        row[f"link.{name}.avg_utilization"] = _num(v.get("avg_utilization"))
    return row


def _num(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan
