"""The stability verdict (twin/stability.py): hand-built backlogs and one short korea run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.twin.stability import stability

DAY = 86_400.0
HOUR = 3_600.0


def _rows(per_tenant: list[list[float]]) -> list[float]:
    """Row after row (one sample per row), GPU-seconds per tenant."""
    return [v for row in zip(*per_tenant, strict=True) for v in row]


def test_flat_backlog_is_stable() -> None:
    t = [i * HOUR for i in range(24 * 9 + 1)]
    flat = [500.0 * HOUR] * len(t)  # 500 GPU-hours waiting all along
    st = stability(t, ["kt"], _rows([flat]))
    assert st["verdict"] == "stable"
    assert st["stable"]
    assert st["per_tenant"]["kt"]["slope_gpu_h_per_day"] == pytest.approx(0.0, abs=1e-9)
    assert st["per_tenant"]["kt"]["mean_gpu_h"] == pytest.approx(500.0)
    assert st["sentences"] == []
    assert st["window_s"] == [6 * DAY, 9 * DAY]


def test_growing_backlog_is_named_with_its_rate() -> None:
    # naver's backlog grows by 1,200 GPU-hours a day (50 an hour); kt's stays at 100.
    t = [i * HOUR for i in range(24 * 9 + 1)]
    naver = [50.0 * i * HOUR for i in range(len(t))]
    kt = [100.0 * HOUR] * len(t)
    st = stability(t, ["naver", "kt"], _rows([naver, kt]))
    assert not st["stable"]
    assert st["per_tenant"]["naver"]["growing"]
    assert not st["per_tenant"]["kt"]["growing"]
    assert st["per_tenant"]["naver"]["slope_gpu_h_per_day"] == pytest.approx(1200.0)
    assert st["total"]["slope_gpu_h_per_day"] == pytest.approx(1200.0)
    said = "naver's backlog grew by 1,200 GPU-hours a day over the last third: this load"
    assert st["sentences"] == [f"{said} is beyond its capacity"]
    assert st["verdict"].startswith("unstable: the backlog of naver grew")


def test_queue_wandering_about_its_mean_is_stable() -> None:
    # A steady queue: a sawtooth about 1,000 GPU-hours (rises and drains each day).
    t = [i * HOUR for i in range(24 * 9 + 1)]
    saw = [(1000.0 + 200.0 * ((i % 24) - 12) / 12) * HOUR for i in range(len(t))]
    st = stability(t, ["a"], _rows([saw]))
    assert st["stable"], st["per_tenant"]["a"]


def test_short_korea_run_reports_a_verdict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "--days", "0.25", "--load", "0.9", "--power-cap", "off", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "stability:" in result.output
    summary = json.loads((out / "summary.json").read_text())
    st = summary["stability"]
    assert st["verdict"] == "stable" or st["verdict"].startswith("unstable: ")
    # every tenant with jobs has a trend (the scheduler also lists cohorts, with none)
    assert set(st["per_tenant"]) >= set(summary["per_tenant"])
    assert all(tr["mean_gpu_h"] >= 0.0 for tr in st["per_tenant"].values())
    report = next(out.glob("*.html")).read_text()
    assert "Stability" in report


def test_slow_growth_of_a_large_tenant_is_under_its_capacity_floor() -> None:
    # upstage holds 2,000 GPUs (48,000 GPU-hours a day): a backlog rising from 0 to 9
    # GPU-hours over nine days (1 GPU-hour a day) rises by more than a quarter of its
    # small mean, but by 0.002% of its capacity a day, under the 1% floor (480 a day).
    t = [i * HOUR for i in range(24 * 9 + 1)]
    slow = [(i / 24.0) * HOUR for i in range(len(t))]
    without = stability(t, ["upstage"], _rows([slow]))
    assert not without["stable"]  # the relative bounds alone call it growing
    st = stability(t, ["upstage"], _rows([slow]), {"upstage": 2000.0}, 2000.0)
    assert st["stable"], st["per_tenant"]["upstage"]
    assert st["per_tenant"]["upstage"]["floor_gpu_h_per_day"] == pytest.approx(480.0)
    assert st["per_tenant"]["upstage"]["slope_gpu_h_per_day"] == pytest.approx(1.0)


def test_growth_beyond_the_capacity_floor_is_still_named() -> None:
    # The same tenant, its backlog rising by 1,200 GPU-hours a day (2.5% of its capacity).
    t = [i * HOUR for i in range(24 * 9 + 1)]
    fast = [50.0 * i * HOUR for i in range(len(t))]
    st = stability(t, ["upstage"], _rows([fast]), {"upstage": 2000.0}, 2000.0)
    assert not st["stable"]
    assert st["per_tenant"]["upstage"]["growing"]
    assert st["total"]["growing"]
