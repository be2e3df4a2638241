"""A sweep's outputs: ``sweep.parquet`` (one row per run) and ``sweep.html`` (variations vs base).

The page compares each variation with the base, metric by metric, as ``mean ± 95% CI`` over
seeds (Student t, :mod:`aifactory.whatif.stats`) for the base, the variation and their
difference, overall, per tenant and per site. Every edit the twin does not model yet is
named in its variation's section, so no difference is read into a knob that has no effect.
The page is self-contained (the report helpers of :mod:`aifactory.reports.html`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aifactory.reports.html import esc, figure, page, params_list, section, table
from aifactory.whatif.model import BASE, Scenario, Variation
from aifactory.whatif.stats import Estimate, mean_ci, paired_diff, welch_diff

Row = dict[str, Any]

#: Headline metrics of each variation: (column, label, unit divisor, unit).
HEADLINE = (
    ("avg_queue_s", "avg queue", 3600.0, "h"),
    ("p99_queue_s", "p99 queue", 3600.0, "h"),
    ("avg_jct_s", "avg JCT", 3600.0, "h"),
    ("utilization", "utilisation", 0.01, "%"),
    ("completed", "completed jobs", 1.0, ""),
    ("unfinished", "unfinished jobs", 1.0, ""),
    ("preemptions", "preemptions", 1.0, ""),
    ("failures", "failures", 1.0, ""),
    ("energy_total_mwh", "energy", 1.0, "MWh"),
    ("staging_hours", "hours waiting for data", 1.0, "h"),
    ("tb_copied", "data copied", 1.0, "TB"),
    ("cross_site_gpu_hours", "cross-site GPU-hours", 1.0, "GPU-h"),
    ("cross_site_slowdown", "cross-site slowdown", 1.0, "x"),
)
_TENANT_SHOWN = (
    ("gpu_hours", "GPU-hours", 1.0),
    ("avg_queue_s", "avg queue (h)", 3600.0),
    ("utilization_of_quota", "of quota (%)", 0.01),
    ("gpu_hours_lost_failure", "lost to failures (GPU-h)", 1.0),
)
_SITE_SHOWN = (("energy_mwh", "energy (MWh)", 1.0), ("peak_mw", "peak (MW)", 1.0))


def write_parquet(rows: Sequence[Row], path: Path) -> None:
    """One row per run; metric columns are float64 (NaN where the twin reports none)."""
    import pyarrow as pa  # noqa: PLC0415 (heavy; only when writing)
    import pyarrow.parquet as pq  # noqa: PLC0415

    text = ("variation", "status", "error")
    ints = ("seed_index", "seed")
    names: dict[str, None] = dict.fromkeys((*text[:1], *ints, *text[1:]))
    for r in rows:
        names.update(dict.fromkeys(r))
    columns: dict[str, Any] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name in text:
            columns[name] = pa.array([v or "" for v in values], pa.string())
        elif name in ints:
            columns[name] = pa.array(values, pa.int64())
        else:
            columns[name] = pa.array(
                [math.nan if v is None else float(v) for v in values], pa.float64()
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _values(rows: Sequence[Row], variation: str, column: str, seeds: int) -> list[float]:
    by_seed = {r["seed_index"]: r for r in rows if r["variation"] == variation}
    out = []
    for i in range(seeds):
        r = by_seed.get(i)
        v = r.get(column) if r is not None and r.get("status") == "ok" else None
        out.append(math.nan if v is None else float(v))
    return out


def _num(value: float) -> str:
    """Four significant digits, without exponents for counts in the thousands."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:,.4g}"


def _fmt(e: Estimate, scale: float) -> str:
    if math.isnan(e.mean):
        return "-"
    mean, half = _num(e.mean / scale), _num(e.half / scale)
    return mean if math.isnan(e.half) else f"{mean} ± {half}"


def _compare_rows(
    rows: Sequence[Row],
    name: str,
    columns: Sequence[tuple[str, str, float]],
    seeds: int,
    *,
    paired: bool,
) -> list[list[str]]:
    out = []
    for column, label, scale in columns:
        base = _values(rows, BASE, column, seeds)
        var = _values(rows, name, column, seeds)
        if all(math.isnan(v) for v in base + var):
            continue
        eb, ev = mean_ci(base), mean_ci(var)
        diff = paired_diff(var, base) if paired else welch_diff(var, base)
        change = (
            f"{diff.mean / eb.mean:+.1%}"
            if not math.isnan(diff.mean) and eb.mean not in (0.0,) and not math.isnan(eb.mean)
            else "-"
        )
        out.append([label, _fmt(eb, scale), _fmt(ev, scale), _fmt(diff, scale), change])
    return out


#: What the answer sentence of a variation reports: (column, label, divisor, unit).
ANSWER = (
    ("avg_queue_s", "average queue", 3600.0, " h"),
    ("utilization", "utilisation", 0.01, "%"),
    ("completed", "completed jobs", 1.0, ""),
)


def answer(rows: Sequence[Row], name: str, seeds: int, *, paired: bool) -> str:
    """A plain sentence: how the main metrics move from the base, and whether the 95%
    interval of the difference excludes 0 (a difference) or not (none shown at these seeds)."""
    parts = []
    for column, label, scale, unit in ANSWER:
        base = _values(rows, BASE, column, seeds)
        var = _values(rows, name, column, seeds)
        eb, ev = mean_ci(base), mean_ci(var)
        d = paired_diff(var, base) if paired else welch_diff(var, base)
        if math.isnan(eb.mean) or math.isnan(ev.mean):
            continue
        if math.isnan(d.half):
            verdict = "no interval with one seed"
        elif abs(d.mean) > d.half:
            verdict = "a difference at 95%"
        else:
            verdict = "not distinguishable from no change at 95%"
        parts.append(
            f"{label} {_num(eb.mean / scale)}{unit} to {_num(ev.mean / scale)}{unit} "
            f"({_fmt(d, scale)}{unit}; {verdict})"
        )
    if not parts:
        return "no successful runs to compare."
    moved = _largest_tenant_change(rows, name, seeds, paired=paired)
    return "; ".join(parts) + "." + (f" {moved}." if moved else "")


def _largest_tenant_change(rows: Sequence[Row], name: str, seeds: int, *, paired: bool) -> str:
    """The tenant whose average queue moved most (by mean difference), in words."""
    best: tuple[float, str, Estimate, Estimate, Estimate] | None = None
    for t in _tenants_sites(rows)[0]:
        column = f"tenant.{t}.avg_queue_s"
        base, var = _values(rows, BASE, column, seeds), _values(rows, name, column, seeds)
        d = paired_diff(var, base) if paired else welch_diff(var, base)
        if math.isnan(d.mean) or d.mean == 0:
            continue
        if best is None or abs(d.mean) > best[0]:
            best = (abs(d.mean), t, mean_ci(base), mean_ci(var), d)
    if best is None:
        return ""
    _, t, eb, ev, d = best
    return (
        f"The tenant whose average queue moved most is {t}: {_num(eb.mean / 3600)} h to "
        f"{_num(ev.mean / 3600)} h ({_fmt(d, 3600.0)} h)"
    )


def _tenants_sites(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
    tenants: dict[str, None] = {}
    sites: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k.startswith("tenant."):
                tenants[k.split(".")[1]] = None
            elif k.startswith("site."):
                sites[k.split(".")[1]] = None
    return list(tenants), list(sites)


def _variation_section(rows: Sequence[Row], var: Variation, seeds: int, *, paired: bool) -> str:
    heads = ["metric", "base", var.name, f"{var.name} - base", "change"]
    num = [False, True, True, True, True]
    headline = [(c, f"{label} ({unit})" if unit else label, s) for c, label, s, unit in HEADLINE]
    parts = [
        f"<p>{esc(var.question)}</p>" if var.question else "",
        '<p class="note">Edits: ' + esc("; ".join(_edit_text(e) for e in var.edits)) + "</p>",
    ]
    parts.extend(
        f'<p class="note"><b>Not modelled yet:</b> {esc(why)}.</p>' for why in var.unmodelled
    )
    said = answer(rows, var.name, seeds, paired=paired)
    if all(not e.MODELLED for e in var.edits):
        said = "the twin models none of these edits yet, so these runs are the base's: " + said
    parts.append(f"<p><b>Answer:</b> {esc(said)}</p>")
    parts.append(table(heads, _compare_rows(rows, var.name, headline, seeds, paired=paired), num))
    tenants, sites = _tenants_sites(rows)
    per_t: list[list[str]] = []
    for t in tenants:
        cols = [(f"tenant.{t}.{c}", label, s) for c, label, s in _TENANT_SHOWN]
        per_t.extend([t, *r] for r in _compare_rows(rows, var.name, cols, seeds, paired=paired))
    parts.append("<h3>Per tenant</h3>")
    parts.append(table(["tenant", *heads], per_t, [False, *num]))
    per_s: list[list[str]] = []
    for s in sites:
        cols = [(f"site.{s}.{c}", label, sc) for c, label, sc in _SITE_SHOWN]
        per_s.extend([s, *r] for r in _compare_rows(rows, var.name, cols, seeds, paired=paired))
    parts.append("<h3>Per site</h3>")
    parts.append(
        '<p class="note">The twin reports energy and peak power per site; link load, data '
        "staging and cross-site gangs are in each run's summary (network).</p>"
    )
    parts.append(table(["site", *heads], per_s, [False, *num]))
    title = f"{var.name}: {var.question}" if var.question else var.name
    return section(title, *parts)


def _overview(scenario: Scenario, rows: Sequence[Row], seeds: int) -> str:
    from aifactory.whatif.charts import ci_bars_svg  # noqa: PLC0415 (only the sweep page draws)

    names = scenario.run_names
    panels = {
        (f"{label} ({unit})" if unit else label): [
            _scaled(mean_ci(_values(rows, n, column, seeds)), scale) for n in names
        ]
        for column, label, scale, unit in HEADLINE
        if column in ("avg_queue_s", "p99_queue_s", "utilization", "completed")
    }
    return section(
        "Every run against the base",
        figure(ci_bars_svg(names, panels), "Bars: mean over seeds; whiskers: 95% interval."),
    )


def _scaled(e: Estimate, scale: float) -> Estimate:
    return Estimate(e.mean / scale, e.half / scale, e.n)


def _edit_text(edit: Any) -> str:
    fields = edit.model_dump(mode="json", exclude_none=True)
    kind = fields.pop("edit")
    return f"{kind}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


def build_html(scenario: Scenario, rows: Sequence[Row], seeds: int, meta: dict[str, Any]) -> str:
    """The whole ``sweep.html`` document."""
    b = scenario.base
    paired = scenario.paired
    method = (
        f"Each figure is the mean ± the half-width of its 95% confidence interval over "
        f"{seeds} seed(s): Student t with n-1 degrees of freedom, mean ± t(0.975, n-1)·s/√n. "
        + (
            "The scenario is paired (common random numbers: seed i of every variation is "
            "seed i of the base), so a difference is the mean of the per-seed differences "
            "and its interval that of a paired t test."
            if paired
            else "Runs are independent across variations; a difference's interval is Welch's."
        )
        + " An interval that contains 0 is no evidence of a difference at this many seeds."
    )
    body = [
        params_list(
            [
                ("fleet", b.fleet),
                ("workload", b.workload),
                ("workload drawn for", f"the {b.workload_from} fleet"),
                ("days", b.days),
                ("load", b.load),
                ("policy", b.policy.value),
                ("backfill", b.backfill.value),
                ("failures", b.failures),
                ("seeds", seeds),
                *meta.items(),
            ]
        ),
        f"<p>{esc(scenario.description)}</p>" if scenario.description else "",
        f'<p class="note">{esc(method)}</p>',
    ]
    body.extend(f'<p class="note">{esc(n)}</p>' for n in scenario.notes)
    errors = [r for r in rows if r.get("status") != "ok"]
    if errors:
        body.append(
            section(
                "Failed runs",
                table(
                    ["variation", "seed", "error"],
                    [[r["variation"], r["seed_index"], r.get("error", "")] for r in errors],
                ),
                note="These runs are left out of every mean below.",
            )
        )
    body.append(_overview(scenario, rows, seeds))
    body.extend(_variation_section(rows, v, seeds, paired=paired) for v in scenario.variations)
    subtitle = f"{len(scenario.variations)} variation(s) against the base, {seeds} seed(s) each"
    return page(f"Sweep: {scenario.name}", subtitle, "".join(body))


def write_sweep(
    out_dir: Path, scenario: Scenario, rows: Sequence[Row], seeds: int, meta: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``sweep.parquet`` and ``sweep.html`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet = out_dir / "sweep.parquet"
    write_parquet(rows, parquet)
    html_path = out_dir / "sweep.html"
    html_path.write_text(build_html(scenario, rows, seeds, meta), encoding="utf-8")
    return parquet, html_path
