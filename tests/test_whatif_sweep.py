"""Sweeps: the same small sweep locally and on a local Ray head gives the same numbers.

The sweep is 3 runs (base + 2 variations) x 2 seeds on the demo fleet for 6 simulated hours,
a few seconds of twin per run. Ray is imported, not skipped: ``make test`` installs the
``ray`` extra, and a sweep engine that silently is not tested is not tested.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.whatif.engines import EngineError, run_ray
from aifactory.whatif.model import Scenario
from aifactory.whatif.runner import TIMING_COLUMNS, RunTask, run_one
from aifactory.whatif.stats import mean_ci, paired_diff, t975, welch_diff

DOC: dict[str, Any] = {
    "name": "small",
    "description": "two what-ifs on the demo fleet",
    "base": {"fleet": "demo", "days": 0.25, "load": 0.9, "failures": "llama3", "seed": 11},
    "variations": [
        {
            "name": "more-b200",
            "question": "What if busan gets 144 more B200?",
            "edits": [
                {
                    "edit": "add_gpus",
                    "site": "busan",
                    "model": "b200",
                    "owner": "startup",
                    "gpus": 144,
                }
            ],
        },
        {
            "name": "fail-5x",
            "question": "What if failures are five times as frequent and links 4x faster?",
            "edits": [
                {"edit": "failure_rate", "multiplier": 5},
                {"edit": "link_bandwidth", "factor": 4},
            ],
        },
    ],
}

runner = CliRunner()


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "small.yaml"
    path.write_text(yaml.safe_dump(DOC), encoding="utf-8")
    return path


def sweep(scenario_file: Path, out: Path, *args: str) -> Any:
    result = runner.invoke(
        app,
        ["sweep", str(scenario_file), "--seeds", "2", "--workers", "2", "--out", str(out), *args],
    )
    assert result.exit_code == 0, result.output
    return pq.read_table(out / "sweep.parquet")


@pytest.fixture(scope="module")
def local(scenario_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    sweep(scenario_file, out, "--engine", "local", "--keep-runs")
    return out


def model_columns(table: Any) -> dict[str, list[Any]]:
    return table.drop_columns([c for c in TIMING_COLUMNS if c in table.column_names]).to_pydict()


def test_ray_with_two_workers_gives_the_numbers_of_the_local_pool(
    scenario_file: Path, local: Path, tmp_path: Path
) -> None:
    on_ray = sweep(scenario_file, tmp_path, "--engine", "ray")
    here = pq.read_table(local / "sweep.parquet")
    a, b = model_columns(here), model_columns(on_ray)
    assert list(a) == list(b)
    for column in a:
        assert a[column] == b[column] or all(
            x == y or (math.isnan(x) and math.isnan(y))
            for x, y in zip(a[column], b[column], strict=True)
        ), column


def test_the_parquet_has_one_row_per_run_with_every_metric(local: Path) -> None:
    t = pq.read_table(local / "sweep.parquet").to_pydict()
    assert t["variation"] == ["base", "base", "more-b200", "more-b200", "fail-5x", "fail-5x"]
    assert t["seed_index"] == [0, 1] * 3
    assert set(t["status"]) == {"ok"}
    # paired: seed i is the same in every variation, different across i
    assert t["seed"][0::2] == [t["seed"][0]] * 3
    assert t["seed"][0] != t["seed"][1]
    for column in (
        "avg_queue_s",
        "utilization",
        "tenant.startup.gpu_hours",
        "tenant.lab.avg_queue_s",
        "site.busan.peak_mw",
        "energy_total_mwh",
    ):
        assert column in t, column
    # 144 more B200 at busan: its power capacity is unchanged, its GPUs more
    assert t["fleet_gpus"][2] == t["fleet_gpus"][0] + 144
    # five times the failure rate loses more GPU-hours to failures over both seeds
    lost = [
        sum(
            v
            for k, v in zip(t["variation"], t[f"tenant.{x}.gpu_hours_lost_failure"], strict=True)
            if k == name
        )
        for x in ("lab",)
        for name in ("base", "fail-5x")
    ]
    assert lost[1] > lost[0]


def test_keep_runs_writes_every_runs_own_outputs(local: Path) -> None:
    for name in ("base-seed0", "more-b200-seed1", "fail-5x-seed0"):
        assert (local / "runs" / name / "summary.json").is_file()
        assert (local / "runs" / name / "jobs.parquet").is_file()


def test_the_html_compares_each_variation_with_cis(
    local: Path,
) -> None:
    html = (local / "sweep.html").read_text(encoding="utf-8")
    assert "Student t" in html
    for name in ("more-b200", "fail-5x"):
        assert f"{name}: What if" in html
    assert html.count("<b>Answer:</b>") == 2
    # link bandwidths are read by the twin (issue #20 §1): nothing here is unmodelled
    assert "Not modelled yet" not in html
    assert "Per tenant" in html
    assert "Per site" in html
    assert re.search(r"\d ± \d", html)
    assert html.count("<svg") == 1  # the CI chart, inline
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_t_quantiles_and_intervals_by_hand() -> None:
    assert t975(1) == 12.706
    assert t975(30) == 2.042
    assert abs(t975(1000) - 1.9623) < 1e-3
    e = mean_ci([1.0, 2.0, 3.0])
    assert e.mean == 2.0
    assert abs(e.half - 4.303 / math.sqrt(3)) < 1e-12
    d = paired_diff([2.0, 4.0], [1.0, 2.0])
    assert d.mean == 1.5
    assert abs(d.half - 12.706 * math.sqrt(0.5) / math.sqrt(2)) < 1e-12
    assert math.isnan(mean_ci([5.0]).half)
    w = welch_diff([1.0, 3.0], [0.0, 0.0, 0.0])
    assert w.mean == 2.0
    assert abs(w.half - 12.706 * 1.0) < 1e-9  # all the variance is one side's: df = 1


def test_a_failing_run_is_its_own_error_row(tmp_path: Path) -> None:
    doc = {**DOC, "base": {**DOC["base"], "workload": str(tmp_path / "missing.parquet")}}
    task = RunTask(
        Scenario.model_validate(doc).model_dump(mode="json"), str(tmp_path), "base", 0, 1
    )
    row = run_one(task)
    assert row["status"] == "error"
    assert "missing.parquet" in row["error"]


def test_cli_bounds_its_options(scenario_file: Path, tmp_path: Path) -> None:
    for args, message in (
        (["--seeds", "0"], "--seeds: must be between 1"),
        (["--workers", "0"], "--workers: must be between 1"),
        (["--engine", "spark"], "--engine: unknown 'spark'"),
        (["--ray-address", "auto"], "--ray-address: only with --engine ray"),
    ):
        result = runner.invoke(app, ["sweep", str(scenario_file), "--out", str(tmp_path), *args])
        assert result.exit_code == 2, args
        assert message in result.output


def test_the_ray_engine_says_in_one_line_when_ray_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EngineError, match=r"pip install 'aifactory\[ray\]'"):
        run_ray([], 1)


def test_ray_retries_a_run_whose_worker_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flaky_run import die_once  # noqa: PLC0415 (the tests folder is on sys.path)

    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    doc = Scenario.model_validate(DOC).model_dump(mode="json")
    tasks = [RunTask(doc, str(tmp_path), "base", i, i, str(tmp_path)) for i in range(2)]
    rows = run_ray(tasks, 2, fn=die_once, max_retries=2)
    assert sorted(r["seed_index"] for r in rows) == [0, 1]
    assert {r["status"] for r in rows} == {"ok"}
    # every first attempt died: each marker was written before its worker exited
    assert len(list(tmp_path.glob("*.tried"))) == 2
    for marker in tmp_path.glob("*.tried"):
        marker.unlink()
    rows = run_ray(tasks[:1], 1, fn=die_once, max_retries=0)
    assert rows[0]["status"] == "error"
    assert rows[0]["error"].startswith("Ray task failed after retries")


def test_an_unreachable_cluster_is_refused_in_one_line(scenario_file: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = runner.invoke(
            app,
            [
                "sweep",
                str(scenario_file),
                "--engine",
                "ray",
                "--ray-address",
                f"127.0.0.1:{port}",
                "--seeds",
                "1",
                "--out",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 2
    assert f"--ray-address: cannot reach 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "sweep.parquet").exists()
