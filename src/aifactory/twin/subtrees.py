"""The figures of every parent tenant's subtree: what a consortium's platform got.

Jobs run in leaf tenants, so the summary's ``per_tenant`` holds leaves only, and summing its
rows per subtree would count nothing twice but would lose the means (a mean of means is not
the subtree's mean). Here each parent of the fleet's tenant tree gets the same figures over
all its descendants' jobs, computed from the job columns, with its own nominal quota (which
caps its subtree, see aifactory/fleet/spec.py ``Tenant``). They are kept apart from
``per_tenant`` (summary key ``per_subtree``) so that a consumer summing ``per_tenant`` still
counts each job once; the report draws the tree from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aifactory.fleet.spec import Fleet, Tenant


def tenant_parents(fleet: Fleet) -> dict[str, str]:
    """Each tenant with a parent, and its parent's name, in the fleet's tree order."""
    return {t.name: p.name for t, p, _ in fleet.iter_tenants() if p is not None}


def _descendants(tenant: Tenant) -> list[str]:
    out: list[str] = []
    for child in tenant.children:
        out.append(child.name)
        out.extend(_descendants(child))
    return out


def _mean(values: np.ndarray[Any, Any]) -> float | None:
    return float(values.mean()) if values.size else None


def subtree_figures(
    fleet: Fleet,
    tenant_names: list[str],
    tenant_code: np.ndarray[Any, Any],
    *,
    jct: np.ndarray[Any, Any],
    queue: np.ndarray[Any, Any],
    per_tenant: Mapping[str, Mapping[str, Any]],
    nominal: Mapping[str, int],
    makespan_s: float,
) -> dict[str, dict[str, Any]]:
    """``per_subtree``: for each parent tenant, its children, its descendants with jobs,
    and over their jobs: count, mean JCT (completed jobs: ``jct`` is NaN for the others),
    mean queue (started jobs: ``queue`` NaN for the others), GPU-hours and hours lost, and
    its nominal quota and the share of it used over the makespan."""
    code_of = {name: k for k, name in enumerate(tenant_names)}
    out: dict[str, dict[str, Any]] = {}
    for tenant, _, _ in fleet.iter_tenants():
        if not tenant.children:
            continue
        below = [t for t in _descendants(tenant) if t in per_tenant]
        codes = [code_of[t] for t in below if t in code_of]
        sel = np.isin(tenant_code, codes) if codes else np.zeros(tenant_code.size, dtype=bool)
        t_jct, t_queue = jct[sel], queue[sel]
        gpu_hours = sum(float(per_tenant[t].get("gpu_hours") or 0.0) for t in below)
        quota = int(nominal.get(tenant.name, 0))
        out[tenant.name] = {
            "children": [c.name for c in tenant.children],
            "tenants": below,
            "jobs": int(np.count_nonzero(sel)),
            "avg_jct_s": _mean(t_jct[~np.isnan(t_jct)]),
            "avg_queue_s": _mean(t_queue[~np.isnan(t_queue)]),
            "gpu_hours": gpu_hours,
            "quota_gpus": quota,
            "utilization_of_quota": (
                gpu_hours * 3600.0 / (quota * makespan_s) if quota and makespan_s > 0 else None
            ),
            "gpu_hours_lost_failure": sum(
                float(per_tenant[t].get("gpu_hours_lost_failure") or 0.0) for t in below
            ),
            "gpu_hours_lost_preemption": sum(
                float(per_tenant[t].get("gpu_hours_lost_preemption") or 0.0) for t in below
            ),
        }
    return out
