"""Whether a run was stable: the trend of each tenant's pending GPU-hours (issue #20 §4).

A planner must see at once that a load is beyond capacity once failures and preemptions
are counted: a queue that keeps growing never reaches a steady state, and its averages
(queue time, JCT) depend on the horizon, not on the load. The observer samples, per
tenant, the GPU-hours of work left in its pending jobs; here a least-squares line is
fitted to the last third of the horizon, per tenant and for the whole fleet.

A backlog *grows* when the line rises over the window by more than
``GROWTH_SHARE`` of the window's mean backlog, by at least ``MIN_GROWTH_GPU_H``, and
faster than ``CAPACITY_SHARE`` of the tenant's own capacity a day (its nominal quota in
GPUs times 24 GPU-hours; the whole fleet's GPUs for the fleet's trend). A queue in a
steady state wanders about its mean (its fitted growth is a small share of it), one that
grows without bound rises by about its mean or more over any window (a backlog rising
linearly from zero rises by twice its mean). The capacity floor keeps a tenant with
thousands of GPUs from being called beyond capacity for a few GPU-hours a day: a backlog
rising by 1% of a tenant's daily GPU-hours adds a day of waiting work per hundred days,
which a planner cannot tell from a queue's wandering over a finite window, while a load
beyond capacity (offered minus served) raises it by a few percent or more. A tenant
without quota (a cohort, or one that only borrows) gets the absolute floor alone. All
three bounds are rules of thumb stated here, not fitted to any run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GROWTH_SHARE = 0.25  # fitted rise over the window, as a share of its mean backlog
MIN_GROWTH_GPU_H = 1.0  # a rise under one GPU-hour is noise, whatever the mean
CAPACITY_SHARE = 0.01  # growth a day under this share of its capacity's GPU-hours a day
DAY_S = 86_400.0


def _slope(t_s: np.ndarray[Any, np.dtype[np.float64]], y: np.ndarray[Any, Any]) -> float:
    """Least-squares slope of ``y`` over ``t_s`` (per second); 0 with under two points."""
    if len(t_s) < 2:
        return 0.0
    dt = t_s - t_s.mean()
    den = float((dt * dt).sum())
    return float((dt * (y - y.mean())).sum()) / den if den > 0 else 0.0


def _trend(
    t_s: np.ndarray[Any, np.dtype[np.float64]], y_gpu_h: np.ndarray[Any, Any], capacity: float
) -> dict[str, Any]:
    """The fitted trend of one backlog (GPU-hours) over the window ``t_s``, against the
    floor from ``capacity`` GPUs (0: the absolute floor alone)."""
    per_day = _slope(t_s, y_gpu_h) * DAY_S
    span_days = float(t_s[-1] - t_s[0]) / DAY_S if len(t_s) else 0.0
    mean = float(y_gpu_h.mean()) if len(y_gpu_h) else 0.0
    rise = per_day * span_days
    floor = CAPACITY_SHARE * max(capacity, 0.0) * 24.0
    return {
        "slope_gpu_h_per_day": per_day,
        "mean_gpu_h": mean,
        "end_gpu_h": float(y_gpu_h[-1]) if len(y_gpu_h) else 0.0,
        "floor_gpu_h_per_day": floor,
        "growing": rise >= MIN_GROWTH_GPU_H and rise > GROWTH_SHARE * mean and per_day > floor,
    }


def stability(
    t_s: list[float],
    tenants: list[str],
    backlog_gpu_s: list[float],
    capacity_gpus: dict[str, float] | None = None,
    fleet_gpus: float = 0.0,
) -> dict[str, Any]:
    """The stability verdict from sample times, tenant names and the observer's pending
    GPU-seconds per tenant (row after row, in ``tenants`` order). ``capacity_gpus``: each
    tenant's nominal quota in GPUs and ``fleet_gpus`` the fleet's, for the capacity floor
    (a tenant missing or at 0 gets the absolute floor alone)."""
    caps = capacity_gpus or {}
    t = np.asarray(t_s, dtype=np.float64)
    n_t = len(tenants)
    rows = np.asarray(backlog_gpu_s, dtype=np.float64).reshape(len(t), n_t) / 3600.0
    rows = np.maximum(rows, 0.0)  # incremental float sums may end a hair under zero
    start = t[0] + 2.0 * (t[-1] - t[0]) / 3.0 if len(t) else 0.0
    sel = t >= start
    win_t = t[sel]
    win = rows[sel]
    per: dict[str, dict[str, Any]] = {}
    sentences: list[str] = []
    for k, name in enumerate(tenants):
        tr = _trend(win_t, win[:, k], float(caps.get(name, 0.0)))
        if tr["growing"]:
            tr["sentence"] = (
                f"{name}'s backlog grew by {tr['slope_gpu_h_per_day']:,.0f} GPU-hours a day"
                " over the last third: this load is beyond its capacity"
            )
            sentences.append(tr["sentence"])
        per[name] = tr
    total = _trend(win_t, win.sum(axis=1) if n_t else np.zeros(len(win_t)), fleet_gpus)
    growing = [name for name, tr in per.items() if tr["growing"]]
    if growing:
        verdict = (
            f"unstable: the backlog of {', '.join(growing)} grew over the last third"
            f" (fleet backlog {total['slope_gpu_h_per_day']:+,.0f} GPU-hours a day)"
        )
    else:
        verdict = "stable"
    return {
        "verdict": verdict,
        "stable": not growing,
        "window_s": [float(win_t[0]), float(win_t[-1])] if len(win_t) else [0.0, 0.0],
        "total": total,
        "per_tenant": per,
        "sentences": sentences,
    }
