"""The run report: ``report.html`` (one self-contained page) and ``summary.png``.

:func:`build_report` is pure (summary and tables in, HTML text and PNG bytes out);
:func:`write_report` only adds the two file writes. Everything heavy is reduced with polars
and numpy before drawing (CDFs thinned to 2,000 points, time series binned to 1,500), so a
million-job run reports in about the time of a thousand-job one.

The summary is the issue #3 contract; the optional keys (quota, energy, rejected reasons,
observed, per-tenant extras) add sections when present and are skipped when not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aifactory.reports import charts
from aifactory.reports.html import (
    DASH,
    cards,
    esc,
    figure,
    fmt_any,
    fmt_duration,
    fmt_float,
    fmt_int,
    fmt_pct,
    is_number,
    page,
    params_list,
    section,
    table,
)
from aifactory.reports.netmap import network_section
from aifactory.reports.results import (
    SIZE_CLASSES,
    FrameLike,
    busy_column,
    cdf_points,
    downsample_mean,
    float_column,
    site_power_column,
    sites_of_timeseries,
    size_class_index,
    tenants_of_timeseries,
    to_polars,
)
from aifactory.twin.stability import CAPACITY_SHARE

REPORT_FILE = "report.html"
PNG_FILE = "summary.png"
MAX_STACKED_TENANTS = 11
"""Tenants drawn individually in the utilisation chart; the rest are stacked as "other"."""
TIMESERIES_POINTS = 1500

_SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("jobs", "jobs", "int"),
    ("completed", "completed", "int"),
    ("unfinished", "unfinished", "int"),
    ("rejected", "rejected", "int"),
    ("avg_jct_s", "mean JCT", "dur"),
    ("p50_jct_s", "median JCT", "dur"),
    ("p99_jct_s", "p99 JCT", "dur"),
    ("avg_queue_s", "mean queue delay", "dur"),
    ("p50_queue_s", "median queue delay", "dur"),
    ("p99_queue_s", "p99 queue delay", "dur"),
    ("makespan_s", "makespan", "dur"),
    ("utilization", "utilisation", "pct"),
    ("preemptions", "preemptions", "int"),
    ("events", "events", "int"),
    ("wall_s", "wall time", "dur"),
)


def _fmt(kind: str, value: object) -> str:
    return {"int": fmt_int, "dur": fmt_duration, "pct": fmt_pct}[kind](value)


@dataclass
class TenantRow:
    """Everything the report knows about one tenant, merged from summary and jobs table."""

    name: str
    jobs: float | None = None
    avg_jct_s: float | None = None
    avg_queue_s: float | None = None
    gpu_hours: float | None = None
    lost_preemption: float | None = None
    lost_failure: float | None = None
    quota_gpus: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    depth: int = 0  # in the fleet's tenant tree (0: a top-level tenant)
    subtotal: bool = False  # a parent: its figures are its subtree's (jobs run in leaves)


def _num(value: object) -> float | None:
    return float(value) if is_number(value) else None  # type: ignore[arg-type]  # checked


def fleet_name(summary: Mapping[str, Any]) -> str:
    """The fleet's name whether ``summary["fleet"]`` is a name or a fleet summary dict."""
    fleet = summary.get("fleet")
    if isinstance(fleet, Mapping):
        return str(fleet.get("name", "fleet"))
    return str(fleet) if fleet is not None else "fleet"


def quota_of(summary: Mapping[str, Any]) -> dict[str, float]:
    """Nominal quota GPUs per tenant, from ``quota`` or the per-tenant ``quota_gpus``."""
    out: dict[str, float] = {}
    quota = summary.get("quota")
    if isinstance(quota, Mapping):
        out.update({str(k): float(v) for k, v in quota.items() if is_number(v)})
    per_tenant = summary.get("per_tenant")
    if isinstance(per_tenant, Mapping):
        for name, row in per_tenant.items():
            if isinstance(row, Mapping) and is_number(row.get("quota_gpus")):
                out[str(name)] = float(row["quota_gpus"])
    return out


def fleet_gpus_of(summary: Mapping[str, Any], ts: pl.DataFrame) -> tuple[float, str]:
    """The fleet's GPU count and where it came from (for the utilisation axis label).

    Preference: an explicit ``fleet_gpus``/``gpus_total``, then a fleet summary dict, then
    the sum of nominal quotas (quotas partition the fleet), then the busiest sample seen.
    """
    for key in ("fleet_gpus", "gpus_total"):
        if is_number(summary.get(key)) and summary[key] > 0:
            return float(summary[key]), "fleet"
    fleet = summary.get("fleet")
    if isinstance(fleet, Mapping) and is_number(fleet.get("gpus_total")):
        return float(fleet["gpus_total"]), "fleet"
    quota = sum(quota_of(summary).values())
    if quota > 0:
        return quota, "sum of quotas"
    busy = float_column(ts, "busy_gpus")
    if busy.size and np.nanmax(busy) > 0:
        return float(np.nanmax(busy)), "peak busy GPUs"
    return 0.0, "unknown"


def tenant_rows(summary: Mapping[str, Any], jobs: pl.DataFrame) -> list[TenantRow]:
    """Per-tenant figures, summary first and the jobs table filling the gaps; by GPU-hours."""
    rows: dict[str, TenantRow] = {}
    cols = set(jobs.columns)
    if jobs.height and "tenant" in cols:
        aggs = [pl.len().alias("jobs")]
        for src, dst in (
            ("jct_s", "avg_jct_s"),
            ("queue_s", "avg_queue_s"),
        ):
            if src in cols:
                aggs.append(pl.col(src).cast(pl.Float64).mean().alias(dst))
        for src, dst in (
            ("gpu_hours", "gpu_hours"),
            ("gpu_hours_lost_preemption", "lost_preemption"),
            ("gpu_hours_lost_failure", "lost_failure"),
        ):
            if src in cols:
                aggs.append(pl.col(src).cast(pl.Float64).sum().alias(dst))
        grouped = jobs.group_by(pl.col("tenant").cast(pl.String)).agg(aggs)
        for rec in grouped.iter_rows(named=True):
            name = str(rec.pop("tenant"))
            row = TenantRow(name=name)
            for key, value in rec.items():
                setattr(row, key, _num(value))
            rows[name] = row
    per_tenant = summary.get("per_tenant")
    if isinstance(per_tenant, Mapping):
        for name, rec in per_tenant.items():
            if not isinstance(rec, Mapping):
                continue
            row = rows.setdefault(str(name), TenantRow(name=str(name)))
            for key in ("jobs", "avg_jct_s", "avg_queue_s", "gpu_hours"):
                if is_number(rec.get(key)):
                    setattr(row, key, float(rec[key]))
            for src, dst in (
                ("gpu_hours_lost_preemption", "lost_preemption"),
                ("gpu_hours_lost_failure", "lost_failure"),
            ):
                if is_number(rec.get(src)):
                    setattr(row, dst, float(rec[src]))
            known = {"jobs", "avg_jct_s", "avg_queue_s", "gpu_hours", "quota_gpus"}
            for k, v in rec.items():
                if k in known:
                    continue
                if isinstance(v, Mapping):  # e.g. wait hours by reason: a column each
                    row.extra.update({f"{k}: {sub}": x for sub, x in v.items()})
                else:
                    row.extra[k] = v
    for name, q in quota_of(summary).items():
        rows.setdefault(name, TenantRow(name=name)).quota_gpus = q
    by_hours = sorted(rows.values(), key=lambda r: (-(r.gpu_hours or 0.0), r.name))
    parents = summary.get("tenant_parents")
    if not isinstance(parents, Mapping) or not parents:
        return by_hours
    return _as_tree(by_hours, {str(k): str(v) for k, v in parents.items()}, summary)


def _as_tree(
    rows: list[TenantRow], parents: Mapping[str, str], summary: Mapping[str, Any]
) -> list[TenantRow]:
    """``rows`` in the fleet's tenant tree: each parent (its figures its subtree's, from
    the summary's ``per_subtree``) followed by its children, siblings by GPU-hours."""
    subtrees = summary.get("per_subtree")
    subtrees = subtrees if isinstance(subtrees, Mapping) else {}
    by_name = {r.name: r for r in rows}
    for name, rec in subtrees.items():
        if not isinstance(rec, Mapping):
            continue
        row = by_name.setdefault(str(name), TenantRow(name=str(name)))
        row.subtotal = True
        for key in ("jobs", "avg_jct_s", "avg_queue_s", "gpu_hours"):
            setattr(row, key, _num(rec.get(key)))
        row.lost_preemption = _num(rec.get("gpu_hours_lost_preemption"))
        row.lost_failure = _num(rec.get("gpu_hours_lost_failure"))
    for name in set(parents.values()) - set(by_name):  # a parent with no row at all
        by_name[name] = TenantRow(name=name, subtotal=True)
    children: dict[str | None, list[TenantRow]] = {}
    for row in sorted(by_name.values(), key=lambda r: (-(r.gpu_hours or 0.0), r.name)):
        up = parents.get(row.name)
        children.setdefault(up if up in by_name else None, []).append(row)
    out: list[TenantRow] = []

    def walk(row: TenantRow, depth: int) -> None:
        row.depth = depth
        out.append(row)
        for child in children.get(row.name, []):
            walk(child, depth + 1)

    for top in children.get(None, []):
        walk(top, 0)
    return out


def _stack_series(
    ts: pl.DataFrame, order: list[str]
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], dict[str, np.ndarray[Any, Any]]]:
    """Binned time axis and busy GPUs per tenant (top tenants, then "other")."""
    names = tenants_of_timeseries(ts.columns)
    if ts.height == 0 or "t_s" not in ts.columns:
        return np.empty(0), {}
    if not names and "busy_gpus" in ts.columns:
        names, columns = ["all tenants"], [float_column(ts, "busy_gpus")]
    else:
        # Stack order: the report's tenant order (GPU-hours), but the tenants drawn on their
        # own are the biggest by area in the series itself, so "other" stays the small rest.
        rank = {n: i for i, n in enumerate(order)}
        area = {n: float(np.nansum(float_column(ts, busy_column(n)))) for n in names}
        if len(names) > MAX_STACKED_TENANTS + 1:
            top = set(sorted(names, key=lambda n: (-area[n], n))[:MAX_STACKED_TENANTS])
        else:
            top = set(names)
        names = sorted(names, key=lambda n: (n not in top, rank.get(n, len(rank)), n))
        columns = [np.nan_to_num(float_column(ts, busy_column(n))) for n in names]
    if len(names) > MAX_STACKED_TENANTS + 1:
        rest = np.sum(columns[MAX_STACKED_TENANTS:], axis=0)
        names = [*names[:MAX_STACKED_TENANTS], "other"]
        columns = [*columns[:MAX_STACKED_TENANTS], rest]
    t, binned = downsample_mean(float_column(ts, "t_s"), columns, TIMESERIES_POINTS)
    return t, dict(zip(names, binned, strict=True))


def _size_class_curves(
    values: np.ndarray[Any, Any], gpus: np.ndarray[Any, Any], overall: str | None
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    curves: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    ok = np.isfinite(values)
    values, gpus = values[ok], gpus[ok]
    if overall is not None and values.size:
        curves[f"{overall} (n={values.size:,})"] = cdf_points(values)
    idx = size_class_index(gpus)
    for i, (label, _lo, _hi) in enumerate(SIZE_CLASSES):
        sel = values[idx == i]
        if sel.size:
            curves[f"{label} (n={sel.size:,})"] = cdf_points(sel)
    return curves


def _class_colours(curves: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in curves:
        label = name.split(" (n=")[0]
        pos = [i for i, (lbl, _a, _b) in enumerate(SIZE_CLASSES) if lbl == label]
        out[name] = charts.PALETTE[pos[0]] if pos else "#222222"
    return out


def _raw(value: object) -> str:
    """The machine value as it reads in summary.json (floats to six significant figures)."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "null"
    return "null" if value is None else str(value)


def _summary_section(summary: Mapping[str, Any]) -> str:
    rows = [
        (label, _fmt(kind, summary.get(key)), _raw(summary.get(key)))
        for key, label, kind in _SUMMARY_ROWS
    ]
    return section(
        "Summary",
        table(["metric", "value", "raw"], rows, [False, True, True], raw_last=True),
        note="JCT = end - submit, queue delay = first start - submit; means and percentiles "
        "over completed jobs (queue delay over every job that started).",
    )


def _stability_section(summary: Mapping[str, Any]) -> str:
    """Whether the backlog settled (twin/stability.py): skipped for summaries without it."""
    st = summary.get("stability")
    if not isinstance(st, Mapping):
        return ""
    verdict = f"<p><strong>{esc(str(st.get('verdict', '')))}</strong></p>"
    said = "".join(f"<li>{esc(str(line))}</li>" for line in st.get("sentences", []))
    rows = [
        (
            name,
            fmt_float(tr.get("slope_gpu_h_per_day")),
            fmt_float(tr.get("mean_gpu_h")),
            fmt_float(tr.get("end_gpu_h")),
            "grows" if tr.get("growing") else "steady",
        )
        for name, tr in st.get("per_tenant", {}).items()
    ]
    return section(
        "Stability",
        verdict,
        f"<ul>{said}</ul>" if said else "",
        table(
            ["tenant", "GPU-hours a day", "mean GPU-hours", "at end", "backlog"],
            rows,
            [False, True, True, True, False],
        ),
        note="Pending GPU-hours (GPUs x work left of waiting jobs), least-squares trend "
        "over the last third of the horizon. A backlog that grows never reaches a steady "
        "state: this load is beyond capacity once failures and preemptions are counted. "
        f"A rise under {CAPACITY_SHARE:.0%} of the tenant's quota GPU-hours a day counts "
        "as steady.",
    )


def _tenant_section(
    rows: list[TenantRow], makespan_s: float | None, colours: Mapping[str, str]
) -> str:
    if not rows:
        return section("Tenants", '<p class="note">No tenants in this run.</p>')
    hours = makespan_s / 3600.0 if makespan_s else None
    quota_h = [r.quota_gpus * hours if r.quota_gpus is not None and hours else None for r in rows]
    has_lost = any(r.lost_preemption or r.lost_failure for r in rows)
    # The chart has a bar per leaf: a parent's bar would count its children's hours again.
    drawn = [(r, q) for r, q in zip(rows, quota_h, strict=True) if not r.subtotal]
    lost = (
        [(r.lost_preemption or 0.0) + (r.lost_failure or 0.0) for r, _ in drawn]
        if has_lost
        else None
    )
    fig = charts.gpu_hours_figure(
        [r.name for r, _ in drawn],
        [r.gpu_hours or 0.0 for r, _ in drawn],
        lost,
        [q for _, q in drawn],
        colours,
    )
    tree_note = (
        " In the table, a parent tenant's row (marked subtree, its children indented under it) "
        "gives its whole subtree's jobs and hours against its own quota, which caps the subtree."
        if any(r.subtotal for r in rows)
        else ""
    )
    chart = figure(
        charts.render_svg(fig, "gpuh"),
        "Bars: GPU-hours used (hatched: lost to preemption and failure). Black tick: the "
        "tenant's nominal quota held for the whole makespan." + tree_note,
    )
    extra_keys = sorted({k for r in rows for k in r.extra})
    headers = [
        "tenant",
        "jobs",
        "mean JCT",
        "mean queue",
        "GPU-hours",
        "quota GPUs",
        "quota x makespan (GPU-h)",
        "share of quota",
    ]
    if has_lost:
        headers += ["lost: preemption (GPU-h)", "lost: failure (GPU-h)"]
    headers += extra_keys
    body = []
    for r, qh in zip(rows, quota_h, strict=True):
        share = r.gpu_hours / qh if r.gpu_hours is not None and qh else None
        cells: list[str | None] = [
            "\u2003" * r.depth + (f"{r.name} (subtree)" if r.subtotal else r.name),
            fmt_int(r.jobs),
            fmt_duration(r.avg_jct_s),
            fmt_duration(r.avg_queue_s),
            fmt_float(r.gpu_hours, 4),
            fmt_int(r.quota_gpus),
            fmt_float(qh, 4),
            fmt_pct(share),
        ]
        if has_lost:
            cells += [fmt_float(r.lost_preemption, 3), fmt_float(r.lost_failure, 3)]
        cells += [_fmt_extra(k, r.extra.get(k)) for k in extra_keys]
        body.append(cells)
    numeric = [False] + [True] * (len(headers) - 1)
    return section("Tenants", chart, table(headers, body, numeric))


def _fmt_extra(key: str, value: object) -> str:
    if key.endswith("_s"):
        return fmt_duration(value)
    if key in {"ettr", "utilization_of_quota", "service_availability"} or key.endswith("_share"):
        return fmt_pct(value)
    return fmt_any(value)


def _jobs_breakdown(jobs: pl.DataFrame) -> str:
    parts: list[str] = []
    for col, title in (("state", "Jobs by final state"), ("placement", "Jobs by placement level")):
        if jobs.height == 0 or col not in jobs.columns:
            continue
        counts = (
            jobs.group_by(pl.col(col).cast(pl.String).fill_null("")).agg(
                pl.len().alias("n"), pl.col("gpus").cast(pl.Float64).sum().alias("g")
            )
            if "gpus" in jobs.columns
            else jobs.group_by(pl.col(col).cast(pl.String).fill_null("")).agg(
                pl.len().alias("n"), pl.lit(None, pl.Float64).alias("g")
            )
        ).sort(["n", col], descending=[True, False])
        total = jobs.height
        rows = [
            (k or "(not placed)", fmt_int(n), fmt_pct(n / total), fmt_int(g))
            for k, n, g in counts.iter_rows()
        ]
        parts.append(
            f"<div><h3>{esc(title)}</h3>"
            + table([col, "jobs", "share", "GPUs requested"], rows, [False, True, True, True])
            + "</div>"
        )
    if not parts:
        return ""
    return section("Jobs", f'<div class="grid2">{"".join(parts)}</div>')


def _energy_section(summary: Mapping[str, Any], ts: pl.DataFrame) -> str:
    energy = summary.get("energy")
    has_power = (
        "power_mw" in ts.columns
        and ts.height > 0
        and bool(np.nanmax(float_column(ts, "power_mw")) > 0)
    )
    if not isinstance(energy, Mapping) and not has_power:
        return ""
    energy = energy if isinstance(energy, Mapping) else {}
    parts: list[str] = []
    if is_number(energy.get("total_mwh")):
        parts.append(cards([("energy used", f"{fmt_float(energy['total_mwh'], 4)} MWh")]))
    peaks = energy.get("peak_mw_by_site")
    caps = energy.get("site_capacity_mw")
    peaks = peaks if isinstance(peaks, Mapping) else {}
    caps = caps if isinstance(caps, Mapping) else {}
    if peaks or caps:
        rows = []
        for site in sorted(set(peaks) | set(caps)):
            p, c = _num(peaks.get(site)), _num(caps.get(site))
            rows.append(
                (site, fmt_float(p, 4), fmt_float(c, 4), fmt_pct(p / c if p and c else None))
            )
        headers = ["site", "peak MW", "capacity MW", "peak / capacity"]
        parts.append(table(headers, rows, [False, True, True, True]))
    if has_power:
        t, (power,) = downsample_mean(
            float_column(ts, "t_s"), [float_column(ts, "power_mw")], TIMESERIES_POINTS
        )
        cap_total = sum(v for v in (_num(x) for x in caps.values()) if v is not None)
        fig = charts.lines_over_time_figure(
            t,
            {"facility power": power},
            "Power draw over time",
            "MW",
            {"site capacity (all sites)": cap_total} if cap_total > 0 else None,
        )
        parts.append(figure(charts.render_svg(fig, "power")))
        for site in sites_of_timeseries(ts.columns):
            cap = _num(caps.get(site))
            t, (site_mw,) = downsample_mean(
                float_column(ts, "t_s"),
                [float_column(ts, site_power_column(site))],
                TIMESERIES_POINTS,
            )
            fig = charts.lines_over_time_figure(
                t,
                {f"{site} facility power": site_mw},
                f"Power at {site} against its capacity",
                "MW",
                {f"{site} capacity": cap} if cap else None,
            )
            parts.append(figure(charts.render_svg(fig, f"power-{site}")))
    return section("Energy", *parts)


def _reasons_section(summary: Mapping[str, Any]) -> str:
    reasons = summary.get("rejected_reasons")
    rejected = summary.get("rejected")
    if not isinstance(reasons, Mapping) or not reasons:
        if (_num(rejected) or 0.0) > 0:
            return section(
                "Rejected jobs",
                f'<p class="note">{fmt_int(rejected)} job(s) can never run; no reasons given.</p>',
            )
        return ""
    rows = sorted(
        ((str(k), v) for k, v in reasons.items()), key=lambda kv: (-(_num(kv[1]) or 0.0), kv[0])
    )
    return section(
        "Rejected jobs",
        table(["reason", "jobs"], [(k, fmt_int(v)) for k, v in rows], [False, True]),
        note="Jobs that can never run on this fleet (for example, bigger than any site).",
    )


def _projects_section(summary: Mapping[str, Any]) -> str:
    """Per project of a run with an allocations file: granted, used, wasted, denied, queue."""
    projects = summary.get("projects")
    if not isinstance(projects, Mapping) or not projects:
        return ""
    cols = [
        ("project", "project", "text"),
        ("tenant", "tenant", "text"),
        ("requested_b200h", "requested", "float"),
        ("granted_b200h", "granted", "float"),
        ("used_b200h", "used", "float"),
        ("overrun_b200h", "overrun", "float"),
        ("wasted_b200h", "wasted", "float"),
        ("left_b200h", "left", "float"),
        ("denied_job_hours", "denied (job-h)", "float"),
        ("jobs", "jobs", "int"),
        ("jobs_held", "held", "int"),
        ("avg_queue_s", "mean queue", "duration"),
        ("p99_queue_s", "p99 queue", "duration"),
    ]

    def cell(kind: str, value: object) -> str:
        if kind == "float":
            return fmt_float(value, 4)
        if kind == "int":
            return fmt_int(value)
        return fmt_duration(value) if kind == "duration" else fmt_any(value)

    body = [
        [cell(kind, row.get(key)) for key, _t, kind in cols]
        for row in projects.values()
        if isinstance(row, Mapping)
    ]
    alloc = summary.get("allocations")
    name = alloc.get("name", DASH) if isinstance(alloc, Mapping) else DASH
    return section(
        f"Projects and allocations ({name})",
        table([t for _k, t, _kind in cols], body, [False, False] + [True] * (len(cols) - 2)),
        note="B200-equivalent hours. Granted: grants whose period began by the end of the "
        "run, top-ups included. Used: charged (every run interval, whatever ended it). "
        "Wasted: left on grants that expired. Denied: hours jobs waited, held on their "
        "allocation. Queue delay includes that wait.",
    )


def _observed_section(summary: Mapping[str, Any]) -> str:
    observed = summary.get("observed")
    if not isinstance(observed, Mapping) or not observed:
        return ""
    rows = [
        (str(k), fmt_duration(v) if str(k).endswith("_s") else fmt_any(v))
        for k, v in observed.items()
    ]
    return section(
        "Twin against reality",
        table(["measure", "value"], rows, [False, True]),
        note="How far the twin's queue delays are from those observed on the real system.",
    )


def build_report(
    summary: Mapping[str, Any], jobs: FrameLike, timeseries: FrameLike
) -> tuple[str, bytes]:
    """The report page (HTML text) and the utilisation chart (PNG bytes) of one run."""
    jdf = to_polars(jobs)
    ts = to_polars(timeseries)
    if ts.height and "t_s" in ts.columns:
        ts = ts.sort("t_s")
    tenants = tenant_rows(summary, jdf)
    order = [r.name for r in tenants if not r.subtotal]  # leaves: where jobs run
    colours = charts.colour_map(order)
    fleet = fleet_name(summary)
    policy = summary.get("policy", DASH)
    title = f"aifactory run: {policy} on {fleet}"
    subtitle = f"trace {summary.get('trace', DASH)}"
    gpus, gpus_source = fleet_gpus_of(summary, ts)

    params = params_list(
        [
            ("fleet", fleet),
            ("fleet GPUs", int(gpus) if gpus_source == "fleet" else None),
            ("trace", summary.get("trace")),
            ("policy", summary.get("policy")),
            ("backfill", summary.get("backfill")),
            ("seed", summary.get("seed")),
            ("time scale", summary.get("time_scale")),
            ("estimate error", summary.get("estimate_error")),
        ]
    )
    headline = cards(
        [
            ("jobs", fmt_int(summary.get("jobs"))),
            ("completed", fmt_int(summary.get("completed"))),
            ("utilisation", fmt_pct(summary.get("utilization"))),
            ("mean JCT", fmt_duration(summary.get("avg_jct_s"))),
            ("p99 queue delay", fmt_duration(summary.get("p99_queue_s"))),
            ("preemptions", fmt_int(summary.get("preemptions"))),
        ]
    )

    # Utilisation over time, stacked by tenant: the page's lead chart and summary.png.
    t, stacks = _stack_series(ts, order)
    stack_colours = {**colours, "other": charts.OTHER_COLOUR, "all tenants": charts.PALETTE[0]}
    util_fig = charts.utilisation_figure(t, stacks, gpus, stack_colours)
    png = charts.render_png(util_fig)
    util_note = (
        f"Share of the fleet's {gpus:,.0f} GPUs busy, per tenant, averaged over {len(t):,} bins."
        if gpus_source == "fleet"
        else f"Share of {gpus:,.0f} GPUs ({gpus_source}: the summary names no fleet size)."
    )
    util = section("Utilisation over time", figure(charts.render_svg(util_fig, "util"), util_note))

    # Queue and JCT CDFs, thinned to 2,000 points per curve.
    gpus_col = float_column(jdf, "gpus")
    queue = float_column(jdf, "queue_s")
    q_curves = _size_class_curves(queue, gpus_col, "all started jobs")
    q_fig = charts.cdf_figure(
        q_curves,
        "Queue-delay CDF",
        "queue delay (log; under 1 s drawn at 1 s)",
        colours=_class_colours(q_curves),
        empty="no job has started",
    )
    done = np.ones(jdf.height, dtype=bool)
    if "state" in jdf.columns and jdf.height:
        done = (
            (jdf.get_column("state").cast(pl.String) == "completed")
            .fill_null(value=False)
            .to_numpy()
        )
    jct = float_column(jdf, "jct_s")
    j_curves = _size_class_curves(jct[done], gpus_col[done], None) if jct.size else {}
    j_fig = charts.cdf_figure(
        j_curves,
        "JCT CDF by job size (completed jobs)",
        "job completion time (log)",
        colours=_class_colours(j_curves),
        empty="no completed jobs",
    )
    cdfs = section(
        "Delays",
        '<div class="grid2">'
        + figure(charts.render_svg(q_fig, "qcdf"))
        + figure(charts.render_svg(j_fig, "jcdf"))
        + "</div>",
    )

    capacity = ""
    cap_cols = {"pending GPUs": "pending_gpus", "stranded GPUs": "stranded_gpus"}
    present = {k: v for k, v in cap_cols.items() if v in ts.columns}
    if ts.height and present:
        tb, series = downsample_mean(
            float_column(ts, "t_s"),
            [float_column(ts, c) for c in present.values()],
            TIMESERIES_POINTS,
        )
        fig = charts.lines_over_time_figure(
            tb,
            dict(zip(present, series, strict=True)),
            "Backlog and fragmentation",
            "GPUs",
            {"fleet size": gpus} if gpus_source == "fleet" else None,
        )
        capacity = section(
            "Backlog and fragmentation",
            figure(
                charts.render_svg(fig, "cap"),
                "Pending GPUs: GPUs asked for by queued jobs. Stranded GPUs: free GPUs in "
                "partly used NVLink domains, which big gangs cannot use.",
            ),
        )

    makespan = _num(summary.get("makespan_s"))
    body = "".join(
        [
            params,
            headline,
            _stability_section(summary),
            _summary_section(summary),
            util,
            cdfs,
            _tenant_section(tenants, makespan, colours),
            capacity,
            _jobs_breakdown(jdf),
            _energy_section(summary, ts),
            network_section(
                summary, list((summary.get("energy") or {}).get("site_capacity_mw") or {})
            ),
            _reasons_section(summary),
            _projects_section(summary),
            _observed_section(summary),
        ]
    )
    return page(title, subtitle, body), png


def write_report(
    out_dir: Path, summary: Mapping[str, Any], jobs: FrameLike, timeseries: FrameLike
) -> Path:
    """Write ``report.html`` and ``summary.png`` into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text, png = build_report(summary, jobs, timeseries)
    (out_dir / PNG_FILE).write_bytes(png)
    path = out_dir / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    return path
