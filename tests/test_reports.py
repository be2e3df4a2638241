"""Tests of the results and report layer: schemas, report.html, summary.png, compare.

Inputs are synthetic runs drawn from a seeded numpy Generator; the summary of each run is
computed from its own jobs table (the issue #3 definitions), so the assertions compare the
pages with the data rather than with tuned constants.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifactory.reports.compare import (
    COMPARE_METRICS,
    comparison_rows,
    policy_labels,
    write_compare,
)
from aifactory.reports.report import build_report, write_report
from aifactory.reports.results import (
    JOBS_SCHEMA,
    SIZE_CLASSES,
    TIMESERIES_STEP_S,
    WAIT_REASONS,
    ResultSchemaError,
    busy_column,
    cdf_points,
    conform_jobs,
    downsample_mean,
    empty_jobs_table,
    empty_timeseries_table,
    load_results,
    size_class_index,
    timeseries_schema,
    write_results,
)

# --------------------------------------------------------------------------- synthetic runs

STATES = ("completed", "failed", "cancelled", "pending", "running", "rejected")
PLACEMENTS = ("node", "domain", "pod", "site", "cross-site")


@dataclass
class Run:
    """One synthetic run: what ``write_report`` takes."""

    summary: dict[str, Any]
    jobs: pa.Table
    timeseries: pa.Table


def _nullable(values: np.ndarray[Any, Any]) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=~np.isfinite(values))


def queue_share(reason: str, queue: np.ndarray[Any, Any]) -> pa.Array:
    """A made-up split of each job's queueing time over the reasons (capacity most)."""
    shares = {"priority": 0.1, "quota": 0.2, "capacity": 0.6, "reservation": 0.1}
    share = {**shares, "preempt_grace": 0.0, "power_cap": 0.0}[reason]
    return pa.array(np.where(np.isnan(queue), 0.0, queue * share), pa.float64())


def make_run(
    rng: np.random.Generator,
    n_jobs: int = 2000,
    tenants: tuple[str, ...] = ("alpha", "beta", "gamma"),
    steps: int = 500,
    fleet_gpus: int = 1024,
    state_p: tuple[float, ...] = (0.8, 0.05, 0.03, 0.05, 0.05, 0.02),
    policy: str = "fifo",
) -> Run:
    """A run with ``n_jobs`` jobs and ``steps`` five-minute samples, all drawn from ``rng``."""
    n = n_jobs
    tenant = np.array(tenants, dtype=object)[rng.integers(0, len(tenants), n)]
    submit = np.sort(rng.uniform(0.0, steps * TIMESERIES_STEP_S, n))
    gpus = (2 ** rng.integers(0, 11, n)).astype(np.int32)
    run_s = rng.lognormal(7.0, 1.5, n)
    wait = np.where(rng.random(n) < 0.4, 0.0, rng.lognormal(5.0, 2.0, n))
    state = np.array(STATES, dtype=object)[rng.choice(len(STATES), n, p=list(state_p))]
    started = ~np.isin(state, ["pending", "rejected"])
    ended = np.isin(state, ["completed", "failed", "cancelled"])
    start = np.where(started, submit + wait, np.nan)
    end = np.where(ended, start + run_s, np.nan)
    preempt = np.where(started, rng.poisson(0.1, n), 0).astype(np.int32)
    placement = np.where(
        started, np.array(PLACEMENTS, dtype=object)[rng.integers(0, len(PLACEMENTS), n)], ""
    )
    gpu_hours = np.where(started, gpus * run_s / 3600.0, 0.0)
    jobs = pa.table(
        {
            "job_id": [f"j{i}" for i in range(n)],
            "tenant": tenant.astype(str),
            "kind": ["train"] * n,
            "state": state.astype(str),
            "submit_s": submit,
            "start_s": _nullable(start),
            "end_s": _nullable(end),
            "queue_s": _nullable(start - submit),
            "jct_s": _nullable(end - submit),
            "run_s": run_s,
            "gpus": gpus,
            "gpu_class": pa.array([None] * n, type=pa.string()),
            "placement": placement.astype(str),
            "hardware_owner": pa.array(
                np.where(started, np.array(["a", "b", "mixed"])[np.arange(n) % 3], None),
                type=pa.string(),
            ),
            "preemptions": preempt,
            "failures": (state == "failed").astype(np.int32),
            "gpu_hours": gpu_hours,
            "gpu_hours_lost_preemption": gpu_hours * 0.02 * preempt,
            "gpu_hours_lost_failure": np.where(state == "failed", gpu_hours * 0.5, 0.0),
            **{f"wait_{r}_s": queue_share(r, start - submit) for r in WAIT_REASONS},
            "pending_reason": pa.nulls(n, pa.string()),
            "project": pa.nulls(n, pa.string()),  # (a run without an allocations file)
            "wait_allocation_s": pa.nulls(n, pa.float64()),
            "charged_gpu_hours": pa.nulls(n, pa.float64()),
            "service": pa.array([False] * n, pa.bool_()),  # (batch jobs only)
            "downtime_s": pa.nulls(n, pa.float64()),
            "site": pa.nulls(n, pa.string()),  # (no datasets, no spanning)
            "staging_s": pa.array([0.0] * n, pa.float64()),
            "slowdown": pa.array([1.0] * n, pa.float64()),
        },
        schema=JOBS_SCHEMA,
    )
    t = np.arange(steps, dtype=np.float64) * TIMESERIES_STEP_S
    share = rng.dirichlet(np.ones(len(tenants)))
    level = rng.uniform(0.3, 0.95, steps)
    busy = {
        tn: np.floor(level * s * fleet_gpus).astype(np.int64)
        for tn, s in zip(tenants, share, strict=True)
    }
    columns: dict[str, Any] = {
        "t_s": t,
        "busy_gpus": np.sum(list(busy.values()), axis=0).astype(np.int64)
        if tenants
        else np.zeros(steps, np.int64),
        "pending_jobs": rng.integers(0, 50, steps),
        "pending_gpus": rng.integers(0, 2 * fleet_gpus, steps),
        "stranded_gpus": rng.integers(0, fleet_gpus // 8, steps),
        "power_mw": level * fleet_gpus * 1.4e-3,
    }
    columns.update({busy_column(tn): v for tn, v in busy.items()})
    timeseries = pa.table(columns, schema=timeseries_schema(tenants))
    return Run(summarise(jobs, tenants, fleet_gpus, steps, policy), jobs, timeseries)


def _stats(values: np.ndarray[Any, Any], prefix: str) -> dict[str, float | None]:
    if values.size == 0:
        return {f"avg_{prefix}_s": None, f"p50_{prefix}_s": None, f"p99_{prefix}_s": None}
    return {
        f"avg_{prefix}_s": float(values.mean()),
        f"p50_{prefix}_s": float(np.quantile(values, 0.5)),
        f"p99_{prefix}_s": float(np.quantile(values, 0.99)),
    }


def summarise(
    jobs: pa.Table, tenants: tuple[str, ...], fleet_gpus: int, steps: int, policy: str
) -> dict[str, Any]:
    """The issue #3 summary of a jobs table, plus the optional keys the report uses."""
    state = np.array(jobs.column("state").to_pylist(), dtype=object)
    jct = np.array(jobs.column("jct_s").to_numpy(zero_copy_only=False), dtype=np.float64)
    queue = np.array(jobs.column("queue_s").to_numpy(zero_copy_only=False), dtype=np.float64)
    tenant = np.array(jobs.column("tenant").to_pylist(), dtype=object)
    hours = jobs.column("gpu_hours").to_numpy()
    done = state == "completed"
    makespan = steps * 300.0
    per_tenant = {}
    for tn in tenants:
        sel = tenant == tn
        per_tenant[tn] = {
            "jobs": int(sel.sum()),
            "avg_jct_s": float(np.nanmean(jct[sel & done])) if (sel & done).any() else None,
            "avg_queue_s": float(np.nanmean(queue[sel])) if np.isfinite(queue[sel]).any() else None,
            "gpu_hours": float(hours[sel].sum()),
            "quota_gpus": fleet_gpus // max(len(tenants), 1),
        }
    return {
        "fleet": "demo",
        "trace": "synthetic",
        "policy": policy,
        "backfill": "easy",
        "seed": 7,
        "jobs": int(jobs.num_rows),
        "completed": int(done.sum()),
        "unfinished": int(np.isin(state, ["pending", "running"]).sum()),
        "rejected": int((state == "rejected").sum()),
        **_stats(jct[done], "jct"),
        **_stats(queue[np.isfinite(queue)], "queue"),
        "makespan_s": makespan,
        "utilization": float(hours.sum() * 3600.0 / (fleet_gpus * makespan)) if makespan else 0.0,
        "preemptions": int(np.sum(jobs.column("preemptions").to_numpy())),
        "events": 3 * int(jobs.num_rows),
        "wall_s": 0.5,
        "per_tenant": per_tenant,
        "fleet_gpus": fleet_gpus,
        "rejected_reasons": {"bigger than any site": int((state == "rejected").sum())},
        "energy": {
            "total_mwh": 12.5,
            "peak_mw_by_site": {"site-a": 1.2},
            "site_capacity_mw": {"site-a": 2.0},
        },
    }


# --------------------------------------------------------------------------- page checks

VOID = {"meta", "br", "img", "hr", "input", "link", "wbr", "source", "col", "area", "base"}
REMOTE = re.compile(r"(?i)(?:https?|ftp|wss?):|@import")
URL_IN_CSS = re.compile(r"url\(\s*['\"]?([^'\")]*)")


class PageChecker(HTMLParser):
    """Parses a page, checks tag nesting and collects every reference it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.refs: list[tuple[str, str, str]] = []
        self.css: list[str] = []
        self.ids: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in {"src", "href", "xlink:href", "srcset", "action", "data", "poster"}:
                self.refs.append((tag, name, value or ""))
            elif name == "style":
                self.css.append(value or "")
            elif name == "id":
                self.ids.append(value or "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "h2":
            self._heading = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        opened = self.stack.pop()
        assert opened == tag, f"<{opened}> closed by </{tag}>"
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "style":
            self.css.append(data)
        if self._heading is not None:
            self._heading.append(data)


def check_self_contained(text: str) -> PageChecker:
    """Parse ``text`` and assert it is well nested and references nothing outside itself."""
    page = PageChecker()
    page.feed(text)
    page.close()
    assert page.stack == [], f"unclosed tags: {page.stack}"
    for tag in ("script", "link", "iframe", "object", "embed", "base"):
        assert tag not in page.tags, f"<{tag}> found"
    for tag, attr, value in page.refs:
        assert value.startswith(("#", "data:")), f"<{tag} {attr}={value!r}> points outside"
    for css in page.css:
        for target in URL_IN_CSS.findall(css):
            assert target.startswith(("#", "data:")), f"css url({target}) points outside"
    assert not REMOTE.search(text), f"remote reference: {REMOTE.search(text)}"
    assert len(page.ids) == len(set(page.ids)), "duplicate element ids"
    return page


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250401)


# --------------------------------------------------------------------------- results files


def test_write_results_round_trips_the_contract_schemas(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    run = make_run(rng, n_jobs=300, steps=40)
    paths = write_results(tmp_path, run.summary, run.jobs, run.timeseries)
    assert pq.read_schema(paths["jobs"]).remove_metadata() == JOBS_SCHEMA
    ts_schema = pq.read_schema(paths["timeseries"]).remove_metadata()
    assert ts_schema == timeseries_schema(("alpha", "beta", "gamma"))
    summary, jobs, ts = load_results(tmp_path)
    assert summary["jobs"] == 300
    assert jobs.height == 300
    assert ts.height == 40
    assert ts.get_column("t_s").diff().drop_nulls().unique().to_list() == [TIMESERIES_STEP_S]


def test_summary_json_writes_nan_as_null(tmp_path: Path) -> None:
    summary = {"avg_jct_s": float("nan"), "p99_jct_s": np.float64("inf"), "jobs": np.int64(3)}
    write_results(tmp_path, summary, empty_jobs_table(), empty_timeseries_table())
    loaded = json.loads((tmp_path / "summary.json").read_text())
    assert loaded == {"avg_jct_s": None, "p99_jct_s": None, "jobs": 3}


def test_polars_input_is_cast_to_the_schema(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=50, steps=5)
    df = pl.from_arrow(run.jobs)
    assert isinstance(df, pl.DataFrame)
    # A simulator may hand over int64 counters and categorical tenants.
    df = df.with_columns(pl.col("gpus").cast(pl.Int64), pl.col("tenant").cast(pl.Categorical))
    assert conform_jobs(df).schema == JOBS_SCHEMA


def test_missing_column_is_named(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=10, steps=5)
    with pytest.raises(ResultSchemaError, match="gpu_hours_lost_failure"):
        conform_jobs(run.jobs.drop_columns(["gpu_hours_lost_failure"]))


def test_null_in_required_column_is_named(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=10, steps=5)
    i = run.jobs.column_names.index("tenant")
    bad = run.jobs.set_column(i, "tenant", pa.array([None] * 10, type=pa.string()))
    with pytest.raises(ResultSchemaError, match="tenant: 10 null"):
        conform_jobs(bad)


def test_load_results_without_summary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultSchemaError, match="no such file"):
        load_results(tmp_path)


# --------------------------------------------------------------------------- reductions


def test_cdf_points_thins_and_keeps_both_ends(rng: np.random.Generator) -> None:
    values = rng.lognormal(5.0, 2.0, 100_000)
    values[::7] = np.nan
    x, f = cdf_points(values, max_points=2000)
    finite = values[np.isfinite(values)]
    assert len(x) <= 2000
    assert x[0] == finite.min()
    assert x[-1] == finite.max()
    assert f[-1] == 1.0
    assert np.all(np.diff(x) >= 0)
    assert np.all(np.diff(f) > 0)
    # Each kept point is the exact empirical CDF at its value.
    k = len(x) // 2
    assert f[k] == pytest.approx(np.searchsorted(np.sort(finite), x[k], side="right") / finite.size)


def test_cdf_points_of_few_values_keeps_them_all() -> None:
    x, f = cdf_points(np.array([3.0, 1.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert f.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cdf_points(np.array([np.nan]))[0].size == 0


def test_downsample_mean_keeps_the_average(rng: np.random.Generator) -> None:
    t = np.arange(10_000, dtype=np.float64)
    y = rng.uniform(0, 100, t.size)
    tb, (yb,) = downsample_mean(t, [y], max_points=1000)
    assert len(tb) == len(yb) == 1000
    assert yb.mean() == pytest.approx(y.mean())  # equal-width bins keep the area
    assert np.all(np.diff(tb) > 0)


@pytest.mark.parametrize(
    ("gpus", "label"),
    [(1, "1 GPU"), (2, "2-8 GPUs"), (8, "2-8 GPUs"), (9, "9-64 GPUs"), (64, "9-64 GPUs"),
     (65, "65-512 GPUs"), (512, "65-512 GPUs"), (513, "513+ GPUs"), (100_000, "513+ GPUs")],
)  # fmt: skip
def test_size_classes_match_their_labels(gpus: int, label: str) -> None:
    assert SIZE_CLASSES[int(size_class_index(np.array([gpus]))[0])][0] == label


# --------------------------------------------------------------------------- report


def test_report_is_self_contained_and_complete(rng: np.random.Generator, tmp_path: Path) -> None:
    run = make_run(rng)
    path = write_report(tmp_path, run.summary, run.jobs, run.timeseries)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    page = check_self_contained(text)
    for heading in ("Summary", "Utilisation over time", "Delays", "Tenants", "Energy",
                    "Rejected jobs"):  # fmt: skip
        assert heading in page.headings
    # Utilisation, two CDFs, GPU-hours, backlog, power.
    assert page.tags.get("svg", 0) == 6
    for tenant in ("alpha", "beta", "gamma"):
        assert tenant in text
    assert f"{run.summary['completed']:,}" in text
    width, height = png_size((tmp_path / "summary.png").read_bytes())
    assert width > 200
    assert height > 100


def test_jct_cdf_counts_each_size_class(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=1500)
    text, _png = build_report(run.summary, run.jobs, run.timeseries)
    jobs = pl.from_arrow(run.jobs)
    assert isinstance(jobs, pl.DataFrame)
    done = jobs.filter(pl.col("state") == "completed")
    idx = size_class_index(done.get_column("gpus").to_numpy())
    for i, (label, _lo, _hi) in enumerate(SIZE_CLASSES):
        n = int((idx == i).sum())
        if n:
            assert f"{label} (n={n:,})" in text


def test_report_is_deterministic(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=400, steps=60)
    first = build_report(run.summary, run.jobs, run.timeseries)
    second = build_report(run.summary, run.jobs, run.timeseries)
    assert first == second


def test_tenant_names_are_escaped(rng: np.random.Generator) -> None:
    run = make_run(rng, n_jobs=200, steps=20, tenants=("<script>alert(1)</script>", "b&b"))
    text, _png = build_report(run.summary, run.jobs, run.timeseries)
    check_self_contained(text)
    assert "&lt;script&gt;" in text
    assert "b&amp;b" in text


def _degenerate_cases(rng: np.random.Generator) -> dict[str, tuple[dict[str, Any], Any, Any]]:
    no_done = make_run(rng, n_jobs=50, steps=10, state_p=(0, 0, 0, 0.5, 0.5, 0))
    one = make_run(rng, n_jobs=50, steps=10, tenants=("solo",))
    empty_ts = make_run(rng, n_jobs=50, steps=0)
    bare = {"fleet": "demo", "trace": "t", "policy": "fifo", "jobs": 0, "avg_jct_s": None}
    return {
        "no completed jobs": (no_done.summary, no_done.jobs, no_done.timeseries),
        "one tenant": (one.summary, one.jobs, one.timeseries),
        "no time-series rows": (empty_ts.summary, empty_ts.jobs, empty_ts.timeseries),
        "nothing at all": (bare, empty_jobs_table(), empty_timeseries_table()),
        "no tables": ({}, None, None),
        "polars, no tenant columns": (
            {"fleet": {"name": "demo", "gpus_total": 8}},
            pl.DataFrame({"job_id": ["a"], "gpus": [2], "queue_s": [0.0], "jct_s": [5.0]}),
            pl.DataFrame({"t_s": [0.0, 300.0], "busy_gpus": [2, 4]}),
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["no completed jobs", "one tenant", "no time-series rows", "nothing at all", "no tables",
     "polars, no tenant columns"],
)  # fmt: skip
def test_degenerate_inputs_still_make_a_report(
    case: str, rng: np.random.Generator, tmp_path: Path
) -> None:
    summary, jobs, ts = _degenerate_cases(rng)[case]
    path = write_report(tmp_path, summary, jobs, ts)
    check_self_contained(path.read_text(encoding="utf-8"))
    png_size((tmp_path / "summary.png").read_bytes())


# --------------------------------------------------------------------------- compare


def _hand_made(policy: str, **values: float | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"policy": policy, "backfill": "easy", "fleet": "demo", "trace": "t"}
    summary.update(values)
    return summary


def test_comparison_ratios_are_to_the_first_policy() -> None:
    summaries = [
        _hand_made("fifo", avg_jct_s=100.0, p99_jct_s=400.0, avg_queue_s=50.0, p99_queue_s=0.0,
                   utilization=0.8, preemptions=0, wall_s=2.0, gpu_hours_lost_preemption=4.0,
                   gpu_hours_lost_failure=2.0),
        _hand_made("sjf", avg_jct_s=50.0, p99_jct_s=800.0, avg_queue_s=10.0, p99_queue_s=0.0,
                   utilization=0.6, preemptions=5, wall_s=3.0, gpu_hours_lost_preemption=1.0,
                   gpu_hours_lost_failure=2.0),
        _hand_made("las", avg_jct_s=None, p99_jct_s=400.0, avg_queue_s=25.0, p99_queue_s=7.0,
                   utilization=0.8, preemptions=0, wall_s=1.0, gpu_hours_lost_preemption=8.0,
                   gpu_hours_lost_failure=0.0),
    ]  # fmt: skip
    rows = comparison_rows(summaries)
    assert [r["policy"] for r in rows] == ["fifo", "sjf", "las"]
    for key, _title, _kind in COMPARE_METRICS:
        assert rows[0][key + "_ratio"] == 1.0, key
    sjf, las = rows[1], rows[2]
    assert sjf["avg_jct_s_ratio"] == pytest.approx(0.5)
    assert sjf["p99_jct_s_ratio"] == pytest.approx(2.0)
    assert sjf["avg_queue_s_ratio"] == pytest.approx(0.2)
    assert sjf["utilization_ratio"] == pytest.approx(0.75)
    assert sjf["wall_s_ratio"] == pytest.approx(1.5)
    assert sjf["preemptions_ratio"] is None  # 5 against a baseline of 0 has no ratio
    assert sjf["p99_queue_s_ratio"] == 1.0  # 0 against 0
    assert sjf["gpu_hours_lost_preemption_ratio"] == pytest.approx(0.25)
    assert las["gpu_hours_lost_preemption_ratio"] == pytest.approx(2.0)
    assert las["avg_jct_s"] is None
    assert las["avg_jct_s_ratio"] is None
    assert las["p99_queue_s_ratio"] is None
    assert las["wall_s_ratio"] == pytest.approx(0.5)


def test_comparison_of_nothing_is_empty() -> None:
    assert comparison_rows([]) == []


def test_duplicate_policies_get_unique_labels() -> None:
    labels = policy_labels([
        {"policy": "fifo", "backfill": "easy"},
        {"policy": "fifo", "backfill": "none"},
        {"policy": "sjf", "backfill": "easy"},
        {"policy": "sjf", "backfill": "easy"},
    ])  # fmt: skip
    assert labels == ["fifo/easy", "fifo/none", "sjf/easy#1", "sjf/easy#2"]


def test_write_compare_is_self_contained(rng: np.random.Generator, tmp_path: Path) -> None:
    runs = [make_run(rng, n_jobs=400, steps=30, policy=p) for p in ("fifo", "sjf", "las", "fair")]
    summaries = [r.summary for r in runs]
    jobs = {r.summary["policy"]: pl.from_arrow(r.jobs) for r in runs}
    path = write_compare(tmp_path, summaries, jobs)
    page = check_self_contained(path.read_text(encoding="utf-8"))
    assert page.tags.get("svg", 0) == 3
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert [r["policy"] for r in doc["rows"]] == ["fifo", "sjf", "las", "fair"]
    assert doc["rows"] == comparison_rows(summaries)
    assert len(doc["summaries"]) == 4
    assert doc["summaries"][1]["policy"] == "sjf"


def test_write_compare_without_job_tables(tmp_path: Path) -> None:
    summaries = [_hand_made("fifo", avg_jct_s=1.0), _hand_made("sjf", avg_jct_s=float("nan"))]
    path = write_compare(tmp_path, summaries, {})
    check_self_contained(path.read_text(encoding="utf-8"))
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["rows"][1]["avg_jct_s"] is None


def test_many_tenants_stack_the_smallest_as_other(rng: np.random.Generator) -> None:
    tenants = tuple(f"tenant{i:02d}" for i in range(15))
    run = make_run(rng, n_jobs=600, steps=40, tenants=tenants)
    text, _png = build_report(run.summary, run.jobs, run.timeseries)
    check_self_contained(text)
    util = text.split("<h2>Utilisation over time</h2>", 1)[1].split("</section>", 1)[0]
    shown = [t for t in tenants if f">{t}</text>" in util]
    assert len(shown) == 11
    assert ">other</text>" in util
    # The tenants drawn on their own are the ones with the most busy GPU time.
    area = {t: int(np.sum(run.timeseries.column(busy_column(t)).to_numpy())) for t in tenants}
    assert min(area[t] for t in shown) >= max(area[t] for t in tenants if t not in shown)
