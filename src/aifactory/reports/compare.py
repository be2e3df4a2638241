"""Policy comparison: the table rows, ``compare.json`` and the self-contained ``compare.html``.

Every policy ran on the same fleet and trace; the first one given is the baseline, and each
metric is also reported as a ratio to it (0.5 = half the baseline's value), which is what an
operator reads first when choosing a policy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aifactory.reports import charts
from aifactory.reports.html import (
    DASH,
    figure,
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
from aifactory.reports.report import fleet_name
from aifactory.reports.results import FrameLike, cdf_points, float_column, json_safe, to_polars

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"

COMPARE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("avg_jct_s", "avg JCT", "dur"),
    ("p99_jct_s", "p99 JCT", "dur"),
    ("avg_queue_s", "avg queue", "dur"),
    ("p99_queue_s", "p99 queue", "dur"),
    ("utilization", "utilisation", "pct"),
    ("preemptions", "preemptions", "int"),
    ("gpu_hours_lost_preemption", "GPU-h lost to preemption", "num"),
    ("gpu_hours_lost_failure", "GPU-h lost to failures", "num"),
    ("wall_s", "wall time", "dur"),
)
"""``(summary key, column title, format)`` of each compared metric, in table order."""

RATIO_SUFFIX = "_ratio"


def ratio(value: object, base: object) -> float | None:
    """``value / base``; 1.0 when both are zero; ``None`` when undefined or either is missing."""
    if not (is_number(value) and is_number(base)):
        return None
    v, b = float(value), float(base)  # type: ignore[arg-type]  # is_number checked
    if b == 0.0:
        return 1.0 if v == 0.0 else None
    return v / b


def policy_labels(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """A unique label per run: the policy, plus backfill when a policy appears twice."""
    names = [str(s.get("policy", f"run{i + 1}")) for i, s in enumerate(summaries)]
    counts = Counter(names)
    labels = [
        f"{n}/{s.get('backfill', '')}" if counts[n] > 1 else n
        for n, s in zip(names, summaries, strict=True)
    ]
    repeats = Counter(labels)
    seen: Counter[str] = Counter()
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if repeats[label] == 1 else f"{label}#{seen[label]}")
    return out


def comparison_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per policy: each metric and its ratio to the first policy's value.

    Keys: ``policy`` (unique label), ``backfill``, then for every metric in
    :data:`COMPARE_METRICS` the value under its summary key and the ratio under
    ``<key>_ratio``. Missing metrics are ``None``, as are ratios to a zero baseline.
    """
    if not summaries:
        return []
    base = summaries[0]
    rows: list[dict[str, Any]] = []
    for label, s in zip(policy_labels(summaries), summaries, strict=True):
        row: dict[str, Any] = {"policy": label, "backfill": s.get("backfill")}
        for key, _title, _fmt in COMPARE_METRICS:
            value = s.get(key)
            row[key] = value if is_number(value) else None
            row[key + RATIO_SUFFIX] = ratio(value, base.get(key))
        rows.append(row)
    return rows


def format_value(kind: str, value: object) -> str:
    """A compared metric for people (the CLI's table uses this too)."""
    if kind == "dur":
        return fmt_duration(value)
    if kind == "pct":
        return fmt_pct(value)
    if kind == "int":
        return fmt_int(value)
    return fmt_float(value, 3)


def format_ratio(value: object) -> str:
    """A ratio as ``x0.52``; a dash when undefined."""
    return f"x{float(value):.2f}" if is_number(value) else DASH  # type: ignore[arg-type]  # checked


def _comparison_table(rows: list[dict[str, Any]]) -> str:
    headers = ["policy", "backfill"]
    for _key, title, _fmt in COMPARE_METRICS:
        headers += [title, "ratio"]
    body = []
    for r in rows:
        cells: list[str | None] = [r["policy"], str(r.get("backfill") or DASH)]
        for key, _title, kind in COMPARE_METRICS:
            cells += [format_value(kind, r[key]), format_ratio(r[key + RATIO_SUFFIX])]
        body.append(cells)
    return table(headers, body, [False, False] + [True] * (len(headers) - 2))


def _bar_metrics(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Each metric in a unit that suits its largest value, the unit in the chart title."""
    out: dict[str, list[float | None]] = {}
    for key, title, kind in COMPARE_METRICS:
        values = [r[key] for r in rows]
        scale, unit = 1.0, ""
        if kind == "dur":
            top = max((v for v in values if v is not None), default=0.0)
            scale, unit = next(
                ((d, u) for d, u in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")) if top >= 2 * d),
                (1.0, "s"),
            )
        elif kind == "pct":
            scale, unit = 0.01, "%"
        name = f"{title} ({unit})" if unit else title
        out[name] = [None if v is None else v / scale for v in values]
    return out


def _jobs_for(
    jobs_by_policy: Mapping[str, FrameLike], label: str, summary: Mapping[str, Any]
) -> pl.DataFrame:
    for key in (label, str(summary.get("policy", ""))):
        if key in jobs_by_policy:
            return to_polars(jobs_by_policy[key])
    return pl.DataFrame()


def build_compare(
    summaries: list[dict[str, Any]], jobs_by_policy: Mapping[str, FrameLike]
) -> tuple[list[dict[str, Any]], str]:
    """The comparison rows and the HTML page (pure; nothing written)."""
    rows = comparison_rows(summaries)
    labels = [r["policy"] for r in rows]
    colours = charts.colour_map(labels)
    jct_curves: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    queue_curves: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for label, s in zip(labels, summaries, strict=True):
        df = _jobs_for(jobs_by_policy, label, s)
        jct = float_column(df, "jct_s")
        if jct.size and "state" in df.columns:
            done = (df.get_column("state").cast(pl.String) == "completed").fill_null(value=False)
            jct = jct[done.to_numpy()]
        jct_curves[label] = cdf_points(jct)
        queue_curves[label] = cdf_points(float_column(df, "queue_s"))

    first = summaries[0] if summaries else {}
    fleet = fleet_name(first)
    title = f"aifactory compare: {', '.join(labels) or 'no runs'} on {fleet}"
    params = params_list(
        [
            ("fleet", fleet),
            ("trace", first.get("trace")),
            ("jobs", first.get("jobs")),
            ("seed", first.get("seed")),
            ("time scale", first.get("time_scale")),
            ("baseline", labels[0] if labels else None),
        ]
    )
    j_fig = charts.cdf_figure(
        jct_curves, "JCT CDF (completed jobs)", "job completion time (log)", colours=colours
    )
    q_fig = charts.cdf_figure(
        queue_curves, "Queue-delay CDF", "queue delay (log; under 1 s at 1 s)", colours=colours
    )
    bars = charts.metric_bars_figure(labels, _bar_metrics(rows), colours)
    body = "".join(
        [
            params,
            section(
                "Comparison",
                _comparison_table(rows),
                note=f"Ratios are to the first policy ({labels[0] if labels else DASH}); "
                "below x1.00 means less than the baseline.",
            ),
            section(
                "Delays",
                '<div class="grid2">'
                + figure(charts.render_svg(j_fig, "cmp-jcdf"))
                + figure(charts.render_svg(q_fig, "cmp-qcdf"))
                + "</div>",
            ),
            section("Metrics", figure(charts.render_svg(bars, "cmp-bars"))),
        ]
    )
    subtitle = f"{len(rows)} polic{'y' if len(rows) == 1 else 'ies'} on the same input"
    if first.get("trace") is not None:
        subtitle += f": {first.get('trace')}"
    return rows, page(title, subtitle, body)


def write_compare(
    out_dir: Path, summaries: list[dict[str, Any]], jobs_by_policy: Mapping[str, FrameLike]
) -> Path:
    """Write ``compare.json`` (rows and summaries) and ``compare.html``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, text = build_compare(summaries, jobs_by_policy)
    doc = json_safe(
        {"baseline": rows[0]["policy"] if rows else None, "rows": rows, "summaries": summaries}
    )
    (out_dir / COMPARE_JSON).write_text(
        json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    path = out_dir / COMPARE_HTML
    path.write_text(text, encoding="utf-8")
    return path
